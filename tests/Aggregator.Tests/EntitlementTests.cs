using System.Globalization;

namespace AlphaMesh.Aggregator.Tests;

public sealed class EntitlementTests
{
    private static readonly DateTime Day = new(2026, 3, 10, 12, 0, 0, DateTimeKind.Utc);
    private static readonly DateTimeOffset InMarch = new(2026, 3, 20, 0, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset April = new(2026, 4, 1, 0, 0, 0, TimeSpan.Zero);

    [Fact]
    public async Task Check_CustomerLimitAndDefault_ReportsUsageLimitRemaining()
    {
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "calls", Aggregation.Count);
        await harness.StartAsync();
        await harness.Aggregator.Entitlements.SetLimitAsync(new EntitlementLimit("acme", "calls", null, 5));
        await harness.Aggregator.Entitlements.SetLimitAsync(new EntitlementLimit("acme", "calls", "vip", 100));

        await harness.AppendAsync([
            .. Enumerable.Range(0, 5).Select(i => new TestEvent("acme", $"a{i}", "api_call", "basic", Day)),
            .. Enumerable.Range(0, 3).Select(i => new TestEvent("acme", $"v{i}", "api_call", "vip", Day)),
            new TestEvent("acme", "old", "api_call", "vip", Day.AddMonths(-1)), // last month: not in this period
        ]);

        var basic = harness.Aggregator.Entitlements.Check("acme", "basic", "calls", InMarch);
        Assert.Equal(new EntitlementCheck(false, 5, 5, 0, April, true), basic);
        var vip = harness.Aggregator.Entitlements.Check("acme", "vip", "calls", InMarch);
        Assert.Equal(new EntitlementCheck(true, 3, 100, 97, April, true), vip);
        var unknown = harness.Aggregator.Entitlements.Check("acme", "new-customer", "calls", InMarch);
        Assert.Equal(new EntitlementCheck(true, 0, 5, 5, April, true), unknown);
    }

    [Fact]
    public async Task Check_NextPeriod_StartsFromZero()
    {
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "tokens", Aggregation.Sum);
        await harness.StartAsync();
        await harness.AppendAsync([new TestEvent("acme", "e1", "api_call", "c1", Day, ("tokens", "7.5"))]);

