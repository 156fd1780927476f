using AlphaMesh.Core;

namespace AlphaMesh.Aggregator.Internal;

/// <summary>The partitions' aggregators and the services over them.</summary>
internal sealed class AggregatorHost : IAggregator
{
    private readonly IEventLog _log;
    private readonly PartitionAggregator[] _partitions;
    private int _disposed;

    private AggregatorHost(IEventLog log, PartitionAggregator[] partitions, IUsageQuery usage, IEntitlementService entitlements)
    {
        _log = log;
        _partitions = partitions;
        Usage = usage;
        Entitlements = entitlements;
    }

    public IUsageQuery Usage { get; }

    public IEntitlementService Entitlements { get; }

    internal IReadOnlyList<PartitionAggregator> Partitions => _partitions;

    public AggregatorStoppedException? Failure => _partitions.Select(p => p.Failure).FirstOrDefault(f => f is not null);

    public long MalformedRecords
    {
        get
        {
            long total = 0;
            foreach (var partition in _partitions)
                total += partition.MalformedRecords;
            return total;
        }
    }

    public static Task<IAggregator> StartAsync(IEventLog log, IMeterCatalog catalog, AggregatorOptions options, TimeProvider time,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(log);
        ArgumentNullException.ThrowIfNull(catalog);
        Validate(options);
        cancellationToken.ThrowIfCancellationRequested();
        var totals = new PeriodTotals();
        var entitlements = new EntitlementService(catalog, totals,
            options.LimitsFile ?? Path.Combine(options.Directory, "entitlement-limits.json"));
        var partitions = new PartitionAggregator[log.PartitionCount];
        try
        {
            for (int i = 0; i < partitions.Length; i++)
                partitions[i] = PartitionAggregator.Start(log.GetPartition(i), catalog, totals, options, time);
        }
        catch
        {
            foreach (var partition in partitions)
                partition?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }
        IAggregator host = new AggregatorHost(log, partitions, new UsageQueryService(catalog, log, partitions), entitlements);
        return Task.FromResult(host);
    }

    private static readonly TimeSpan MaxRetention = TimeSpan.FromDays(36_500);

    internal static void Validate(AggregatorOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (string.IsNullOrWhiteSpace(options.Directory))
            throw new ArgumentException("Aggregator.Directory must be set.", nameof(options));
        if (options.CheckpointInterval <= TimeSpan.Zero)
            throw new ArgumentException($"Aggregator.CheckpointInterval must be positive, not {options.CheckpointInterval}.", nameof(options));
        if (options.DedupeRetention <= TimeSpan.Zero)
            throw new ArgumentException($"Aggregator.DedupeRetention must be positive, not {options.DedupeRetention}.", nameof(options));
        // Expiry times are sums of nanoseconds: a century keeps them far from overflowing.
        if (options.DedupeRetention > MaxRetention || options.WindowRetention > MaxRetention)
            throw new ArgumentException($"Aggregator.DedupeRetention ({options.DedupeRetention}) and Aggregator.WindowRetention ({options.WindowRetention}) must be at most {MaxRetention.TotalDays:F0} days.", nameof(options));
        if (options.WindowRetention < options.DedupeRetention)
            throw new ArgumentException($"Aggregator.WindowRetention ({options.WindowRetention}) must be at least Aggregator.DedupeRetention ({options.DedupeRetention}): a late event can land in a window that long after its end.", nameof(options));
        if (options.IndexCheckpointLogBytes <= 0)
            throw new ArgumentException($"Aggregator.IndexCheckpointLogBytes must be positive, not {options.IndexCheckpointLogBytes}.", nameof(options));
        if (options.CachedWindows <= 0)
            throw new ArgumentException($"Aggregator.CachedWindows must be positive, not {options.CachedWindows}.", nameof(options));
        if (options.BatchSize <= 0)
            throw new ArgumentException($"Aggregator.BatchSize must be positive, not {options.BatchSize}.", nameof(options));
        StoreSizes.From(options, options.AggregatesMemoryBytes, options.AggregatesIndexBytes, "Aggregates");
        StoreSizes.From(options, options.DedupeMemoryBytes, options.DedupeIndexBytes, "Dedupe");
    }

    public TenantCounters GetCounters(string tenant)
    {
        long duplicates = 0;
        var invalid = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var partition in _partitions)
        {
            duplicates += partition.Duplicates(tenant);
            partition.AddInvalidCounts(tenant, invalid);
        }
        return new TenantCounters(duplicates, invalid);
    }

    public IReadOnlyDictionary<string, TenantCounters> GetAllCounters()
    {
        var duplicates = new Dictionary<string, long>(StringComparer.Ordinal);
        var invalid = new Dictionary<(string Tenant, string Key), long>();
        foreach (var partition in _partitions)
            partition.AddAllCounts(duplicates, invalid);
        var invalidByTenant = new Dictionary<string, Dictionary<string, long>>(StringComparer.Ordinal);
        foreach (var ((tenant, key), count) in invalid)
        {
            if (!invalidByTenant.TryGetValue(tenant, out var meters))
                invalidByTenant[tenant] = meters = new Dictionary<string, long>(StringComparer.Ordinal);
            meters[key] = count;
        }
        var counters = new Dictionary<string, TenantCounters>(StringComparer.Ordinal);
        foreach (string tenant in duplicates.Keys.Union(invalidByTenant.Keys))
            counters[tenant] = new TenantCounters(duplicates.GetValueOrDefault(tenant), invalidByTenant.GetValueOrDefault(tenant) ?? []);
        return counters;
    }

    public IReadOnlyList<PartitionProgress> GetProgress() => [.. _partitions.Select(ProgressOf)];

    private PartitionProgress ProgressOf(PartitionAggregator partition)
    {
        var failure = partition.Failure;
        return new PartitionProgress(partition.Index, partition.Progress, _log.GetPartition(partition.Index).CommittedPosition,
            failure is not null, partition.CheckpointedAt, partition.Replaying, failure);
    }

    public async ValueTask CheckpointAsync(CancellationToken cancellationToken = default)
    {
        var checkpoints = new Task<bool>[_partitions.Length];
        for (int i = 0; i < _partitions.Length; i++)
        {
            checkpoints[i] = _partitions[i].Submit(0, static async (partition, ct) =>
            {
                await partition.CheckpointAsync(ct).ConfigureAwait(false);
                return true;
            });
        }
        await Task.WhenAll(checkpoints).WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask WaitForCommittedAsync(CancellationToken cancellationToken = default)
    {
        var waits = new Task<bool>[_partitions.Length];
        for (int i = 0; i < _partitions.Length; i++)
            waits[i] = _partitions[i].Submit(_log.GetPartition(i).CommittedPosition, static (_, _) => ValueTask.FromResult(true));
        await Task.WhenAll(waits).WaitAsync(cancellationToken).ConfigureAwait(false);
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

    /// <summary>Stops every partition without a checkpoint, as kill -9 would (tests).</summary>
    internal async ValueTask CrashAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        var closes = new Task[_partitions.Length];
        for (int i = 0; i < _partitions.Length; i++)
            closes[i] = _partitions[i].CrashAsync().AsTask();
        await Task.WhenAll(closes).ConfigureAwait(false);
    }
}
