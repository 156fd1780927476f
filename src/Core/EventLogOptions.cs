namespace AlphaMesh.Core;

/// <summary>Settings of the embedded (FasterLog) event log. Bound from <c>AlphaMesh:EventLog</c>.</summary>
public sealed class EventLogOptions
{
    /// <summary>Directory that holds one sub-directory per partition.</summary>
    public string Directory { get; set; } = Path.Combine("data", "log");

    /// <summary>Number of partitions; 0 means the number of cores. Fixed once the log exists.</summary>
    public int Partitions { get; set; }

    /// <summary>Longest time appended data waits for a group commit.</summary>
    public TimeSpan CommitInterval { get; set; } = TimeSpan.FromMilliseconds(1);

    /// <summary>Memory each partition's log keeps for data not yet flushed (bounded, never grows).</summary>
    public long MemoryBytesPerPartition { get; set; } = 64L << 20;

    /// <summary>Log page size, a power of two.</summary>
    public int PageSizeBytes { get; set; } = 8 << 20;

    /// <summary>Segment file size, a power of two; null means <see cref="DefaultSegmentSizeBytes"/> for a new log and
    /// the recorded size for an existing one. Fixed once the log exists: a segment file is named by the addresses
    /// it holds.</summary>
    public long? SegmentSizeBytes { get; set; }

    /// <summary>The segment size of a new log. With 1 GiB segments the ingest rate fell by about a fifth once a
    /// segment grew past a few hundred MiB; 256 MiB segments kept it (benchmarks/RESULTS.md, "Latest").</summary>
    public const long DefaultSegmentSizeBytes = 256L << 20;

    /// <summary>The segment size of logs whose manifest does not record one: the default of the versions that
    /// wrote such manifests.</summary>
    public const long UnrecordedSegmentSizeBytes = 1L << 30;

    public int ResolvePartitions() => Partitions > 0 ? Partitions : Environment.ProcessorCount;
}
