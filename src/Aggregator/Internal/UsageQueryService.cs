using System.Text;
using AlphaMesh.Core;

namespace AlphaMesh.Aggregator.Internal;

/// <summary>A validated query, ready for the partitions' loops. Times are Unix nanoseconds, aligned to <see cref="WindowSize"/>.</summary>
internal sealed class QueryPlan
{
    public required string Tenant { get; init; }
    public required MeterDefinition Meter { get; init; }
    public required string? Customer { get; init; }
    public required long From { get; init; }
    public required long To { get; init; }
    public required WindowSize WindowSize { get; init; }
    /// <summary>The stored level read: the meter's window, or for UNIQUE_COUNT the query's window (kept per level).</summary>
    public required WindowSize ReadLevel { get; init; }
    /// <summary>Read the customer-wide series of a grouped UNIQUE_COUNT meter instead of the per-group series.</summary>
    public required bool CustomerTotal { get; init; }
    /// <summary>Indexes (in the meter's group-by) of the query's group-by keys, in the query's order.</summary>
    public required int[] Projection { get; init; }
    public required string[] ProjectionKeys { get; init; }
    public required (int Index, string Value)[] Filters { get; init; }

    public bool Matches(Series series)
    {
        foreach (var (index, value) in Filters)
        {
            if (series.GroupValues[index] != value)
                return false;
        }
        return true;
    }
}

/// <summary>Merges the windows read on one partition into rows (customer, projected group values, window).</summary>
internal sealed class RowAccumulator(QueryPlan plan)
{
    private readonly Dictionary<(string Customer, string Group, long Window), Row> _rows = [];

    internal sealed class Row(string customer, string[] values, long window)
    {
        public string Customer { get; } = customer;
        public string[] Values { get; } = values;
        public long Window { get; } = window;
        public string GroupKey { get; init; } = "";
        public AggregateState State;
    }

    public IEnumerable<Row> Rows => _rows.Values;

    public void Add(Series series, long window, in AggregateState state)
    {
        var key = (series.Customer, plan.Projection.Length == 0 ? "" : GroupKey(series), window);
        if (!_rows.TryGetValue(key, out var row))
            _rows[key] = row = new Row(series.Customer, GroupValues(series), window) { GroupKey = key.Item2 };
        row.State.Merge(state, plan.Meter.Aggregation);
    }

    /// <summary>The row's group values, in the order the query groups by (none: a shared empty array).</summary>
    private string[] GroupValues(Series series)
    {
        var values = plan.Projection.Length == 0 ? [] : new string[plan.Projection.Length];
        for (int i = 0; i < values.Length; i++)
            values[i] = series.GroupValues[plan.Projection[i]];
        return values;
    }

    /// <summary>The group values as one string that tells every combination apart (each value prefixed with its length).</summary>
    private string GroupKey(Series series)
    {
        var group = new StringBuilder();
        foreach (int index in plan.Projection)
        {
            string value = series.GroupValues[index];
            group.Append(value.Length).Append(':').Append(value);
        }
        return group.ToString();
    }
}

