using System.Numerics;
using FASTER.core;

namespace AlphaMesh.Core.Internal;

/// <summary>The embedded event log: one <see cref="FasterPartitionLog"/> (one FasterLog) per partition,
/// under <c>Directory/p{index}</c>.</summary>
internal sealed class FasterEventLog : IEventLog
{
    private readonly FasterPartitionLog[] _partitions;
    private int _disposed;

    private FasterEventLog(FasterPartitionLog[] partitions) => _partitions = partitions;

    public int PartitionCount => _partitions.Length;

    /// <param name="options">The validated options.</param>
    /// <param name="backgroundCommit">False only in tests: nothing is committed until <see cref="CommitAllAsync"/>,
    /// so that uncommitted data can be observed.</param>
    public static FasterEventLog Open(EventLogOptions options, bool backgroundCommit)
    {
        Validate(options);
        string root = Path.GetFullPath(options.Directory);
        bool existed = System.IO.Directory.Exists(root);
        System.IO.Directory.CreateDirectory(root);
        if (!existed)
            DirectorySync.Flush(Path.GetDirectoryName(root) ?? root);
        var layout = LogManifest.OpenOrCreate(root, options.Partitions, Environment.ProcessorCount, options.SegmentSizeBytes);
        // The segment size an existing log records is the one it was made with.
        var settings = Validate(options, layout.SegmentBytes);
        int count = layout.Partitions;

        var partitions = new FasterPartitionLog[count];
        try
        {
            for (int i = 0; i < count; i++)
                partitions[i] = FasterPartitionLog.Open(i, Path.Combine(root, $"p{i}"), settings, backgroundCommit);
        }
        catch
        {
            foreach (var partition in partitions)
                partition?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }
        DirectorySync.Flush(root);
        return new FasterEventLog(partitions);
    }

    public IPartitionLog GetPartition(int index)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return _partitions[index];
    }

    /// <summary>The partition as its concrete type (tests use it to simulate a crash).</summary>
    internal FasterPartitionLog GetFasterPartition(int index) => _partitions[index];

    public async ValueTask CommitAllAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        // Every partition commits at once; then wait for all of them.
        var commits = new Task[_partitions.Length];
        for (int i = 0; i < _partitions.Length; i++)
            commits[i] = _partitions[i].CommitNowAsync(cancellationToken).AsTask();
        await Task.WhenAll(commits).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        var closes = new Task[_partitions.Length];
        for (int i = 0; i < _partitions.Length; i++)
            closes[i] = _partitions[i].DisposeAsync().AsTask();
        await Task.WhenAll(closes).ConfigureAwait(false);
    }

    /// <summary>Checks the options and translates the sizes into FASTER's bit settings, with
    /// <paramref name="segmentBytes"/> (the log's own) in place of the configured segment size when given.</summary>
    internal static PartitionSettings Validate(EventLogOptions options, long? segmentBytes = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (string.IsNullOrWhiteSpace(options.Directory))
            throw new ArgumentException("EventLog.Directory must be set.", nameof(options));
        if (options.Partitions < 0)
            throw new ArgumentException($"EventLog.Partitions must be 0 (one per core) or positive, not {options.Partitions}.", nameof(options));
        if (options.CommitInterval <= TimeSpan.Zero)
            throw new ArgumentException($"EventLog.CommitInterval must be positive, not {options.CommitInterval}.", nameof(options));

        int pageBits = Bits(options.PageSizeBytes, nameof(options.PageSizeBytes));
        int memoryBits = Bits(options.MemoryBytesPerPartition, nameof(options.MemoryBytesPerPartition));
        segmentBytes ??= options.SegmentSizeBytes ?? EventLogOptions.DefaultSegmentSizeBytes;
        int segmentBits = Bits(segmentBytes.Value, nameof(options.SegmentSizeBytes));
        // FASTER writes whole 512-byte sectors; a page smaller than 4 KB only adds overhead.
        if (pageBits < 12)
            throw new ArgumentException($"EventLog.PageSizeBytes must be at least 4096, not {options.PageSizeBytes}.", nameof(options));
        // FasterLog keeps a ring of pages in memory: one filling while the others flush.
        if (memoryBits < pageBits + 1)
            throw new ArgumentException(
                $"EventLog.MemoryBytesPerPartition ({options.MemoryBytesPerPartition}) must hold at least two pages of EventLog.PageSizeBytes ({options.PageSizeBytes}).",
                nameof(options));
        if (segmentBits < pageBits)
            throw new ArgumentException(
                $"EventLog.SegmentSizeBytes ({segmentBytes}) must be at least EventLog.PageSizeBytes ({options.PageSizeBytes}).",
                nameof(options));
        return new PartitionSettings(pageBits, memoryBits, segmentBits, options.CommitInterval);
    }

    private static int Bits(long value, string name)
    {
        if (value <= 0 || !BitOperations.IsPow2(value))
            throw new ArgumentException($"EventLog.{name} must be a power of two, not {value}.", name);
        return BitOperations.Log2((ulong)value);
    }
}

/// <summary>The per-partition FasterLog settings derived from <see cref="EventLogOptions"/>.</summary>
internal readonly record struct PartitionSettings(int PageSizeBits, int MemorySizeBits, int SegmentSizeBits, TimeSpan CommitInterval)
{
    public FasterLogSettings ToFasterLogSettings(IDevice device, ILogCommitManager commitManager) => new()
    {
        LogDevice = device,
        LogCommitManager = commitManager,
        PageSizeBits = PageSizeBits,
        MemorySizeBits = MemorySizeBits,
        SegmentSizeBits = SegmentSizeBits,
        // An 8-byte checksum per entry: a torn or garbage entry is never taken for data.
        LogChecksum = LogChecksumType.PerEntry,
        // Recovery runs explicitly, so that a failure surfaces instead of silently starting an empty log
        // (the constructor's own recovery swallows every exception).
        TryRecoverLatest = false,
        AutoCommit = false,
    };
}
