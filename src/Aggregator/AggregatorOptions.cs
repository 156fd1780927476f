namespace AlphaMesh.Aggregator;

/// <summary>Settings of the aggregators. Sizes are per partition and per store; powers of two.</summary>
public sealed class AggregatorOptions
{
    /// <summary>Directory of the aggregator state (one sub-directory per partition), for example <c>data/aggregator</c>.</summary>
    public string Directory { get; set; } = Path.Combine("data", "aggregator");

    /// <summary>Path of the entitlement limits JSON file; null means <c>entitlement-limits.json</c> in <see cref="Directory"/>.</summary>
    public string? LimitsFile { get; set; }

    /// <summary>How often each partition checkpoints (and then lets the log drop what it no longer needs).</summary>
    public TimeSpan CheckpointInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long an event id is remembered; never shorter than ingest's backdating limit (35 days),
    /// so that a duplicate can never slip past an expired key.</summary>
    public TimeSpan DedupeRetention { get; set; } = TimeSpan.FromDays(35);

    /// <summary>How long a window of usage is kept after its end; older windows are compacted away (usage queries no
    /// longer see them; the current-period totals of entitlement checks are not affected). At least
    /// <see cref="DedupeRetention"/>: a late event can land in a window that long after its end. The server also
    /// requires two years and the billing's late-usage window: a billing run compares the usage of the period before
    /// last (a yearly plan's) with what was invoiced. The default, 1,200 days, covers the longest late-usage window.</summary>
    public TimeSpan WindowRetention { get; set; } = TimeSpan.FromDays(1200);

    /// <summary>In-memory part of the aggregates store's log; the rest spills to disk.</summary>
    public long AggregatesMemoryBytes { get; set; } = 64L << 20;

    /// <summary>In-memory part of the dedupe store's log (event ids and UNIQUE_COUNT markers).</summary>
    public long DedupeMemoryBytes { get; set; } = 64L << 20;

    /// <summary>At most this many series keep their newest window in memory as a write-back cache (about 140 bytes
    /// each), which spares nearly every event of that window a store operation. Beyond it, a new one takes the place of
    /// one not used for the longest (roughly: a clock), whose window goes back to the store. Size it for the series
    /// active within a few minutes: a series whose window left the cache reads it back from the store on its next event
    /// (a file read, once the aggregates store's memory no longer holds it).</summary>
    public int CachedWindows { get; set; } = 1 << 20;

    /// <summary>Log page size of both stores.</summary>
    public int PageSizeBytes { get; set; } = 1 << 20;

    /// <summary>Size of the aggregates store's hash index (64 bytes per bucket of 7 entries); written with every
    /// checkpoint. About one entry per (series, window) kept: 8 MiB holds 917,504 without overflow buckets.</summary>
    public long AggregatesIndexBytes { get; set; } = 8L << 20;

    /// <summary>Size of the dedupe store's hash index; written with every checkpoint. One entry per event id still
    /// remembered (and per UNIQUE_COUNT marker): 64 MiB holds 7.3 million without overflow buckets. Beyond that
    /// each bucket grows a chain of overflow buckets, and every new event id costs a walk along it (random memory
    /// accesses), so size it for the ids one partition keeps between compactions.</summary>
    public long DedupeIndexBytes { get; set; } = 64L << 20;

    /// <summary>Segment file size of both stores.</summary>
    public long SegmentSizeBytes { get; set; } = 256L << 20;

    /// <summary>Below this length of the dedupe store's log, no compaction runs. Above it, a checkpoint compacts the
    /// start of the log that has passed the retention: expired ids and markers are dropped, the few live ones there
    /// move to the tail. Live ids are never copied because the log is long.</summary>
    public long DedupeCompactionBytes { get; set; } = 1L << 30;

    /// <summary>A checkpoint writes a store's hash index only once the store's log has grown this much since the
    /// last index checkpoint (and at the first checkpoint after a start); the others write the log and a little
    /// metadata. Recovery replays at most this much of a store's log into its index.</summary>
    public long IndexCheckpointLogBytes { get; set; } = 256L << 20;

    /// <summary>Records applied between two looks at pending queries and checkpoints.</summary>
    public int BatchSize { get; set; } = 4096;
}
