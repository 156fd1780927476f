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
}
