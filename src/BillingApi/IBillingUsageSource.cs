using AlphaMesh.Rating;

namespace AlphaMesh.BillingApi;

/// <summary>
/// Billing's view of the aggregator, in the server: the meters and usage it reads, and the entitlement limits that a
/// subscription's plan gives its customer. Kept to what billing needs, so that the billing API depends on no
/// aggregator type.
/// </summary>
public interface IBillingUsageSource
{
    /// <summary>The aggregation of the tenant's meter <paramref name="meterKey"/>; null when the tenant has no such meter.</summary>
    MeterAggregation? FindMeter(string tenant, string meterKey);

    /// <summary>
    /// The meter's quantity for one customer over <c>[from, to)</c>, and the number of events in it (what a percentage
    /// model's free events and per-event fee apply to), including every event acknowledged before the call. Throws
    /// <see cref="BillingUsageException"/> when the meter cannot be totalled exactly over that range. A UNIQUE_COUNT
    /// meter counts distinct values, not events: its event count is 0.
    /// </summary>
    Task<ChargeUsage> GetUsageAsync(string tenant, string meterKey, string customer, DateTimeOffset from, DateTimeOffset to,
        CancellationToken cancellationToken);

    /// <summary>As <see cref="GetUsageAsync"/> for every customer of the tenant with usage of the meter in the range
    /// (a customer without is absent): one question for a billing run's many subscriptions that share a period.</summary>
    Task<IReadOnlyDictionary<string, ChargeUsage>> GetUsagesAsync(string tenant, string meterKey, DateTimeOffset from, DateTimeOffset to,
        CancellationToken cancellationToken);

    /// <summary>
    /// Makes the customer's own limits those of its plan: <paramref name="limits"/> by meter (a plan's entitlements);
    /// a meter the customer has a limit of its own for but the plan has not loses it. The entitlement check then
    /// answers from these limits on every API call the customer makes.
    /// </summary>
    Task ApplyLimitsAsync(string tenant, string customer, IReadOnlyDictionary<string, decimal> limits, CancellationToken cancellationToken);

    /// <summary>Every customer of the tenant whose usage of a limited meter in the current period has reached
    /// <paramref name="percent"/> % of its limit, from memory: a customer with a limit of its own is compared with that
    /// one only, and every customer with usage of a meter that has a tenant default and no limit of its own with the
    /// default. Limits of 0 are left out. Lazy (read as enumerated), and a struct per customer: a tenant may have a
    /// million.</summary>
    IEnumerable<LimitUsage> ListLimitUsage(string tenant, decimal percent, DateTimeOffset now);
}

/// <summary>A customer's usage of a limited meter in the current period <c>[PeriodStart, ResetsAt)</c>.</summary>
public readonly record struct LimitUsage(string Customer, string Meter, decimal Usage, decimal Limit, DateTimeOffset PeriodStart, DateTimeOffset ResetsAt);

/// <summary>A usage question billing cannot answer exactly (the message says why); the billing run reports it.</summary>
public sealed class BillingUsageException(string message) : Exception(message);
