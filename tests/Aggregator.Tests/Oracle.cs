using System.Globalization;
using System.IO.Hashing;
using System.Text;
using AlphaMesh.Aggregator.Internal;

namespace AlphaMesh.Aggregator.Tests;

/// <summary>The straightforward answer: dedupe by (tenant, id) in log order, then compute every row from the events.</summary>
internal static class Oracle
{
    public static string RowKey(string customer, IEnumerable<string> groupValues, DateTimeOffset window)
        => customer + "|" + string.Join("\u0001", groupValues) + "|" + window.ToString("O", CultureInfo.InvariantCulture);

    public static Dictionary<string, decimal> Actual(UsageResult result)
    {
        var rows = new Dictionary<string, decimal>();
        foreach (var row in result.Rows)
            rows.Add(RowKey(row.Customer, row.GroupBy.Values, row.WindowStart), row.Value);
        return rows;
    }

    public static List<TestEvent> Unique(IEnumerable<TestEvent> appended)
    {
        var seen = new HashSet<(string, string)>();
        var unique = new List<TestEvent>();
        foreach (var e in appended)
        {
            if (seen.Add((e.Tenant, e.Id)))
                unique.Add(e);
        }
        return unique;
    }

    public static bool TryValue(string? text, out decimal value)
    {
        value = 0;
        return text is not null && decimal.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
    }

    private static UInt128 IdHash(string id) => XxHash128.HashToUInt128(Encoding.UTF8.GetBytes(id));

    private static string Group(MeterDefinition meter, TestEvent e) => string.Join("\u0001", meter.GroupBy.Select(k => e.Get(k) ?? ""));

    /// <summary>The meter's valid events in log order; TIME_WEIGHTED_SUM readings older than their window's latest are invalid.</summary>
    public static (List<TestEvent> Valid, int Invalid) Valid(IEnumerable<TestEvent> appended, MeterDefinition meter)
    {
        var valid = new List<TestEvent>();
        int invalid = 0;
        var latest = new Dictionary<(string, string, long), long>();
        foreach (var e in Unique(appended))
        {
            if (e.Tenant != meter.Tenant || e.Type != meter.EventType)
                continue;
            bool ok = meter.Aggregation switch
            {
                Aggregation.Count => true,
                Aggregation.UniqueCount => e.Get(meter.ValueProperty!) is not null,
                _ => TryValue(e.Get(meter.ValueProperty!), out _),
            };
            if (ok && meter.Aggregation == Aggregation.TimeWeightedSum)
            {
                var window = (e.Customer, Group(meter, e), Windows.Start(meter.WindowSize, e.TimeNanos));
                if (latest.TryGetValue(window, out long last) && e.TimeNanos < last)
                    ok = false;
                else
                    latest[window] = e.TimeNanos;
            }
            if (ok)
                valid.Add(e);
            else
                invalid++;
        }
        return (valid, invalid);
    }

    /// <summary>The meter's valid events that a query reads: its customer, its filters, windows overlapping its range.</summary>
    private static List<TestEvent> Selected(IEnumerable<TestEvent> appended, MeterDefinition meter, UsageQuery query)
    {
        var size = query.WindowSize ?? meter.WindowSize;
        long from = Windows.Start(size, Windows.FromDateTimeOffset(query.From));
        long to = Windows.FromDateTimeOffset(query.To);
        var filters = query.Filters ?? new Dictionary<string, string>();
        return Valid(appended, meter).Valid
            .Where(e => query.Customer is null || e.Customer == query.Customer)
            .Where(e => filters.All(f => (e.Get(f.Key) ?? "") == f.Value))
            .Where(e => e.TimeNanos >= from && Windows.Start(size, e.TimeNanos) < to)
            .ToList();
    }

    /// <summary>The events of each row: what a per-event fee is charged on.</summary>
    public static Dictionary<string, long> EventCounts(IEnumerable<TestEvent> appended, MeterDefinition meter, UsageQuery query)
    {
        var size = query.WindowSize ?? meter.WindowSize;
        var groupBy = query.GroupBy ?? [];
        return Selected(appended, meter, query)
            .GroupBy(e => RowKey(e.Customer, groupBy.Select(k => e.Get(k) ?? ""), Windows.ToDateTimeOffset(Windows.Start(size, e.TimeNanos))))
            .ToDictionary(row => row.Key, row => (long)row.Count());
    }

    public static Dictionary<string, long> ActualEventCounts(UsageResult result) =>
        result.Rows.ToDictionary(row => RowKey(row.Customer, row.GroupBy.Values, row.WindowStart), row => row.EventCount);

