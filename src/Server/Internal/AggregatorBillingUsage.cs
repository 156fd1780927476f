using AlphaMesh.Aggregator;
using AlphaMesh.BillingApi;
using AlphaMesh.Rating;

namespace AlphaMesh.Server.Internal;

/// <summary>
/// Billing's view of the aggregator. A period that is one calendar month is one MONTH roll-up, which is exact for
/// every aggregation (UNIQUE_COUNT and AVG included). Any other range of whole days is put together from DAY windows,
/// which is exact only where the value over a range follows from the values of its parts: sums (COUNT, SUM,
/// TIME_WEIGHTED_SUM), MIN, MAX and LATEST. AVG and UNIQUE_COUNT over such a range are refused with the reason, never
/// approximated.
/// </summary>
internal sealed class AggregatorBillingUsage(IMeterCatalog meters, IAggregator aggregator) : IBillingUsageSource
{
    public MeterAggregation? FindMeter(string tenant, string meterKey) => meters.Find(tenant, meterKey)?.Aggregation switch
    {
        null => null,
        Aggregation.Count => MeterAggregation.Count,
        Aggregation.Sum => MeterAggregation.Sum,
        Aggregation.Min => MeterAggregation.Min,
        Aggregation.Max => MeterAggregation.Max,
        Aggregation.Avg => MeterAggregation.Avg,
        Aggregation.Latest => MeterAggregation.Latest,
        Aggregation.UniqueCount => MeterAggregation.UniqueCount,
        Aggregation.TimeWeightedSum => MeterAggregation.TimeWeightedSum,
        var other => throw new InvalidOperationException($"aggregation {other} has no rating counterpart"),
    };

    public async Task<ChargeUsage> GetUsageAsync(string tenant, string meterKey, string customer, DateTimeOffset from, DateTimeOffset to,
        CancellationToken cancellationToken) =>
        (await QueryAsync(tenant, meterKey, customer, from, to, cancellationToken)).TryGetValue(customer, out var usage) ? usage : default;

    public Task<IReadOnlyDictionary<string, ChargeUsage>> GetUsagesAsync(string tenant, string meterKey, DateTimeOffset from, DateTimeOffset to,
        CancellationToken cancellationToken) => QueryAsync(tenant, meterKey, null, from, to, cancellationToken);

    private async Task<IReadOnlyDictionary<string, ChargeUsage>> QueryAsync(string tenant, string meterKey, string? customer, DateTimeOffset from,
        DateTimeOffset to, CancellationToken cancellationToken)
    {
        var meter = meters.Find(tenant, meterKey) ?? throw new BillingUsageException($"tenant '{tenant}' has no meter '{meterKey}'");
        if (to <= from)
            return new Dictionary<string, ChargeUsage>();
        bool oneMonth = from.Offset == TimeSpan.Zero && from.Day == 1 && from.TimeOfDay == TimeSpan.Zero && to == from.AddMonths(1);
        if (!oneMonth && meter.Aggregation is Aggregation.Avg or Aggregation.UniqueCount)
            throw new BillingUsageException($"meter '{meterKey}' ({meter.Aggregation}) can be billed exactly only over whole calendar months; " +
                $"[{from:yyyy-MM-dd}, {to:yyyy-MM-dd}) is not one (use a calendar-aligned plan, or a meter that adds up)");
        var query = new UsageQuery
        {
            Tenant = tenant,
            MeterKey = meterKey,
            Customer = customer,
            From = from,
            To = to,
            WindowSize = oneMonth ? WindowSize.Month : WindowSize.Day,
        };
        UsageResult result;
        try
        {
            result = await aggregator.Usage.QueryAsync(query, cancellationToken);
        }
        catch (UsageQueryException e)
        {
            throw new BillingUsageException($"usage of meter '{meterKey}' for [{from:O}, {to:O}): {e.Message}");
        }
        // Rows come ordered by customer, then window start.
        var usages = new Dictionary<string, ChargeUsage>();
        foreach (var rows in result.Rows.GroupBy(r => r.Customer))
        {
            decimal quantity = meter.Aggregation switch
            {
                Aggregation.Min => rows.Min(r => r.Value),
                Aggregation.Max => rows.Max(r => r.Value),
                // The latest window holds the latest reading.
                Aggregation.Latest => rows.Last().Value,
                _ => rows.Sum(r => r.Value),
            };
            // Every window's events add up over the range; a UNIQUE_COUNT window counts values, not events.
            long events = meter.Aggregation == Aggregation.UniqueCount ? 0 : rows.Sum(r => r.EventCount);
            usages[rows.Key] = new ChargeUsage(quantity, events);
        }
        return usages;
    }

    public async Task ApplyLimitsAsync(string tenant, string customer, IReadOnlyDictionary<string, decimal> limits, CancellationToken cancellationToken)
    {
        foreach (var stale in aggregator.Entitlements.ListLimits(tenant).Where(l => l.Customer == customer && !limits.ContainsKey(l.MeterKey)))
            await aggregator.Entitlements.RemoveLimitAsync(tenant, stale.MeterKey, customer, cancellationToken);
        foreach (var (meter, limit) in limits)
            await aggregator.Entitlements.SetLimitAsync(new EntitlementLimit(tenant, meter, customer, limit), cancellationToken);
    }

    public IEnumerable<LimitUsage> ListLimitUsage(string tenant, decimal percent, DateTimeOffset now)
    {
        foreach (var usage in aggregator.Entitlements.ListReached(tenant, percent, now))
            yield return new LimitUsage(usage.Customer, usage.MeterKey, usage.Usage, usage.Limit, usage.PeriodStart, usage.ResetsAt);
    }
}
