using System.Globalization;
using System.Text.Json;

namespace AlphaMesh.LoadTests.Tests;

public sealed class ExactnessTests
{
    private static readonly string[] Customers = ["c0", "c1", "c2", "c3"];

    [Fact]
    public void Compare_LedgerEqualsServer_AllZero()
    {
        var ledger = new Ledger(Customers.Length, 3);
        ledger.Add(0, 0, 0.1m);
        ledger.Add(0, 2, 0.2m);
        ledger.Add(3, 1, 10.125m);
        var expected = Expected(("t1", ledger));

        var result = ExactnessResult.Compare(expected, new Dictionary<SeriesKey, decimal>(expected));

        Assert.True(result.Exact);
        Assert.Equal((0, 0, 0), (result.Lost, result.Doubled, result.Mismatched));
        Assert.Equal(3, result.Events);
        // c0: calls, tokens, 2 models; c3: calls, tokens, 1 model.
        Assert.Equal(7, result.Series);
    }

    [Fact]
    public void Compare_ServerCountsFewer_LostAndEverySeriesOfTheCustomerMismatched()
    {
        var expected = new Dictionary<SeriesKey, decimal>
        {
            [Calls("t1", "c1")] = 10,
            [Tokens("t1", "c1")] = 1.5m,
            [Calls("t1", "c2")] = 4,
        };
        var actual = new Dictionary<SeriesKey, decimal>
        {
            [Calls("t1", "c1")] = 7,
            [Tokens("t1", "c1")] = 1.2m,
            [Calls("t1", "c2")] = 4,
        };

        var result = ExactnessResult.Compare(expected, actual);

        Assert.Equal(3, result.Lost);
        Assert.Equal(0, result.Doubled);
        Assert.Equal(2, result.Mismatched);
        Assert.Contains(result.Examples, e => e.Contains("t1/c1/load_calls: ledger 10, server 7", StringComparison.Ordinal));
    }

    [Fact]
    public void Compare_ServerCountsMore_Doubled()
    {
        var expected = new Dictionary<SeriesKey, decimal> { [Calls("t1", "c1")] = 10 };
        var actual = new Dictionary<SeriesKey, decimal> { [Calls("t1", "c1")] = 12 };

        var result = ExactnessResult.Compare(expected, actual);

        Assert.Equal((0L, 2L, 1), (result.Lost, result.Doubled, result.Mismatched));
    }

    [Fact]
    public void Compare_SumOffInTheLastDecimal_MismatchedButNotLost()
    {
        var expected = new Dictionary<SeriesKey, decimal> { [Calls("t1", "c1")] = 2, [Tokens("t1", "c1")] = 0.1m + 0.2m };
        var actual = new Dictionary<SeriesKey, decimal> { [Calls("t1", "c1")] = 2, [Tokens("t1", "c1")] = 0.3000000000000000000000000001m };

        var result = ExactnessResult.Compare(expected, actual);

        Assert.Equal((0L, 0L, 1), (result.Lost, result.Doubled, result.Mismatched));
    }

    [Fact]
    public void Compare_TrailingZerosOnTheServer_Equal()
    {
        var expected = new Dictionary<SeriesKey, decimal> { [Tokens("t1", "c1")] = 1.5m };
        var actual = new Dictionary<SeriesKey, decimal> { [Tokens("t1", "c1")] = decimal.Parse("1.500", CultureInfo.InvariantCulture) };

        Assert.True(ExactnessResult.Compare(expected, actual).Exact);
    }

    [Fact]
    public void Compare_SeriesOnlyOnTheServer_DoubledAndMismatched()
    {
        // What usage leaking from one tenant into another would look like: the same customer name, another tenant.
        var expected = new Dictionary<SeriesKey, decimal> { [Calls("t1", "c1")] = 5 };
        var actual = new Dictionary<SeriesKey, decimal> { [Calls("t1", "c1")] = 5, [Calls("t2", "c1")] = 5 };

        var result = ExactnessResult.Compare(expected, actual);

        Assert.Equal((0L, 5L, 1), (result.Lost, result.Doubled, result.Mismatched));
        Assert.Contains("t2/c1/load_calls: ledger none, server 5", result.Examples);
    }

    [Fact]
    public void Compare_ManyMismatches_ExamplesCapped()
    {
        var expected = Enumerable.Range(0, 50).ToDictionary(i => Calls("t1", $"c{i}"), _ => 1m);

        var result = ExactnessResult.Compare(expected, new Dictionary<SeriesKey, decimal>(), maxExamples: 5);

        Assert.Equal((50L, 50), (result.Lost, result.Mismatched));
        Assert.Equal(5, result.Examples.Count);
    }