    public static Dictionary<string, decimal> Usage(IEnumerable<TestEvent> appended, MeterDefinition meter, UsageQuery query)
    {
        var size = query.WindowSize ?? meter.WindowSize;
        var groupBy = query.GroupBy ?? [];
        var selected = Selected(appended, meter, query);

        var rows = new Dictionary<string, decimal>();
        if (meter.Aggregation == Aggregation.TimeWeightedSum)
        {
            // Integrate each (customer, all group values, base window) on its own, then add into the query's rows.
            foreach (var series in selected.GroupBy(e => (e.Customer, Group(meter, e), Windows.Start(meter.WindowSize, e.TimeNanos))))
            {
                long windowEnd = Windows.End(meter.WindowSize, series.Key.Item3);
                var readings = series.OrderBy(e => e.TimeNanos).ThenBy(e => IdHash(e.Id)).ToList();
                decimal total = 0;
                for (int i = 0; i < readings.Count; i++)
                {
                    long until = i + 1 < readings.Count ? readings[i + 1].TimeNanos : windowEnd;
                    TryValue(readings[i].Get(meter.ValueProperty!), out decimal v);
                    total += v * (until - readings[i].TimeNanos) / 1_000_000_000m;
                }
                var first = readings[0];
                string key = RowKey(first.Customer, groupBy.Select(k => first.Get(k) ?? ""), Windows.ToDateTimeOffset(Windows.Start(size, first.TimeNanos)));
                rows[key] = rows.GetValueOrDefault(key) + total;
            }
            return rows;
        }

        foreach (var row in selected.GroupBy(e => RowKey(e.Customer, groupBy.Select(k => e.Get(k) ?? ""), Windows.ToDateTimeOffset(Windows.Start(size, e.TimeNanos)))))
        {
            var values = row.Select(e => { TryValue(e.Get(meter.ValueProperty ?? ""), out decimal v); return v; }).ToList();
            rows[row.Key] = meter.Aggregation switch
            {
                Aggregation.Count => row.Count(),
                Aggregation.Sum => values.Sum(),
                Aggregation.Min => values.Min(),
                Aggregation.Max => values.Max(),
                Aggregation.Avg => values.Sum() / values.Count,
                Aggregation.Latest => row.OrderBy(e => e.TimeNanos).ThenBy(e => IdHash(e.Id)).Select(e => { TryValue(e.Get(meter.ValueProperty!), out decimal v); return v; }).Last(),
                Aggregation.UniqueCount => row.Select(e => e.Get(meter.ValueProperty!)).Distinct().Count(),
                _ => throw new NotSupportedException(),
            };
        }
        return rows;
    }
}

/// <summary>Randomized event sets: several tenants, customers and types, decimal values with up to four decimals,
/// missing and non-numeric values, group values, times across a month boundary, and exact duplicates.</summary>
internal static class RandomEvents
{
    public static readonly DateTime Start = new(2026, 1, 30, 0, 0, 0, DateTimeKind.Utc);
    public static readonly TimeSpan Span = TimeSpan.FromDays(3);

    public static List<TestEvent> Generate(Random random, int count, List<TestEvent>? earlier = null, string idPrefix = "e")
    {
        var events = new List<TestEvent>();
        for (int i = 0; i < count; i++)
        {
            var pool = earlier is null ? events : [.. earlier, .. events];
            if (pool.Count > 0 && random.Next(100) < 15)
            {
                events.Add(pool[random.Next(pool.Count)]); // an exact resend
                continue;
            }
            var data = new List<(string, string)>();
            int roll = random.Next(100);
            if (roll < 80)
            {
                decimal value = random.Next(0, 100_000) / (decimal)Math.Pow(10, random.Next(0, 5));
                data.Add(("tokens", (random.Next(10) == 0 ? -value : value).ToString(CultureInfo.InvariantCulture)));
            }
            else if (roll < 90)
            {
                data.Add(("tokens", "n/a"));
            }
            if (random.Next(10) != 0)
                data.Add(("region", random.Next(3) switch { 0 => "eu", 1 => "us", _ => "ap" }));
            data.Add(("model", "m" + random.Next(3)));
            if (random.Next(10) != 0)
                data.Add(("user", "u" + random.Next(8)));
            var time = Start.AddTicks((long)(random.NextDouble() * Span.Ticks));
            events.Add(new TestEvent(
                random.Next(4) == 0 ? "globex" : "acme",
                $"{idPrefix}{i}",
                random.Next(8) == 0 ? "other" : "api_call",
                "c" + random.Next(6),
                time,
                [.. data]));
        }
        return events;
    }
}