/// <summary>
/// Plans a query, sends it to the loop of every partition that can hold its rows (one, when the customer is given:
/// the customer's partition), and merges the answers. A customer's series all live on one partition, so rows from
/// different partitions never need merging.
/// </summary>
internal sealed class UsageQueryService(IMeterCatalog catalog, IEventLog log, PartitionAggregator[] partitions) : IUsageQuery
{
    private static readonly DateTimeOffset EarliestTime = new(1700, 1, 1, 0, 0, 0, TimeSpan.Zero);
    /// <summary>The group-by of every row of a query without one (read-only, so one instance serves them all).</summary>
    private static readonly IReadOnlyDictionary<string, string> NoGroups = System.Collections.ObjectModel.ReadOnlyDictionary<string, string>.Empty;
    private static readonly DateTimeOffset LatestTime = new(2250, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public async ValueTask<UsageResult> QueryAsync(UsageQuery query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        var plan = Plan(query);
        PartitionAggregator[] targets = partitions;
        if (query.Customer is not null)
        {
            int index = Partitioning.PartitionOf(Encoding.UTF8.GetBytes(query.Tenant), Encoding.UTF8.GetBytes(query.Customer), partitions.Length);
            targets = [partitions[index]];
        }

        var answers = new Task<(RowAccumulator Rows, bool Known)>[targets.Length];
        for (int i = 0; i < targets.Length; i++)
        {
            long minPosition = query.WaitForCommitted ? log.GetPartition(targets[i].Index).CommittedPosition : 0;
            answers[i] = targets[i].Submit(minPosition, (partition, _) =>
            {
                var rows = new RowAccumulator(plan);
                partition.Query(plan, rows);
                bool known = plan.Customer is null || partition.HasCustomer(plan.Tenant, plan.Customer);
                return ValueTask.FromResult((rows, known));
            });
        }
        var results = await Task.WhenAll(answers).WaitAsync(cancellationToken).ConfigureAwait(false);

        var merged = new List<RowAccumulator.Row>();
        bool customerKnown = true;
        foreach (var (rows, known) in results)
        {
            merged.AddRange(rows.Rows);
            customerKnown &= known;
        }
        merged.Sort(static (a, b) =>
        {
            int c = string.CompareOrdinal(a.Customer, b.Customer);
            if (c == 0)
                c = string.CompareOrdinal(a.GroupKey, b.GroupKey);
            return c != 0 ? c : a.Window.CompareTo(b.Window);
        });

        var output = new UsageRow[merged.Count];
        for (int i = 0; i < output.Length; i++)
        {
            var row = merged[i];
            IReadOnlyDictionary<string, string> groupBy = NoGroups;
            if (plan.ProjectionKeys.Length > 0)
            {
                var values = new Dictionary<string, string>(plan.ProjectionKeys.Length, StringComparer.Ordinal);
                for (int k = 0; k < plan.ProjectionKeys.Length; k++)
                    values[plan.ProjectionKeys[k]] = row.Values[k];
                groupBy = values;
            }
            output[i] = new UsageRow(Windows.ToDateTimeOffset(row.Window), Windows.ToDateTimeOffset(Windows.End(plan.WindowSize, row.Window)),
                row.Customer, groupBy, row.State.Value(plan.Meter.Aggregation), row.State.Count);
        }
        return new UsageResult(output, customerKnown);
    }

    internal QueryPlan Plan(UsageQuery query)
    {
        if (string.IsNullOrEmpty(query.Tenant) || string.IsNullOrEmpty(query.MeterKey))
            throw Invalid("tenant and meter key are required.");
        var meter = catalog.Find(query.Tenant, query.MeterKey)
            ?? throw new UsageQueryException(UsageQueryError.MeterNotFound, $"There is no meter '{query.MeterKey}'.");
        if (query.Customer is { Length: 0 })
            throw Invalid("customer must not be empty (leave it out for every customer).");

        var size = query.WindowSize ?? meter.WindowSize;
        if (!Enum.IsDefined(size))
            throw Invalid("windowSize must be MINUTE, HOUR, DAY or MONTH.");
        if (size < meter.WindowSize)
            throw Invalid($"windowSize {size.ToString().ToUpperInvariant()} is finer than the meter's window ({meter.WindowSize.ToString().ToUpperInvariant()}).");
        if (query.From >= query.To)
            throw Invalid("from must be before to.");
        // Times are kept as Unix nanoseconds in a long: outside these bounds they would wrap round, and the query
        // would silently answer for another century.
        if (query.From < EarliestTime || query.To > LatestTime)
            throw Invalid($"from and to must be between {EarliestTime:yyyy-MM-dd} and {LatestTime:yyyy-MM-dd}.");
        long from = Windows.Start(size, Windows.FromDateTimeOffset(query.From));
        long toTime = Windows.FromDateTimeOffset(query.To);
        long to = Windows.Start(size, toTime);
        if (to < toTime)
            to = Windows.End(size, to);

        var groupBy = query.GroupBy ?? [];
        var projection = new int[groupBy.Count];
        var keys = new string[groupBy.Count];
        var used = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < groupBy.Count; i++)
        {
            int index = IndexOf(meter, groupBy[i]);
            if (index < 0)
                throw Invalid($"groupBy key '{groupBy[i]}' is not one of the meter's group-by keys ({string.Join(", ", meter.GroupBy)}).");
            if (!used.Add(groupBy[i]))
                throw Invalid($"groupBy key '{groupBy[i]}' appears twice.");
            projection[i] = index;
            keys[i] = groupBy[i];
        }
        var filters = new List<(int, string)>();
        var fixedKeys = new HashSet<string>(used, StringComparer.Ordinal);
        foreach (var (key, value) in query.Filters ?? new Dictionary<string, string>())
        {
            int index = IndexOf(meter, key);
            if (index < 0)
                throw Invalid($"filter key '{key}' is not one of the meter's group-by keys ({string.Join(", ", meter.GroupBy)}).");
            filters.Add((index, value ?? ""));
            fixedKeys.Add(key);
        }

        // UNIQUE_COUNT rows must each be one stored series: distinct counts of several series cannot be added.
        bool customerTotal = false;
        if (meter.Aggregation == Aggregation.UniqueCount && meter.GroupBy.Count > 0 && fixedKeys.Count < meter.GroupBy.Count)
        {
            if (fixedKeys.Count > 0)
                throw Invalid("a UNIQUE_COUNT meter's rows are exact only per customer or per every group-by key: group by (or filter on) all of "
                    + $"{string.Join(", ", meter.GroupBy)}, or on none of them.");
            customerTotal = true;
        }

        return new QueryPlan
        {
            Tenant = query.Tenant,
            Meter = meter,
            Customer = query.Customer,
            From = from,
            To = to,
            WindowSize = size,
            ReadLevel = meter.Aggregation == Aggregation.UniqueCount ? size : meter.WindowSize,
            CustomerTotal = customerTotal,
            Projection = projection,
            ProjectionKeys = keys,
            Filters = [.. filters],
        };
    }

    private static int IndexOf(MeterDefinition meter, string key)
    {
        for (int i = 0; i < meter.GroupBy.Count; i++)
        {
            if (meter.GroupBy[i] == key)
                return i;
        }
        return -1;
    }

    private static UsageQueryException Invalid(string message) => new(UsageQueryError.InvalidArgument, message);
}
