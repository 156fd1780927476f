using System.Collections.Concurrent;

namespace AlphaMesh.Aggregator.Internal;

/// <summary>
/// Entitlement checks from memory: the meter from the catalog's snapshot, the usage from the current-period totals
/// (a sequence-locked read that never waits for the writer), the limit from a concurrent table. Nothing here touches
/// the disk or a partition's loop. Limits are persisted in a JSON file.
/// </summary>
internal sealed class EntitlementService : IEntitlementService
{
    private readonly IMeterCatalog _catalog;
    private readonly PeriodTotals _totals;
    private readonly string _path;
    private readonly ConcurrentDictionary<(string Tenant, string Meter, string? Customer), decimal> _limits = new();
    private readonly SemaphoreSlim _write = new(1, 1);

    public EntitlementService(IMeterCatalog catalog, PeriodTotals totals, string path)
    {
        _catalog = catalog;
        _totals = totals;
        _path = path;
        foreach (var limit in JsonFiles.Read<List<EntitlementLimit>>(path) ?? [])
            _limits[(limit.Tenant, limit.MeterKey, limit.Customer)] = limit.Limit;
    }

    public EntitlementCheck Check(string tenant, string customer, string meterKey, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(tenant);
        ArgumentNullException.ThrowIfNull(customer);
        ArgumentNullException.ThrowIfNull(meterKey);
        long period = Windows.MonthStart(Windows.FromDateTimeOffset(now));
        var resetsAt = Windows.ToDateTimeOffset(Windows.AddMonths(period, 1));
        var meter = _catalog.Find(tenant, meterKey);
        if (meter is null)
            return new EntitlementCheck(false, 0, null, null, resetsAt, MeterFound: false);

        decimal usage = _totals.TryGet(KeyBuilder.EntitlementKey(tenant, meterKey, customer), out var total) ? Usage(total, period, meter) : 0;

        if (!_limits.TryGetValue((tenant, meterKey, customer), out decimal limit) && !_limits.TryGetValue((tenant, meterKey, null), out limit))
            return new EntitlementCheck(true, usage, null, null, resetsAt, MeterFound: true);
        return new EntitlementCheck(usage < limit, usage, limit, Math.Max(0, limit - usage), resetsAt, MeterFound: true);
    }

    public IEnumerable<EntitlementUsage> ListReached(string tenant, decimal percent, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(tenant);
        if (percent is < 0 or > 100)
            throw new ArgumentOutOfRangeException(nameof(percent), percent, "percent must be from 0 to 100.");
        return EnumerateReached(tenant, percent, now);
    }

    private IEnumerable<EntitlementUsage> EnumerateReached(string tenant, decimal percent, DateTimeOffset now)
    {
        long period = Windows.MonthStart(Windows.FromDateTimeOffset(now));
        var periodStart = Windows.ToDateTimeOffset(period);
        var resetsAt = Windows.ToDateTimeOffset(Windows.AddMonths(period, 1));
        var limits = ListLimits(tenant);
        foreach (var limit in limits)
        {
            if (limit.Limit <= 0 || _catalog.Find(tenant, limit.MeterKey) is not { } meter)
                continue;
            if (limit.Customer is { } customer)
            {
                decimal usage = _totals.TryGet(KeyBuilder.EntitlementKey(tenant, limit.MeterKey, customer), out var total) ? Usage(total, period, meter) : 0;
                if (HasReached(usage, limit.Limit, percent))
                    yield return new EntitlementUsage(customer, limit.MeterKey, usage, limit.Limit, periodStart, resetsAt);
                continue;
            }
            // The default: every customer with usage of the meter, except those with a limit of their own (listed
            // above). The usage is compared first, so that the many below the share cost one read each.
            var own = OwnLimits(limits, limit.MeterKey);
            var totals = _totals.ForMeter(tenant, limit.MeterKey);
            for (int i = 0; i < totals.Count; i++)
            {
                var (customerName, total) = totals[i];
                decimal usage = Usage(total, period, meter);
                if (HasReached(usage, limit.Limit, percent) && own?.Contains(customerName) != true)
                    yield return new EntitlementUsage(customerName, limit.MeterKey, usage, limit.Limit, periodStart, resetsAt);
            }
        }
    }

    /// <summary>The customers with a limit of their own on the meter; null when there are none.</summary>
    private static HashSet<string>? OwnLimits(IReadOnlyList<EntitlementLimit> limits, string meterKey)
    {
        HashSet<string>? own = null;
        foreach (var limit in limits)
        {
            if (limit.Customer is { } customer && limit.MeterKey == meterKey)
                (own ??= new HashSet<string>(StringComparer.Ordinal)).Add(customer);
        }
        return own;
    }

    /// <summary>The total's usage in the period starting at <paramref name="period"/>: a total of an earlier period means
    /// no usage yet in this one.</summary>
    private static decimal Usage(PeriodTotal total, long period, MeterDefinition meter)
    {
        total.Read(out long totalPeriod, out var state);
        return totalPeriod == period ? state.Value(meter.Aggregation) : 0;
    }

    /// <summary>usage ≥ percent % of limit, exactly (both sides multiplied, nothing divided).</summary>
    private static bool HasReached(decimal usage, decimal limit, decimal percent) => usage * 100 >= limit * percent;

    public async ValueTask SetLimitAsync(EntitlementLimit limit, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(limit);
        if (string.IsNullOrEmpty(limit.Tenant) || string.IsNullOrEmpty(limit.MeterKey))
            throw new ArgumentException("An entitlement limit needs a tenant and a meter key.", nameof(limit));
        if (limit.Customer is { Length: 0 })
            throw new ArgumentException("customer must not be empty (null sets the tenant's default).", nameof(limit));
        if (limit.Limit < 0)
            throw new ArgumentException($"An entitlement limit cannot be negative ({limit.Limit}).", nameof(limit));
        await ChangeAsync(() => _limits[(limit.Tenant, limit.MeterKey, limit.Customer)] = limit.Limit, cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask<bool> RemoveLimitAsync(string tenant, string meterKey, string? customer, CancellationToken cancellationToken = default)
    {
        bool removed = false;
        await ChangeAsync(() => removed = _limits.TryRemove((tenant, meterKey, customer), out _), cancellationToken).ConfigureAwait(false);
        return removed;
    }

    public IReadOnlyList<EntitlementLimit> ListLimits(string tenant)
    {
        var list = new List<EntitlementLimit>();
        foreach (var ((t, meter, customer), limit) in _limits)
        {
            if (t == tenant)
                list.Add(new EntitlementLimit(t, meter, customer, limit));
        }
        list.Sort(static (a, b) => string.CompareOrdinal(a.MeterKey, b.MeterKey) is int c && c != 0 ? c : string.CompareOrdinal(a.Customer, b.Customer));
        return list;
    }

    private async ValueTask ChangeAsync(Action change, CancellationToken cancellationToken)
    {
        await _write.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            change();
            var all = new List<EntitlementLimit>();
            foreach (var ((tenant, meter, customer), limit) in _limits)
                all.Add(new EntitlementLimit(tenant, meter, customer, limit));
            JsonFiles.Write(_path, all);
        }
        finally
        {
            _write.Release();
        }
    }
}
