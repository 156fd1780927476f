using AlphaMesh.Rating;

namespace AlphaMesh.BillingApi;

/// <summary>
/// Where the billing API reads meters and usage: the aggregator, in the server. Kept to what billing needs, so that the
/// billing API depends on no aggregator type.
/// </summary>
public interface IBillingUsageSource
{
    /// <summary>The aggregation of the tenant's meter <paramref name="meterKey"/>; null when the tenant has no such meter.</summary>
    MeterAggregation? FindMeter(string tenant, string meterKey);

    /// <summary>
    /// The meter's quantity for one customer over <c>[from, to)</c>, including every event acknowledged before the
    /// call. Throws <see cref="BillingUsageException"/> when the meter cannot be totalled exactly over that range.
    /// </summary>
    Task<decimal> GetQuantityAsync(string tenant, string meterKey, string customer, DateTimeOffset from, DateTimeOffset to,
        CancellationToken cancellationToken);
}

/// <summary>A usage question billing cannot answer exactly (the message says why); the billing run reports it.</summary>
public sealed class BillingUsageException(string message) : Exception(message);
