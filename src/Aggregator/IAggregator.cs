using AlphaMesh.Core;

namespace AlphaMesh.Aggregator;

/// <summary>Counters of one tenant, summed over the partitions.</summary>
/// <param name="Duplicates">Events dropped because their (tenant, id) was counted before.</param>
/// <param name="InvalidByMeter">Per meter key: events of the meter's type without a usable value (no value
/// property, or one that is not a decimal number, or a gauge reading older than the window's latest).</param>
public sealed record TenantCounters(long Duplicates, IReadOnlyDictionary<string, long> InvalidByMeter);

/// <summary>Where one partition's aggregator loop is in its event log.</summary>
/// <param name="Partition">The partition's index.</param>
/// <param name="AppliedPosition">Every record before this log position is applied.</param>
/// <param name="CommittedPosition">The log's committed (durable, acknowledged) position.</param>
/// <param name="Stopped">Whether the loop stopped on a failure (<see cref="IAggregator.Failure"/>).</param>
/// <param name="CheckpointedAt">When every applied record was last known to be in a checkpoint (one was taken, or
/// nothing was applied since the last one); null before this process's first checkpoint.</param>
/// <param name="Replaying">Whether the loop is still replaying what the log had committed when it started: its counts
/// (restored from the last checkpoint) may then be below what they were before the stop.</param>
/// <param name="Failure">Why the loop stopped, when <paramref name="Stopped"/>.</param>
public sealed record PartitionProgress(int Partition, long AppliedPosition, long CommittedPosition, bool Stopped,
    DateTimeOffset? CheckpointedAt, bool Replaying, AggregatorStoppedException? Failure = null)
{
    /// <summary>Bytes of acknowledged records not yet applied: what a usage query would wait for.</summary>
    public long LagBytes => Math.Max(0, CommittedPosition - AppliedPosition);
}

/// <summary>
/// The running aggregators: one single-threaded loop per partition of the event log. Start with
/// <see cref="AggregatorFactory.StartAsync"/>; dispose before the event log (disposal takes the final checkpoint).
/// </summary>
public interface IAggregator : IAsyncDisposable
{
    IUsageQuery Usage { get; }

    IEntitlementService Entitlements { get; }

    TenantCounters GetCounters(string tenant);

    /// <summary>The counters of every tenant that has a meter or a counted duplicate (for metrics). While a partition
    /// replays its log after a start (<see cref="PartitionProgress.Replaying"/>) they may be below the last ones.</summary>
    IReadOnlyDictionary<string, TenantCounters> GetAllCounters();

    /// <summary>Each partition's progress through its log; reads counters only, never waits for a loop.</summary>
    IReadOnlyList<PartitionProgress> GetProgress();

    /// <summary>Records that no partition could decode (they are skipped and counted, never retried).</summary>
    long MalformedRecords { get; }

    /// <summary>Takes a checkpoint of every partition now (they also take one every
    /// <see cref="AggregatorOptions.CheckpointInterval"/> and on disposal).</summary>
    ValueTask CheckpointAsync(CancellationToken cancellationToken = default);

    /// <summary>Completes when every partition has applied the events committed to the log when it was called.</summary>
    ValueTask WaitForCommittedAsync(CancellationToken cancellationToken = default);

    /// <summary>The first partition whose loop stopped on a failure (a disk or store error), null while every loop runs.
    /// A stopped partition answers every request with <see cref="AggregatorStoppedException"/> until the server is
    /// restarted, which recovers it from its last checkpoint.</summary>
    AggregatorStoppedException? Failure { get; }
}

/// <summary>A partition's aggregator loop stopped on a failure; its usage cannot be answered until a restart.</summary>
public sealed class AggregatorStoppedException(int partition, Exception cause)
    : InvalidOperationException($"The aggregator of partition {partition} stopped: {cause.Message}", cause)
{
    public int Partition { get; } = partition;
}

/// <summary>Starts the aggregators.</summary>
public static class AggregatorFactory
{
    /// <summary>
    /// Recovers each partition from its latest complete checkpoint under <see cref="AggregatorOptions.Directory"/>
    /// (or starts empty), then starts its loop, which replays the log from the checkpoint's position and keeps tailing it.
    /// </summary>
    public static Task<IAggregator> StartAsync(IEventLog log, IMeterCatalog catalog, AggregatorOptions options,
        CancellationToken cancellationToken = default)
        => Internal.AggregatorHost.StartAsync(log, catalog, options, TimeProvider.System, cancellationToken);
}
