namespace AlphaMesh.Aggregator;

/// <summary>A usage question: one meter of one tenant over [<see cref="From"/>, <see cref="To"/>).</summary>
public sealed record UsageQuery
{
    public required string Tenant { get; init; }
    public required string MeterKey { get; init; }

    /// <summary>One customer, or null for every customer of the tenant (one row per customer and window).</summary>
    public string? Customer { get; init; }

    /// <summary>Start of the range; widened down to the start of its <see cref="WindowSize"/> window.</summary>
    public required DateTimeOffset From { get; init; }

    /// <summary>End of the range (exclusive); widened up to the end of its <see cref="WindowSize"/> window.</summary>
    public required DateTimeOffset To { get; init; }

    /// <summary>The rows' window; null means the meter's own window. Never finer than the meter's window.</summary>
    public WindowSize? WindowSize { get; init; }

    /// <summary>The meter's group-by keys to keep in the rows (a subset, in any order); the others are rolled
    /// together. Null or empty: no grouping.</summary>
    public IReadOnlyList<string>? GroupBy { get; init; }

    /// <summary>Only series whose group value for the key equals the given value (keys of the meter's group-by).</summary>
    public IReadOnlyDictionary<string, string>? Filters { get; init; }

    /// <summary>When true (the default) the query first waits until the aggregator has applied every event that
    /// was committed to the log when the query arrived, so that usage reflects every acknowledged event.</summary>
    public bool WaitForCommitted { get; init; } = true;
}

/// <summary>One row: the usage of one customer (and group values) in one window.</summary>
/// <param name="WindowStart">Start of the row's window (UTC).</param>
/// <param name="WindowEnd">End of the row's window (exclusive).</param>
/// <param name="Customer">The customer.</param>
/// <param name="Value">The exact value (TIME_WEIGHTED_SUM in unit-seconds).</param>
/// <param name="GroupBy">The values of the query's group-by keys, by key (empty without grouping).</param>
/// <param name="EventCount">The events counted into the row's window: what a per-event fee is charged on. For
/// UNIQUE_COUNT it is not an event count but the values first seen in the window (the same as <paramref name="Value"/>
/// in windows of the meter's own size); for TIME_WEIGHTED_SUM, the readings applied (out-of-order ones are not).</param>
public sealed record UsageRow(DateTimeOffset WindowStart, DateTimeOffset WindowEnd, string Customer,
    IReadOnlyDictionary<string, string> GroupBy, decimal Value, long EventCount);

/// <summary>The answer to a <see cref="UsageQuery"/>.</summary>
/// <param name="Rows">The rows, ordered by customer, group values and window start; only windows with usage.</param>
/// <param name="CustomerKnown">With a customer in the query: whether the tenant has any usage of that customer
/// (of any meter); false lets an endpoint answer 404 (another tenant's customer looks the same as none).</param>
public sealed record UsageResult(IReadOnlyList<UsageRow> Rows, bool CustomerKnown);

/// <summary>Why a query cannot be answered.</summary>
public enum UsageQueryError
{
    /// <summary>The tenant has no meter with this key (→ 404).</summary>
    MeterNotFound = 1,
    /// <summary>The range, window size, group-by or filters do not fit the meter (→ 400).</summary>
    InvalidArgument = 2,
}

public sealed class UsageQueryException : Exception
{
    public UsageQueryException(UsageQueryError error, string message) : base(message) => Error = error;

    public UsageQueryError Error { get; }
}

/// <summary>
/// Usage of a meter, read from the aggregates. Queries run on the partitions' aggregator loops between two
/// records (never concurrently with the single writer), so a row never shows half of an event.
/// </summary>
public interface IUsageQuery
{
    /// <summary>Throws <see cref="UsageQueryException"/> for an unknown meter or unfit arguments.</summary>
    ValueTask<UsageResult> QueryAsync(UsageQuery query, CancellationToken cancellationToken = default);
}