    [Fact]
    public void Subtract_UsageFromEarlierRuns_LeavesOnlyWhatTheRunAdded()
    {
        var before = new Dictionary<SeriesKey, decimal> { [Calls("t1", "c1")] = 100, [Calls("t1", "c2")] = 7, [Calls("t1", "c3")] = 3 };
        var after = new Dictionary<SeriesKey, decimal> { [Calls("t1", "c1")] = 130, [Calls("t1", "c2")] = 7, [Calls("t1", "c4")] = 2 };

        var run = ExactnessResult.Subtract(after, before);

        Assert.Equal(30, run[Calls("t1", "c1")]);
        Assert.False(run.ContainsKey(Calls("t1", "c2"))); // unchanged: not touched by the run
        Assert.Equal(-3, run[Calls("t1", "c3")]);         // vanished: must show as a mismatch
        Assert.Equal(2, run[Calls("t1", "c4")]);
    }

    [Fact]
    public void AddTo_RowsOfOneSeriesInTwoMonths_AddUp()
    {
        const string Json = """
            {"data":[
              {"windowStart":"2026-10-01T00:00:00Z","windowEnd":"2026-11-01T00:00:00Z","customer":"c1","groupBy":{"model":"gpt-4o"},"value":"1.25"},
              {"windowStart":"2026-11-01T00:00:00Z","windowEnd":"2026-12-01T00:00:00Z","customer":"c1","groupBy":{"model":"gpt-4o"},"value":"2.5"},
              {"windowStart":"2026-11-01T00:00:00Z","windowEnd":"2026-12-01T00:00:00Z","customer":"c1","groupBy":{"model":"llama-3.1-70b"},"value":"0.001"},
              {"windowStart":"2026-11-01T00:00:00Z","windowEnd":"2026-12-01T00:00:00Z","customer":"c2","groupBy":{},"value":"3"}
            ]}
            """;
        var series = new Dictionary<SeriesKey, decimal>();

        UsageRows.AddTo(series, Json, "t1", LoadMeters.TokensByModel);

        Assert.Equal(3.75m, series[new SeriesKey("t1", "c1", LoadMeters.TokensByModel, "model=gpt-4o")]);
        Assert.Equal(0.001m, series[new SeriesKey("t1", "c1", LoadMeters.TokensByModel, "model=llama-3.1-70b")]);
        Assert.Equal(3m, series[new SeriesKey("t1", "c2", LoadMeters.TokensByModel, "")]);
        Assert.Equal(3, series.Count);
    }

    [Fact]
    public void AddTo_NotAUsageAnswer_Throws()
    {
        var series = new Dictionary<SeriesKey, decimal>();
        Assert.Throws<KeyNotFoundException>(() => UsageRows.AddTo(series, """{"error":{"code":"x"}}""", "t1", LoadMeters.Calls));
        Assert.Throws<FormatException>(() => UsageRows.AddTo(series, """{"data":[{"customer":"c","value":"1e400"}]}""", "t1", LoadMeters.Calls));
    }

