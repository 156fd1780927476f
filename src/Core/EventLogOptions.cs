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

    /// <summary>Segment file size, a power of two.</summary>
    public long SegmentSizeBytes { get; set; } = 1L << 30;

    public int ResolvePartitions() => Partitions > 0 ? Partitions : Environment.ProcessorCount;
}
