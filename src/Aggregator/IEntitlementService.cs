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

/// <summary>A customer's usage of a limited meter in the current period <c>[PeriodStart, ResetsAt)</c>, and the limit
/// that applies to it: its own, or the tenant default when it has none. A struct: a tenant may list a million.</summary>
public readonly record struct EntitlementUsage(string Customer, string MeterKey, decimal Usage, decimal Limit, DateTimeOffset PeriodStart, DateTimeOffset ResetsAt);

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

    /// <summary>
    /// Every customer of the tenant whose usage in the current period has reached <paramref name="percent"/> % of the
    /// limit that applies to it: customers with a limit of their own, checked against it only, and every customer with
    /// usage of a meter that has a tenant default and no limit of its own, checked against the default. A limit of 0
    /// is left out (there is no share of it to reach). From memory, on any thread: it reads the totals as the
    /// entitlement check does and never waits for a partition's loop; the work grows with the customers of the
    /// tenant's default-limited meters. Lazy: each total is read as the enumeration reaches it, and nothing is
    /// allocated per customer.
    /// </summary>
    IEnumerable<EntitlementUsage> ListReached(string tenant, decimal percent, DateTimeOffset now);
}
