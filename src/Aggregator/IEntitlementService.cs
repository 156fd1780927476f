namespace AlphaMesh.Aggregator;

/// <summary>A usage limit of one meter per period (a calendar month in UTC for now), for one customer or, with
/// a null <see cref="Customer"/>, the tenant's default for every customer without a limit of its own.</summary>
public sealed record EntitlementLimit(string Tenant, string MeterKey, string? Customer, decimal Limit);

/// <summary>The answer to "may this customer use more of this meter now?".</summary>
/// <param name="HasAccess">True when there is no limit or the usage is below it.</param>
/// <param name="Usage">The meter's value for the customer in the current period.</param>
/// <param name="Limit">Null when neither the customer nor the tenant default has a limit.</param>
/// <param name="Remaining">Limit minus usage, never below zero; null without a limit.</param>
/// <param name="ResetsAt">Start of the next period.</param>
/// <param name="MeterFound">False when the tenant has no such meter (→ 404).</param>
public readonly record struct EntitlementCheck(bool HasAccess, decimal Usage, decimal? Limit, decimal? Remaining,
    DateTimeOffset ResetsAt, bool MeterFound);

/// <summary>
/// Quota checks served from memory: the aggregators keep the current period's total of every (tenant, meter,
/// customer) in a concurrent table and update it after each event, so a check never waits for disk or for a
/// partition that is busy. The totals are part of each checkpoint and are restored with it.
/// </summary>
public interface IEntitlementService
{
    EntitlementCheck Check(string tenant, string customer, string meterKey, DateTimeOffset now);

    /// <summary>Sets (or replaces) a limit and persists it before returning.</summary>
    ValueTask SetLimitAsync(EntitlementLimit limit, CancellationToken cancellationToken = default);

    /// <summary>Removes a limit; false when there was none.</summary>
    ValueTask<bool> RemoveLimitAsync(string tenant, string meterKey, string? customer, CancellationToken cancellationToken = default);

    IReadOnlyList<EntitlementLimit> ListLimits(string tenant);
}