        Assert.Equal(7.5m, harness.Aggregator.Entitlements.Check("acme", "c1", "tokens", InMarch).Usage);
        var april = harness.Aggregator.Entitlements.Check("acme", "c1", "tokens", April.AddDays(1));
        Assert.Equal(0m, april.Usage);
        Assert.Null(april.Limit);
        Assert.True(april.HasAccess);
    }

    [Fact]
    public async Task Check_OtherTenantsMeterOrUnknownMeter_NotFound()
    {
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "calls", Aggregation.Count);
        await harness.StartAsync();

        Assert.False(harness.Aggregator.Entitlements.Check("globex", "c1", "calls", InMarch).MeterFound);
        Assert.False(harness.Aggregator.Entitlements.Check("acme", "c1", "nope", InMarch).MeterFound);
    }

    [Fact]
    public async Task Check_AfterCrashAndReplay_SameTotals()
    {
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "tokens", Aggregation.Sum);
        await harness.MeterAsync("acme", "users", Aggregation.UniqueCount, "user", groupBy: "region");
        await harness.StartAsync();
        var events = Enumerable.Range(0, 40).Select(i => new TestEvent("acme", $"e{i}", "api_call", "c" + (i % 2), Day.AddHours(i),
            ("tokens", "0.1"), ("user", "u" + (i % 5)), ("region", i % 3 == 0 ? "eu" : "us"))).ToList();
        await harness.AppendAsync(events.Take(20));
        await harness.Aggregator.CheckpointAsync();
        await harness.AppendAsync(events.Skip(15));

        await harness.CrashAndRestartAsync();
        await harness.Aggregator.WaitForCommittedAsync();

        Assert.Equal(2.0m, harness.Aggregator.Entitlements.Check("acme", "c0", "tokens", InMarch).Usage);
        // c0 has the even events: users u0, u2, u4, u1, u3 over the month, across both regions: 5 distinct.
        Assert.Equal(5m, harness.Aggregator.Entitlements.Check("acme", "c0", "users", InMarch).Usage);
    }

    [Fact]
    public async Task Check_EveryAggregation_UsageEqualsTheOracleBeforeAndAfterRestarts()
    {
        // The current-period total keeps only what its meter's aggregation needs; a restart reads it back from a
        // full state file, a file of changes and the log. Values of mixed scales, equal event times (LATEST's tie is
        // broken by the id's hash), February events (an earlier period) and resent events.
        await using var harness = new Harness(partitions: 2, o => o.CheckpointInterval = TimeSpan.FromHours(1));
        var meters = new List<MeterDefinition>();
        foreach (var aggregation in new[] { Aggregation.Sum, Aggregation.Min, Aggregation.Max, Aggregation.Avg, Aggregation.Latest, Aggregation.Count, Aggregation.TimeWeightedSum })
            meters.Add(await harness.MeterAsync("acme", aggregation.ToString().ToLowerInvariant(), aggregation));
        await harness.StartAsync();
        var random = new Random(23);
        string[] values = ["0.1", "2.50", "2.5", "-3", "1000000.000001", "7"];
        var events = Enumerable.Range(0, 600).Select(i => new TestEvent("acme", $"e{i}", "api_call", "c" + random.Next(6),
            Day.AddDays(random.Next(-12, 15)).AddMinutes(random.Next(3)),
            ("tokens", random.Next(3) == 0 ? values[random.Next(values.Length)] : (random.Next(-500, 5000) / 100m).ToString(CultureInfo.InvariantCulture)))).ToList();

        var totalsBefore = new Dictionary<(string, string), decimal>();
        void AssertTotals(bool first)
        {
            var march = new DateTimeOffset(2026, 3, 1, 0, 0, 0, TimeSpan.Zero);
            foreach (var meter in meters)
            {
                var query = new UsageQuery { Tenant = "acme", MeterKey = meter.Key, From = march, To = April, WindowSize = WindowSize.Month };
                var expected = Oracle.Usage(harness.Appended, meter, query);
                for (int c = 0; c < 6; c++)
                {
                    string customer = "c" + c;
                    decimal usage = harness.Aggregator.Entitlements.Check("acme", customer, meter.Key, InMarch).Usage;
                    if (meter.Aggregation != Aggregation.TimeWeightedSum)
                        Assert.Equal(expected.GetValueOrDefault(Oracle.RowKey(customer, [], march)), usage);
                    else if (first)
                        totalsBefore[(customer, meter.Key)] = usage;
                    else
                        Assert.Equal(totalsBefore[(customer, meter.Key)], usage);
                }
            }
        }

        await harness.AppendAsync(events.Take(300));
        await harness.Aggregator.CheckpointAsync(); // a full state file
        await harness.AppendAsync(events.Skip(250).Take(150));
        await harness.Aggregator.CheckpointAsync(); // a file of changes
        await harness.AppendAsync(events.Skip(400));
        AssertTotals(first: true);
        await harness.CrashAndRestartAsync(); // the files, then the log
        await harness.Aggregator.WaitForCommittedAsync();
        AssertTotals(first: false);
    }

    [Fact]
    public async Task Restart_CatalogWithoutTheMeterOfStoredTotals_FailsNamingTheMeter()
    {
        // A total keeps only what its meter's aggregation uses, so recovery needs the meter; a catalog that lost it
        // (not the one this state was written with) stops the start with an error that names the meter.
        await using var harness = new Harness(partitions: 1);
        await harness.MeterAsync("acme", "tokens", Aggregation.Sum);
        await harness.StartAsync();
        await harness.AppendAsync([new TestEvent("acme", "e1", "api_call", "c1", Day, ("tokens", "2"))]);
        File.Delete(harness.CatalogPath);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(harness.RestartAsync);
        Assert.Contains("meter 'tokens' of tenant 'acme'", error.Message, StringComparison.Ordinal);
        Assert.Contains("meter catalog does not hold", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Limits_Persisted_SurviveRestart()
    {
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "calls", Aggregation.Count);
        await harness.StartAsync();
        await harness.Aggregator.Entitlements.SetLimitAsync(new EntitlementLimit("acme", "calls", "c1", 10));
        await harness.Aggregator.Entitlements.SetLimitAsync(new EntitlementLimit("acme", "calls", null, 3));
        Assert.True(await harness.Aggregator.Entitlements.RemoveLimitAsync("acme", "calls", null));

        await harness.RestartAsync();

        Assert.Equal([new EntitlementLimit("acme", "calls", "c1", 10)], harness.Aggregator.Entitlements.ListLimits("acme"));
    }

    [Fact]
    public async Task ListReached_TenantDefault_EveryCustomerAtTheShareAndOwnLimitsOnlyAgainstThemselves()
    {
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "calls", Aggregation.Count);
        await harness.MeterAsync("acme", "tokens", Aggregation.Sum);
        await harness.StartAsync();
        var entitlements = harness.Aggregator.Entitlements;
        await entitlements.SetLimitAsync(new EntitlementLimit("acme", "calls", null, 10));
        await entitlements.SetLimitAsync(new EntitlementLimit("acme", "calls", "vip", 100)); // higher than the default
        await entitlements.SetLimitAsync(new EntitlementLimit("acme", "calls", "capped", 2)); // lower than the default
        await entitlements.SetLimitAsync(new EntitlementLimit("acme", "calls", "idle", 5)); // no usage at all
        await entitlements.SetLimitAsync(new EntitlementLimit("globex", "calls", null, 1)); // another tenant's default

        await harness.AppendAsync([
            .. Calls("at-80", 8), .. Calls("below", 7), .. Calls("over", 12), .. Calls("vip", 50), .. Calls("capped", 2),
            .. Enumerable.Range(0, 9).Select(i => new TestEvent("acme", $"old-{i}", "api_call", "last-month", Day.AddMonths(-1))),
            new TestEvent("globex", "g1", "api_call", "g-customer", Day),
        ]);

        var reached = entitlements.ListReached("acme", 80, InMarch);
        var march = new DateTimeOffset(2026, 3, 1, 0, 0, 0, TimeSpan.Zero);
        Assert.Equal(
            [new EntitlementUsage("at-80", "calls", 8, 10, march, April), new EntitlementUsage("capped", "calls", 2, 2, march, April),
             new EntitlementUsage("over", "calls", 12, 10, march, April)],
            reached.OrderBy(r => r.Customer, StringComparer.Ordinal));
        Assert.Equal(["capped", "over"], entitlements.ListReached("acme", 100, InMarch).Select(r => r.Customer).Order(StringComparer.Ordinal));
        // April: every total is of an earlier period, so no one has reached anything yet.
        Assert.Empty(entitlements.ListReached("acme", 80, April.AddDays(1)));
        Assert.Empty(entitlements.ListReached("globex", 80, InMarch)); // globex has no meter "calls"
        Assert.Throws<ArgumentOutOfRangeException>(() => entitlements.ListReached("acme", 101, InMarch));

        static IEnumerable<TestEvent> Calls(string customer, int count)
            => Enumerable.Range(0, count).Select(i => new TestEvent("acme", $"{customer}-{i}", "api_call", customer, Day, ("tokens", "1")));
    }

    [Fact]
    public async Task ListReached_AfterRestartAndAfterCrash_ListsRestoredCustomersOnce()
    {
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "calls", Aggregation.Count);
        await harness.MeterAsync("acme", "users", Aggregation.UniqueCount, "user", groupBy: "region");
        await harness.StartAsync();
        await harness.Aggregator.Entitlements.SetLimitAsync(new EntitlementLimit("acme", "calls", null, 10));
        await harness.Aggregator.Entitlements.SetLimitAsync(new EntitlementLimit("acme", "users", null, 4));
        int next = 0;
        IEnumerable<TestEvent> Events(string customer, int count) => Enumerable.Range(0, count).Select(_ => next++).Select(i =>
            new TestEvent("acme", $"e{i}", "api_call", customer, Day, ("user", "u" + (i % 5)), ("region", i % 2 == 0 ? "eu" : "us")));

        await harness.AppendAsync([.. Events("a", 9), .. Events("b", 5)]);
        await harness.RestartAsync(); // the totals come back from the checkpoint's state file
        Assert.Equal(["a:calls:9", "a:users:5", "b:users:5"], Listed());

        await harness.AppendAsync(Events("b", 4)); // b's total is a restored one
        await harness.Aggregator.CheckpointAsync();
        await harness.AppendAsync(Events("c", 12));
        await harness.CrashAndRestartAsync(); // b from the checkpoint, c replayed from the log
        await harness.Aggregator.WaitForCommittedAsync();
        Assert.Equal(["a:calls:9", "a:users:5", "b:calls:9", "b:users:5", "c:calls:12", "c:users:5"], Listed());

        List<string> Listed() => [.. harness.Aggregator.Entitlements.ListReached("acme", 80, InMarch).Select(r => $"{r.Customer}:{r.MeterKey}:{r.Usage}")
            .Order(StringComparer.Ordinal)];
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task ListReached_RandomUsageAndLimits_MatchesOracle(int seed)
    {
        var random = new Random(seed);
        await using var harness = new Harness(partitions: 3);
        await harness.MeterAsync("acme", "calls", Aggregation.Count);
        await harness.MeterAsync("acme", "tokens", Aggregation.Sum);
        await harness.StartAsync();
        var customers = Enumerable.Range(0, 40).Select(i => $"c{i}").ToList();
        // Limits: a default per meter (or none), and own limits for some customers, some of them 0.
        var limits = new Dictionary<(string Meter, string? Customer), decimal>();
        foreach (string meter in new[] { "calls", "tokens" })
        {
            if (random.Next(4) > 0)
                limits[(meter, null)] = random.Next(1, 40);
            foreach (string customer in customers.Where(_ => random.Next(4) == 0))
                limits[(meter, customer)] = random.Next(0, 60);
        }
        foreach (var ((meter, customer), limit) in limits)
            await harness.Aggregator.Entitlements.SetLimitAsync(new EntitlementLimit("acme", meter, customer, limit));

        var events = new List<TestEvent>();
        for (int round = 0; round < 3; round++)
        {
            foreach (string customer in customers)
            {
                for (int n = random.Next(0, 20); n > 0; n--)
                {
                    // One in ten last month: counted in its windows, not in March's totals.
                    var time = random.Next(10) == 0 ? Day.AddMonths(-1) : Day.AddMinutes(random.Next(10_000));
                    string tokens = (random.Next(1, 4000) / 1000m).ToString(System.Globalization.CultureInfo.InvariantCulture);
                    events.Add(new TestEvent("acme", $"e{events.Count}", "api_call", customer, time, ("tokens", tokens)));
                }
            }
            await harness.AppendAsync(events.Skip(harness.Appended.Count));
            if (round == 1)
                await harness.RestartAsync();

            foreach (int percent in new[] { 80, 100 })
            {
                var expected = new List<string>();
                foreach (string meter in new[] { "calls", "tokens" })
                {
                    foreach (string customer in customers)
                    {
                        var march = events.Where(e => e.Customer == customer && e.Time.Month == 3).ToList();
                        decimal usage = meter == "calls" ? march.Count : march.Sum(e => decimal.Parse(e.Get("tokens")!, System.Globalization.CultureInfo.InvariantCulture));
                        if (!limits.TryGetValue((meter, customer), out decimal limit) && !limits.TryGetValue((meter, null), out limit))
                            continue;
                        if (limit > 0 && usage * 100 >= limit * percent)
                            expected.Add($"{customer}:{meter}:{usage}:{limit}");
                    }
                }
                // Asked of the running aggregator: a restart replaces it.
                var actual = harness.Aggregator.Entitlements.ListReached("acme", percent, InMarch).Select(r => $"{r.Customer}:{r.MeterKey}:{r.Usage}:{r.Limit}");
                Assert.Equal(expected.Order(StringComparer.Ordinal), actual.Order(StringComparer.Ordinal));
            }
        }
    }
}