    /// <summary>
    /// Random events for random tenants and customers; the "server" answers from its own copy of the events, in which
    /// some were dropped, some counted twice and some have another tokens value. The ledger and the comparison must
    /// give what a plain recomputation from the two event lists gives.
    /// </summary>
    [Fact]
    public void Compare_RandomLedgersAndServerFaults_MatchesRecomputationFromTheEvents()
    {
        for (int seed = 1; seed <= 200; seed++)
        {
            var random = new Random(seed);
            string[] tenants = [.. Enumerable.Range(1, random.Next(1, 4)).Select(i => $"t{i}")];
            var acknowledged = new List<Event>();
            for (int i = random.Next(0, 400); i > 0; i--)
            {
                acknowledged.Add(new Event(tenants[random.Next(tenants.Length)], random.Next(Customers.Length), random.Next(3),
                    LoadGenerator.TokenValues[random.Next(LoadGenerator.TokenValues.Length)]));
            }
            var counted = new List<Event>();
            foreach (var e in acknowledged)
            {
                int fault = random.Next(100);
                if (fault < 3)
                    continue; // lost
                counted.Add(e);
                if (fault < 6)
                    counted.Add(e); // doubled
                else if (fault < 8)
                    counted[^1] = e with { Tokens = e.Tokens + 0.001m }; // a wrong value
            }
            if (random.Next(4) == 0)
                counted.Add(new Event("t-other", 0, 0, 1m)); // usage of a tenant the run does not have

            // The harness side: per-tenant ledgers, as the settling loops fill them.
            var ledgers = tenants.ToDictionary(t => t, _ => new Ledger(Customers.Length, 3));
            foreach (var e in acknowledged)
                ledgers[e.Tenant].Add(e.Customer, e.Model, e.Tokens);
            var expected = new Dictionary<SeriesKey, decimal>();
            foreach (var (tenant, ledger) in ledgers)
                ledger.AddExpectedSeries(tenant, Customers, LoadMeters.Models, expected);
            // The server side: its JSON answers, split over two month windows, read back as the harness reads them.
            var actual = new Dictionary<SeriesKey, decimal>();
            foreach (var (meter, json) in ServerAnswers(counted, random))
                UsageRows.AddTo(actual, json.Json, json.Tenant, meter);

            var result = ExactnessResult.Compare(expected, actual);

            // The recomputation, straight from the two lists of events.
            var mine = Totals(acknowledged);
            var theirs = Totals(counted);
            long lost = 0, doubled = 0;
            foreach (var key in mine.Keys.Union(theirs.Keys).Where(k => k.Meter == LoadMeters.Calls))
            {
                decimal a = mine.GetValueOrDefault(key), b = theirs.GetValueOrDefault(key);
                lost += (long)Math.Max(0, a - b);
                doubled += (long)Math.Max(0, b - a);
            }
            int mismatched = mine.Keys.Union(theirs.Keys).Count(k => !mine.TryGetValue(k, out var a) || !theirs.TryGetValue(k, out var b) || a != b);

            Assert.True((lost, doubled, mismatched) == (result.Lost, result.Doubled, result.Mismatched),
                $"seed {seed}: expected lost {lost} doubled {doubled} mismatched {mismatched}, got {result.Summary}");
            Assert.Equal(acknowledged.Count, result.Events);
        }
    }

    private sealed record Event(string Tenant, int Customer, int Model, decimal Tokens);

    /// <summary>Every meter's series of a list of events, by LINQ grouping.</summary>
    private static Dictionary<SeriesKey, decimal> Totals(List<Event> events)
    {
        var totals = new Dictionary<SeriesKey, decimal>();
        foreach (var g in events.GroupBy(e => (e.Tenant, e.Customer)))
        {
            totals[Calls(g.Key.Tenant, Customers[g.Key.Customer])] = g.Count();
            totals[Tokens(g.Key.Tenant, Customers[g.Key.Customer])] = g.Sum(e => e.Tokens);
            foreach (var m in g.GroupBy(e => e.Model))
                totals[new SeriesKey(g.Key.Tenant, Customers[g.Key.Customer], LoadMeters.TokensByModel, "model=" + LoadMeters.Models[m.Key])] = m.Sum(e => e.Tokens);
        }
        return totals;
    }

    /// <summary>The usage API's answers (MONTH windows) for the events, each series split at random over two months.</summary>
    private static IEnumerable<(string Meter, (string Tenant, string Json) Json)> ServerAnswers(List<Event> events, Random random)
    {
        foreach (var tenant in events.Select(e => e.Tenant).Distinct())
        {
            var mine = events.Where(e => e.Tenant == tenant).ToList();
            foreach (var (meter, _, _, groupBy) in LoadMeters.All)
            {
                var rows = new List<object>();
                foreach (var series in mine.GroupBy(e => (e.Customer, Model: groupBy.Length > 0 ? e.Model : -1)))
                {
                    var groups = series.Key.Model < 0 ? new Dictionary<string, string>() : new() { ["model"] = LoadMeters.Models[series.Key.Model] };
                    int split = random.Next(series.Count() + 1);
                    foreach (var part in new[] { series.Take(split).ToList(), series.Skip(split).ToList() }.Where(p => p.Count > 0))
                    {
                        decimal value = meter == LoadMeters.Calls ? part.Count : part.Sum(e => e.Tokens);
                        rows.Add(new { windowStart = "2026-11-01T00:00:00Z", customer = Customers[series.Key.Customer], groupBy = groups, value = value.ToString(CultureInfo.InvariantCulture) });
                    }
                }
                yield return (meter, (tenant, JsonSerializer.Serialize(new { data = rows })));
            }
        }
    }

    private static Dictionary<SeriesKey, decimal> Expected(params (string Tenant, Ledger Ledger)[] ledgers)
    {
        var expected = new Dictionary<SeriesKey, decimal>();
        foreach (var (tenant, ledger) in ledgers)
            ledger.AddExpectedSeries(tenant, Customers, LoadMeters.Models, expected);
        return expected;
    }

    private static SeriesKey Calls(string tenant, string customer) => new(tenant, customer, LoadMeters.Calls, "");

    private static SeriesKey Tokens(string tenant, string customer) => new(tenant, customer, LoadMeters.Tokens, "");
}
