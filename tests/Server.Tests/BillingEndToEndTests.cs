using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using AlphaMesh.Server.Tests.Support;
using AlphaMesh.Tests.Shared;
using AlphaMesh.Usage.V1;
using Npgsql;
using Xunit.Abstractions;

namespace AlphaMesh.Server.Tests;

/// <summary>
/// One database and one real server for the class: the billing API over real PostgreSQL, usage streamed through the
/// real ingest and aggregated by the real aggregator. Usage goes into the previous calendar month, which is wholly in
/// the past whatever the date the tests run on; the backdating limit is raised to 90 days to allow it, and the
/// background billing run is off so that each test bills with an explicit "as of" time.
/// </summary>
public sealed class BillingFixture : DatabaseServerFixture
{
    internal UsageApi Api { get; private set; } = null!;

    /// <summary>The previous calendar month, UTC: [Start, End).</summary>
    public DateOnly MonthStart { get; } = new DateOnly(DateTime.UtcNow.Year, DateTime.UtcNow.Month, 1).AddMonths(-1);
    public DateOnly MonthEnd => MonthStart.AddMonths(1);
    public int MonthDays => MonthEnd.DayNumber - MonthStart.DayNumber;

    private protected override void Configure(ServerSettings settings)
    {
        settings.Extra["AlphaMesh:Ingest:BackdatingLimit"] = "90.00:00:00";
        settings.Extra["AlphaMesh:Aggregator:DedupeRetention"] = "90.00:00:00";
        settings.Extra["AlphaMesh:Billing:LateUsageWindow"] = "90.00:00:00";
        settings.Extra["AlphaMesh:Billing:BillingRunInterval"] = "00:00:00";
        // Small chunks, so that a few hundred subscriptions make several; four at a time per run, so that concurrent
        // runs stay well within the shared test cluster's connections.
        settings.Extra["AlphaMesh:Billing:BillingRunChunkSize"] = "100";
        settings.Extra["AlphaMesh:Billing:BillingRunParallelism"] = "4";
        settings.Extra["AlphaMesh:Billing:EntitlementCheckInterval"] = "00:00:00.200";
    }

    private protected override async Task StartedAsync()
    {
        Api = new UsageApi(Server);
        await Api.CreateMeterAsync(new { key = "api_calls", eventType = "api_call", aggregation = "COUNT" });
    }

    public override async Task DisposeAsync()
    {
        Api.Dispose();
        await base.DisposeAsync();
    }
}

public sealed class BillingEndToEndTests(BillingFixture fixture, ITestOutputHelper output) : IClassFixture<BillingFixture>, IDisposable
{
    private const string AdminKey = ServerSettings.IngestKey;
    private readonly HttpClient _http = new() { BaseAddress = fixture.Server.Settings.RestAddress, Timeout = TimeSpan.FromSeconds(120) };
    private readonly string _run = Guid.NewGuid().ToString("N")[..8];

    public void Dispose() => _http.Dispose();

    private static readonly decimal ProFee = 49.00m;

    /// <summary>"Free: 1,000 calls included", then 0.002 a call.</summary>
    private object FreePlan(string code) => new
    {
        code,
        name = "Free",
        version = new
        {
            currency = "USD",
            interval = "monthly",
            charges = new[] { new { code = "calls", meter = "api_calls", freeUnits = "1000", model = new { type = "standard", unitPrice = "0.002" } } },
        },
    };

    /// <summary>"Pro: 100,000 calls included, then graduated per-call prices", 49.00 a month in advance.</summary>
    private object ProPlan(string code) => new
    {
        code,
        name = "Pro",
        version = new
        {
            currency = "USD",
            interval = "monthly",
            fixedFees = new[] { new { code = "platform", amount = "49.00", timing = "in_advance" } },
            charges = new[]
            {
                new
                {
                    code = "calls", meter = "api_calls", freeUnits = "100000",
                    model = new { type = "graduated", tiers = new object[] { new { upTo = "200000", unitPrice = "0.0005" }, new { upTo = "1000000", unitPrice = "0.0004" }, new { unitPrice = "0.0003" } } },
                },
            },
        },
    };

    /// <summary>Pro's usage price by hand: tiers over the calls beyond the 100,000 included.</summary>
    private static decimal ProUsage(long calls)
    {
        decimal billable = Math.Max(calls - 100_000, 0);
        decimal first = Math.Min(billable, 200_000);
        decimal second = Math.Clamp(billable - 200_000, 0, 800_000);
        decimal third = Math.Max(billable - 1_000_000, 0);
        return Math.Round(first * 0.0005m + second * 0.0004m + third * 0.0003m, 2, MidpointRounding.ToEven);
    }

    private static decimal Prorated(decimal fee, int days, int periodDays) => Math.Round(fee * days / periodDays, 2, MidpointRounding.ToEven);

    [Fact]
    public async Task BillingRun_LogiTrackMonth_InvoicesMatchAmountsWorkedOutByHand()
    {
        await PostOkAsync("/v1/plans", FreePlan($"free-{_run}"));
        await PostOkAsync("/v1/plans", ProPlan($"pro-{_run}"));
        var random = new Random(7);
        // Hand-picked counts at the boundaries, and random ones; each customer's expected invoices are worked out below.
        var customers = new List<(string Id, string Plan, long Calls, int StartDay)>
        {
            ($"free-light-{_run}", "free", 400, 0),
            ($"free-over-{_run}", "free", 1_500, 0),
            ($"pro-at-included-{_run}", "pro", 100_000, 0),
            ($"pro-over-{_run}", "pro", 130_001, 0),
            ($"pro-mid-month-{_run}", "pro", 10, fixture.MonthDays / 2),
        };
        for (int i = 0; i < 3; i++)
            customers.Add(($"random-{i}-{_run}", random.Next(2) == 0 ? "free" : "pro", random.Next(0, 120_000), random.Next(0, fixture.MonthDays)));

        var events = new List<UsageEvent>();
        foreach (var (id, plan, calls, startDay) in customers)
        {
            await PostOkAsync("/v1/customers", new { id, name = "LogiTrack " + id, email = "billing@logitrack.example", currency = "USD" });
            await PostOkAsync("/v1/subscriptions", new { customer = id, plan = $"{plan}-{_run}", startDate = Day(fixture.MonthStart.AddDays(startDay)) });
            var from = Midnight(fixture.MonthStart.AddDays(startDay));
            long span = (long)(Midnight(fixture.MonthEnd) - from).TotalSeconds;
            for (long n = 0; n < calls; n++)
                events.Add(Requests.Event($"{id}-{n}", customer: id, type: "api_call", time: from.AddSeconds(random.NextInt64(span))));
        }
        await fixture.Api.IngestAsync(events, batchSize: 2000);

        var run = await PostOkAsync("/v1/billing-runs", new { asOf = Day(fixture.MonthEnd) + "T00:00:00Z" });
        Assert.Empty(run["failures"]!.AsArray());

        foreach (var (id, plan, calls, startDay) in customers)
        {
            var invoices = await InvoicesAsync(id);
            var periodEnd = invoices.Single(i => i["reason"]!.GetValue<string>() == "period_end");
            var usageLine = periodEnd["lines"]!.AsArray().Single(l => l!["kind"]!.GetValue<string>() == "usage")!;
            Assert.Equal(calls, decimal.Parse(usageLine["quantity"]!.GetValue<string>(), CultureInfo.InvariantCulture));
            Assert.Equal("finalized", periodEnd["status"]!.GetValue<string>());
            if (plan == "free")
            {
                Assert.Single(invoices);
                Assert.Equal(Math.Round(Math.Max(calls - 1000, 0) * 0.002m, 2), Total(periodEnd));
            }
            else
            {
                var start = invoices.Single(i => i["reason"]!.GetValue<string>() == "subscription_start");
                Assert.Equal(Prorated(ProFee, fixture.MonthDays - startDay, fixture.MonthDays), Total(start));
                // The ended month's usage plus the next month's fee in advance.
                Assert.Equal(ProUsage(calls) + ProFee, Total(periodEnd));
                var tiers = usageLine["tiers"]!.AsArray();
                Assert.Equal(Math.Max(calls - 100_000, 0), tiers.Sum(t => decimal.Parse(t!["units"]!.GetValue<string>(), CultureInfo.InvariantCulture)));
            }
            foreach (var invoice in invoices)
                Assert.Equal(Total(invoice), invoice["lines"]!.AsArray().Sum(l => Amount(l!)));
        }

        // Final invoices are numbered 1..n per tenant, without gaps (across every test of the tenant so far).
        var numbers = (await ListAsync("/v1/invoices?limit=100")).Where(i => i["number"] is not null)
            .Select(i => int.Parse(i["number"]!.GetValue<string>()[4..], CultureInfo.InvariantCulture)).Order().ToList();
        Assert.Equal(Enumerable.Range(1, numbers.Count), numbers);
    }

    [Fact]
    public async Task ChangePlan_UpgradeMidMonth_ProratesTheFeeAndBillsEachDayUnderItsPlan()
    {
        await PostOkAsync("/v1/plans", FreePlan($"free-{_run}"));
        await PostOkAsync("/v1/plans", ProPlan($"pro-{_run}"));
        string customer = $"upgrader-{_run}";
        await PostOkAsync("/v1/customers", new { id = customer, name = "Upgrader", currency = "USD" });
        var subscription = await PostOkAsync("/v1/subscriptions", new { customer, plan = $"free-{_run}", startDate = Day(fixture.MonthStart) });
        string id = subscription["id"]!.GetValue<string>();
        int changeDay = 10;
        var change = fixture.MonthStart.AddDays(changeDay);
        await PostOkAsync($"/v1/subscriptions/{id}/change-plan", new { plan = $"pro-{_run}", effectiveDate = Day(change) });

        var events = new List<UsageEvent>();
        for (int i = 0; i < 1_800; i++)
            events.Add(Requests.Event($"{customer}-before-{i}", customer: customer, type: "api_call", time: Midnight(fixture.MonthStart).AddMinutes(i)));
        for (int i = 0; i < 50; i++)
            events.Add(Requests.Event($"{customer}-after-{i}", customer: customer, type: "api_call", time: Midnight(change).AddMinutes(i)));
        await fixture.Api.IngestAsync(events, batchSize: 1000);

        await PostOkAsync("/v1/billing-runs", new { asOf = Day(fixture.MonthEnd) + "T00:00:00Z" });
        var invoices = await InvoicesAsync(customer);
        // What the month would have cost on Pro throughout: the fee and 1,850 calls, all included.
        var (simulated, simulation) = await GetAsync($"/v1/customers/{customer}/simulate?plan=pro-{_run}&periodStart={Day(fixture.MonthStart)}");
        Assert.Equal(HttpStatusCode.OK, simulated);
        Assert.Equal(ProFee + ProUsage(1_850), Total(simulation!));
        Assert.Equal(invoices.Count, (await InvoicesAsync(customer)).Count);
        var upgrade = invoices.Single(i => i["reason"]!.GetValue<string>() == "plan_change");
        Assert.Equal(Prorated(ProFee, fixture.MonthDays - changeDay, fixture.MonthDays), Total(upgrade));
        var periodEnd = invoices.Single(i => i["reason"]!.GetValue<string>() == "period_end");
        var usage = periodEnd["lines"]!.AsArray().Where(l => l!["kind"]!.GetValue<string>() == "usage").ToList();
        Assert.Equal(2, usage.Count);
        // Free for the first ten days: 800 calls over the 1,000 included at 0.002; Pro after: 50 calls, all included.
        Assert.Equal(1.60m, Amount(usage.Single(l => l!["plan"]!.GetValue<string>() == $"free-{_run}")!));
        Assert.Equal(0m, Amount(usage.Single(l => l!["plan"]!.GetValue<string>() == $"pro-{_run}")!));
        Assert.Equal(1.60m + ProFee, Total(periodEnd));
    }

    [Fact]
    public async Task BillingRun_RunTwiceAndFourAtOnce_MakesOneInvoicePerBillingDate()
    {
        await PostOkAsync("/v1/plans", ProPlan($"pro-{_run}"));
        string customer = $"twice-{_run}";
        await PostOkAsync("/v1/customers", new { id = customer, name = "Twice", currency = "USD" });
        var subscription = await PostOkAsync("/v1/subscriptions", new { customer, plan = $"pro-{_run}", startDate = Day(fixture.MonthStart) });
        var body = new { asOf = Day(fixture.MonthEnd) + "T00:00:00Z", subscription = subscription["id"]!.GetValue<string>() };

        var concurrent = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => PostOkAsync("/v1/billing-runs", body)));
        var again = await PostOkAsync("/v1/billing-runs", body);

        Assert.Equal(2, concurrent.Sum(r => r["created"]!.GetValue<int>()));
        Assert.Equal(0, again["created"]!.GetValue<int>());
        var invoices = await InvoicesAsync(customer);
        Assert.Equal(["period_end", "subscription_start"], invoices.Select(i => i["reason"]!.GetValue<string>()).Order());
    }

    /// <summary>
    /// Several chunks of subscriptions (100 each, see the fixture), a grace period of 2 days and a run one day after the month's end:
    /// each chunk holds start invoices that are past their grace period (inserted final and numbered) and period-end
    /// invoices that are not (drafts). Four full runs and single-subscription runs at once, which overlap the full
    /// runs' chunks in part; then two runs at once after the grace period. The oracle is worked out from the start days
    /// alone: which invoice each subscription has, which are final after each step, and that the numbers are exactly
    /// 1..n. Random counts and start days; the seed is printed (ALPHAMESH_BILLING_SEED=&lt;seed&gt; repeats them).
    /// </summary>
    [Fact]
    public async Task BillingRun_ChunksGracePeriodAndConcurrentRuns_MakeEachInvoiceOnceNumberedWithoutGaps()
    {
        int seed = Environment.GetEnvironmentVariable("ALPHAMESH_BILLING_SEED") is { Length: > 0 } s
            ? int.Parse(s, CultureInfo.InvariantCulture) : Random.Shared.Next();
        output.WriteLine($"seed: {seed}");
        var random = new Random(seed);
        const int Grace = 2;
        string tenant = $"chunks-{_run}";
        await PostOkAsync("/v1/tenants", new { id = tenant, name = "Chunks" });
        string key = (await PostOkAsync($"/v1/tenants/{tenant}/api-keys", new { name = "all", scopes = new[] { "admin", "read" } }))["key"]!.GetValue<string>();
        await PostOkAsync("/v1/billing-settings", new { gracePeriodDays = Grace }, key);
        await PostOkAsync("/v1/plans", new
        {
            code = "flat",
            name = "Flat",
            version = new { currency = "USD", interval = "monthly", fixedFees = new[] { new { code = "base", amount = "10.00", timing = "in_advance" } } },
        }, key);
        // Start days up to two days before the month's end, so that every start invoice is past its grace period one day
        // after the month's end; calendar periods, so that every period-end invoice is dated the month's end.
        int count = random.Next(520, 800);
        var starts = Enumerable.Range(0, count).Select(_ => fixture.MonthStart.AddDays(random.Next(fixture.MonthDays - Grace))).ToArray();
        var subscriptions = new string[count];
        await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, _) =>
        {
            await PostOkAsync("/v1/customers", new { id = $"c{i}", name = $"C{i}", currency = "USD" }, key);
            subscriptions[i] = (await PostOkAsync("/v1/subscriptions",
                new { customer = $"c{i}", plan = "flat", startDate = Day(starts[i]), billingAnchor = Day(fixture.MonthStart) }, key))["id"]!.GetValue<string>();
        });

        var afterMonth = new { asOf = Day(fixture.MonthEnd.AddDays(1)) + "T00:00:00Z" };
        var singles = subscriptions.OrderBy(_ => random.Next()).Take(8)
            .Select(id => (object)new { asOf = Day(fixture.MonthEnd.AddDays(1)) + "T00:00:00Z", subscription = id });
        var runs = await Task.WhenAll(Enumerable.Repeat((object)afterMonth, 4).Concat(singles).Select(body => PostOkAsync("/v1/billing-runs", body, key)));

        Assert.Equal(2 * count, runs.Sum(r => r["created"]!.GetValue<int>()));
        Assert.Equal(count, runs.Sum(r => r["finalized"]!.GetValue<int>()));
        var invoices = await StoredInvoicesAsync(tenant);
        Assert.Equal(2 * count, invoices.Count);
        for (int i = 0; i < count; i++)
        {
            var mine = invoices.Where(v => v.Subscription == subscriptions[i]).OrderBy(v => v.BillingDate).ToList();
            Assert.Equal([(starts[i], "finalized"), (fixture.MonthEnd, "draft")], mine.Select(v => (v.BillingDate, v.Status)));
        }
        Assert.Equal(Enumerable.Range(1, count).Select(n => (long)n), invoices.Where(v => v.Number is not null).Select(v => v.Number!.Value).Order());

        var afterGrace = new { asOf = Day(fixture.MonthEnd.AddDays(Grace)) + "T00:00:00Z" };
        var finals = await Task.WhenAll(Enumerable.Repeat(afterGrace, 2).Select(body => PostOkAsync("/v1/billing-runs", body, key)));

        Assert.Equal(0, finals.Sum(r => r["created"]!.GetValue<int>()));
        Assert.Equal(count, finals.Sum(r => r["finalized"]!.GetValue<int>()));
        invoices = await StoredInvoicesAsync(tenant);
        Assert.Equal(2 * count, invoices.Count);
        Assert.All(invoices, v => Assert.Equal("finalized", v.Status));
        Assert.Equal(Enumerable.Range(1, 2 * count).Select(n => (long)n), invoices.Select(v => v.Number!.Value).Order());
    }

    private sealed record StoredInvoice(string Subscription, DateOnly BillingDate, string Status, long? Number);

    /// <summary>The tenant's invoices as PostgreSQL holds them.</summary>
    private async Task<List<StoredInvoice>> StoredInvoicesAsync(string tenant)
    {
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT subscription_id, billing_date, status, number FROM invoices WHERE tenant_id = $1", connection)
        {
            Parameters = { new() { Value = tenant } },
        };
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<StoredInvoice>();
        while (await reader.ReadAsync())
            rows.Add(new StoredInvoice(reader.GetString(0), reader.GetFieldValue<DateOnly>(1), reader.GetString(2), reader.IsDBNull(3) ? null : reader.GetInt64(3)));
        return rows;
    }

    [Fact]
    public async Task LateEvents_AfterFinalization_BecomeAnAdjustmentLineOnTheNextInvoice()
    {
        string plan = $"metered-{_run}";
        await PostOkAsync("/v1/plans", new
        {
            code = plan,
            name = "Metered",
            version = new { currency = "USD", interval = "monthly", charges = new[] { new { code = "calls", meter = "api_calls", model = new { type = "standard", unitPrice = "0.01" } } } },
        });
        string customer = $"late-{_run}";
        await PostOkAsync("/v1/customers", new { id = customer, name = "Late", currency = "USD" });
        await PostOkAsync("/v1/subscriptions", new { customer, plan, startDate = Day(fixture.MonthStart) });
        await fixture.Api.IngestAsync(Calls(customer, "on-time", 100, Midnight(fixture.MonthStart).AddDays(3)), batchSize: 100);
        await PostOkAsync("/v1/billing-runs", new { asOf = Day(fixture.MonthEnd) + "T00:00:00Z" });
        var first = Assert.Single(await InvoicesAsync(customer));
        Assert.Equal("finalized", first["status"]!.GetValue<string>());
        Assert.Equal(1.00m, Total(first));

        // 30 calls of the invoiced month arrive late, plus one duplicate of an on-time call (which must change nothing).
        var late = Calls(customer, "late", 30, Midnight(fixture.MonthEnd).AddHours(-2));
        late.Add(Requests.Event($"{customer}-on-time-0", customer: customer, type: "api_call", time: Midnight(fixture.MonthStart).AddDays(3)));
        await fixture.Api.IngestAsync(late, batchSize: 100);
        var nextEnd = fixture.MonthEnd.AddMonths(1);
        await PostOkAsync("/v1/billing-runs", new { asOf = Day(nextEnd) + "T00:00:00Z" });
        await PostOkAsync("/v1/billing-runs", new { asOf = Day(nextEnd) + "T00:00:00Z" });

        var invoices = await InvoicesAsync(customer);
        Assert.Equal(2, invoices.Count);
        var unchanged = invoices.Single(i => i["id"]!.GetValue<string>() == first["id"]!.GetValue<string>());
        Assert.Equal(1.00m, Total(unchanged));
        var next = invoices.Single(i => i["id"]!.GetValue<string>() != first["id"]!.GetValue<string>());
        var adjustment = next["lines"]!.AsArray().Single(l => l!["kind"]!.GetValue<string>() == "late_usage_adjustment")!;
        Assert.Equal(first["id"]!.GetValue<string>(), adjustment["adjustsInvoice"]!.GetValue<string>());
        Assert.Equal(30m, decimal.Parse(adjustment["quantity"]!.GetValue<string>(), CultureInfo.InvariantCulture));
        Assert.Equal(0.30m, Amount(adjustment));
    }

    [Fact]
    public async Task Draft_InGracePeriod_TakesLateUsageThenIsFinalizedAndNumbered()
    {
        // Grace period and rounding are per tenant: a tenant of its own, with its own meter and keys.
        string tenant = $"grace-{_run}";
        await PostOkAsync("/v1/tenants", new { id = tenant, name = "Grace" });
        string key = (await PostOkAsync($"/v1/tenants/{tenant}/api-keys", new { name = "all", scopes = new[] { "admin", "read", "ingest" } }))["key"]!.GetValue<string>();
        await PostOkAsync("/v1/meters", new { key = "api_calls", eventType = "api_call", aggregation = "COUNT" }, key);
        await PostOkAsync("/v1/billing-settings", new { gracePeriodDays = 3, roundingMode = "half_up" }, key);
        await PostOkAsync("/v1/plans", new
        {
            code = "metered",
            name = "Metered",
            version = new { currency = "USD", interval = "monthly", charges = new[] { new { code = "calls", meter = "api_calls", model = new { type = "standard", unitPrice = "0.005" } } } },
        }, key);
        await PostOkAsync("/v1/customers", new { id = "c", name = "C", currency = "USD" }, key);
        await PostOkAsync("/v1/subscriptions", new { customer = "c", plan = "metered", startDate = Day(fixture.MonthStart) }, key);
        await fixture.Api.IngestAsync(Calls("c", "a", 5, Midnight(fixture.MonthStart).AddDays(1)), batchSize: 100, key);

        await PostOkAsync("/v1/billing-runs", new { asOf = Day(fixture.MonthEnd) + "T00:00:00Z" }, key);
        var draft = Assert.Single(await InvoicesAsync("c", key));
        Assert.Equal("draft", draft["status"]!.GetValue<string>());
        Assert.Null(draft["number"]);
        Assert.Equal(0.03m, Total(draft)); // 5 x 0.005 = 0.025, half-up

        await fixture.Api.IngestAsync(Calls("c", "b", 100, Midnight(fixture.MonthEnd).AddHours(-1)), batchSize: 100, key);
        await PostOkAsync("/v1/billing-runs", new { asOf = Day(fixture.MonthEnd.AddDays(1)) + "T00:00:00Z" }, key);
        var recalculated = Assert.Single(await InvoicesAsync("c", key));
        Assert.Equal("draft", recalculated["status"]!.GetValue<string>());
        Assert.Equal(0.53m, Total(recalculated)); // 105 x 0.005 = 0.525, half-up

        await PostOkAsync("/v1/billing-runs", new { asOf = Day(fixture.MonthEnd.AddDays(3)) + "T00:00:00Z" }, key);
        await fixture.Api.IngestAsync(Calls("c", "c", 10, Midnight(fixture.MonthEnd).AddHours(-1)), batchSize: 100, key);
        await PostOkAsync("/v1/billing-runs", new { asOf = Day(fixture.MonthEnd.AddDays(4)) + "T00:00:00Z" }, key);
        var final = Assert.Single(await InvoicesAsync("c", key));
        Assert.Equal("finalized", final["status"]!.GetValue<string>());
        Assert.Equal("INV-000001", final["number"]!.GetValue<string>());
        Assert.Equal(0.53m, Total(final));
    }

    /// <summary>
    /// "2.9 % + 0.30 per payment, the first 10 payments free of the fee": the aggregator's event count of the SUM meter
    /// reaches the percentage model. Random payment counts and amounts (seed printed); the oracle works the invoice
    /// out from the events the test sent: 0.029 * sum + 0.30 * max(n - 10, 0), rounded half-even to cents.
    /// </summary>
    [Fact]
    public async Task BillingRun_PercentageWithPerEventFee_ChargesTheEventsOfThePeriod()
    {
        int seed = Random.Shared.Next();
        output.WriteLine($"seed: {seed}");
        var random = new Random(seed);
        string meter = $"payments-{_run}", type = $"payment-{_run}";
        await fixture.Api.CreateMeterAsync(new { key = meter, eventType = type, aggregation = "SUM", valueProperty = "amount" });
        await PostOkAsync("/v1/plans", new
        {
            code = meter,
            name = "Payments",
            version = new
            {
                currency = "USD",
                interval = "monthly",
                charges = new[] { new { code = "processing", meter, model = new { type = "percentage", rate = "0.029", freeEvents = 10, fixedFeePerEvent = "0.30" } } },
            },
        });
        var expected = new Dictionary<string, decimal>();
        var events = new List<UsageEvent>();
        foreach (string customer in new[] { $"few-{_run}", $"many-{_run}" })
        {
            await PostOkAsync("/v1/customers", new { id = customer, name = customer, currency = "USD" });
            await PostOkAsync("/v1/subscriptions", new { customer, plan = meter, startDate = Day(fixture.MonthStart) });
            int count = customer.StartsWith("few", StringComparison.Ordinal) ? random.Next(1, 11) : random.Next(11, 300);
            decimal sum = 0m;
            for (int i = 0; i < count; i++)
            {
                decimal amount = random.Next(1, 1_000_000) / 100m;
                sum += amount;
                var time = Midnight(fixture.MonthStart).AddMinutes(random.Next(fixture.MonthDays * 24 * 60));
                events.Add(Requests.Event($"{customer}-p{i}", customer: customer, type: type, time: time,
                    data: ("amount", amount.ToString(CultureInfo.InvariantCulture))));
            }
            expected[customer] = decimal.Round(0.029m * sum + 0.30m * Math.Max(count - 10, 0), 2, MidpointRounding.ToEven);
        }
        // A payment after the period: billed next month, not in this one.
        events.Add(Requests.Event($"many-{_run}-next", customer: $"many-{_run}", type: type, time: Midnight(fixture.MonthEnd).AddHours(1), data: ("amount", "100")));
        await fixture.Api.IngestAsync(events, batchSize: 100);

        await PostOkAsync("/v1/billing-runs", new { asOf = Day(fixture.MonthEnd) + "T00:00:00Z" });

        foreach (var (customer, total) in expected)
        {
            var invoice = Assert.Single(await InvoicesAsync(customer));
            Assert.Equal(total, Total(invoice));
        }
    }

    [Fact]
    public async Task CreatePlan_PerEventFeeOnAUniqueCountMeter_Returns400NamingTheModel()
    {
        string meter = $"visitors-{_run}";
        await fixture.Api.CreateMeterAsync(new { key = meter, eventType = $"visit-{_run}", aggregation = "UNIQUE_COUNT", valueProperty = "visitor" });

        var (status, problem) = await SendAsync(HttpMethod.Post, "/v1/plans", new
        {
            code = meter,
            name = "Visitors",
            version = new { currency = "USD", interval = "monthly", charges = new[] { new { code = "v", meter, model = new { type = "percentage", rate = "0.01", fixedFeePerEvent = "0.10" } } } },
        });

        AssertProblem(HttpStatusCode.BadRequest, "version.charges[0].model", status, problem);
        Assert.Contains("UNIQUE_COUNT", problem!["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, (await GetAsync($"/v1/plans/{meter}")).Status);
    }

    [Fact]
    public async Task BillingRun_SubscriptionWhoseUsageCannotBeTotalled_IsReportedAndTheOthersAreBilled()
    {
        // UNIQUE_COUNT over an anniversary month is not a sum of smaller windows: billing refuses it rather than guess.
        string meter = $"users-{_run}";
        await fixture.Api.CreateMeterAsync(new { key = meter, eventType = "login", aggregation = "UNIQUE_COUNT", valueProperty = "user" });
        await PostOkAsync("/v1/plans", new
        {
            code = $"seats-{_run}",
            name = "Seats",
            version = new { currency = "USD", interval = "monthly", alignment = "anniversary", charges = new[] { new { code = "seats", meter, model = new { type = "standard", unitPrice = "3" } } } },
        });
        await PostOkAsync("/v1/plans", new
        {
            code = $"metered-{_run}",
            name = "Metered",
            version = new { currency = "USD", interval = "monthly", alignment = "anniversary", charges = new[] { new { code = "calls", meter = "api_calls", model = new { type = "standard", unitPrice = "0.01" } } } },
        });
        var start = fixture.MonthStart.AddDays(5);
        string seats = $"seats-{_run}", calls = $"calls-{_run}";
        await PostOkAsync("/v1/customers", new { id = seats, name = "Seats", currency = "USD" });
        await PostOkAsync("/v1/customers", new { id = calls, name = "Calls", currency = "USD" });
        string refused = (await PostOkAsync("/v1/subscriptions", new { customer = seats, plan = $"seats-{_run}", startDate = Day(start) }))["id"]!.GetValue<string>();
        await PostOkAsync("/v1/subscriptions", new { customer = calls, plan = $"metered-{_run}", startDate = Day(start) });
        await fixture.Api.IngestAsync(Calls(calls, "x", 7, Midnight(start).AddHours(1)), batchSize: 100);

        var run = await PostOkAsync("/v1/billing-runs", new { asOf = Day(start.AddMonths(1)) + "T00:00:00Z" });

        var failure = Assert.Single(run["failures"]!.AsArray(), f => f!["subscription"]!.GetValue<string>() == refused)!;
        Assert.Contains("calendar months", failure["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Empty(await InvoicesAsync(seats));
        Assert.Equal(0.07m, Total(Assert.Single(await InvoicesAsync(calls))));
    }

    [Fact]
    public async Task Subscription_PlanWithEntitlement_LimitsTheCustomersEntitlementCheck()
    {
        string plan = $"capped-{_run}";
        await PostOkAsync("/v1/plans", new
        {
            code = plan,
            name = "Capped",
            version = new
            {
                currency = "USD",
                interval = "monthly",
                charges = new[] { new { code = "calls", meter = "api_calls", model = new { type = "standard", unitPrice = "0.01" } } },
                entitlements = new[] { new { meter = "api_calls", limit = "100" } },
            },
        });
        string customer = $"capped-{_run}";
        await PostOkAsync("/v1/customers", new { id = customer, name = "Capped", currency = "USD" });
        await PostOkAsync("/v1/subscriptions", new { customer, plan, startDate = Day(fixture.MonthStart) });
        var (_, before) = await GetAsync($"/v1/customers/{customer}/entitlements/api_calls");
        Assert.Equal("100", before!["limit"]!.GetValue<string>());
        Assert.True(before["hasAccess"]!.GetValue<bool>());

        // The entitlement period is the current calendar month: calls from a minute ago count.
        var now = DateTimeOffset.UtcNow;
        var monthStart = new DateTimeOffset(now.Year, now.Month, 1, 0, 0, 0, TimeSpan.Zero);
        await fixture.Api.IngestAsync(Calls(customer, "now", 100, now.AddMinutes(-2) < monthStart ? monthStart : now.AddMinutes(-2)), batchSize: 100);

        var (_, after) = await GetAsync($"/v1/customers/{customer}/entitlements/api_calls");
        Assert.False(after!["hasAccess"]!.GetValue<bool>());
        Assert.Equal("0", after["remaining"]!.GetValue<string>());
    }

    [Fact]
    public async Task CurrentUsage_RunningPeriod_ShowsUsageSoFarAndItsAmount()
    {
        string plan = $"metered-{_run}";
        await PostOkAsync("/v1/plans", new
        {
            code = plan,
            name = "Metered",
            version = new { currency = "USD", interval = "monthly", charges = new[] { new { code = "calls", meter = "api_calls", model = new { type = "standard", unitPrice = "0.015" } } } },
        });
        string customer = $"current-{_run}";
        await PostOkAsync("/v1/customers", new { id = customer, name = "Current", currency = "USD" });
        await PostOkAsync("/v1/subscriptions", new { customer, plan, startDate = Day(fixture.MonthStart) });
        var now = DateTimeOffset.UtcNow;
        var monthStart = new DateTimeOffset(now.Year, now.Month, 1, 0, 0, 0, TimeSpan.Zero);
        await fixture.Api.IngestAsync(Calls(customer, "now", 7, now.AddMinutes(-2) < monthStart ? monthStart : now.AddMinutes(-2)), batchSize: 100);

        var (status, body) = await GetAsync($"/v1/customers/{customer}/usage/current");

        Assert.Equal(HttpStatusCode.OK, status);
        var current = Assert.Single(body!["data"]!.AsArray())!;
        Assert.Equal(Day(DateOnly.FromDateTime(monthStart.UtcDateTime)), current["periodStart"]!.GetValue<string>());
        Assert.Equal("7", current["lines"]![0]!["quantity"]!.GetValue<string>());
        Assert.Equal(0.10m, decimal.Parse(current["amount"]!.GetValue<string>(), CultureInfo.InvariantCulture)); // 0.105, half-even
    }

    [Fact]
    public async Task Post_SameIdempotencyKey_ReplaysTheAnswerAndAnotherBodyIs409()
    {
        string key = "idem-" + _run;
        var first = await PostWithKeyAsync("/v1/customers", new { id = $"idem-{_run}", name = "Idem", currency = "USD" }, key);
        var replay = await PostWithKeyAsync("/v1/customers", new { id = $"idem-{_run}", name = "Idem", currency = "USD" }, key);
        var other = await PostWithKeyAsync("/v1/customers", new { id = $"idem-{_run}", name = "Other", currency = "USD" }, key);

        Assert.Equal(HttpStatusCode.Created, first.Status);
        Assert.Equal(HttpStatusCode.Created, replay.Status);
        Assert.Equal(first.Body, replay.Body);
        Assert.True(replay.Replayed);
        Assert.Equal(HttpStatusCode.Conflict, other.Status);
    }

    private async Task<(HttpStatusCode Status, string Body, bool Replayed)> PostWithKeyAsync(string path, object body, string idempotencyKey)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = System.Net.Http.Json.JsonContent.Create(body) };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
        request.Headers.Add("Idempotency-Key", idempotencyKey);
        using var response = await _http.SendAsync(request);
        return (response.StatusCode, await response.Content.ReadAsStringAsync(), response.Headers.Contains("Idempotent-Replayed"));
    }

    [Fact]
    public async Task InvoiceChanges_TenantWithWebhookEndpoint_ReceivesCreatedFinalizedCreditNoteAndVoided()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        string tenant = $"hooks-{_run}";
        await PostOkAsync("/v1/tenants", new { id = tenant, name = "Hooks" });
        string key = (await PostOkAsync($"/v1/tenants/{tenant}/api-keys", new { name = "all", scopes = new[] { "admin", "read", "ingest" } }))["key"]!.GetValue<string>();
        await PostOkAsync("/v1/webhook-endpoints", new { url = receiver.Url() }, key);
        await PostOkAsync("/v1/plans", new
        {
            code = "flat",
            name = "Flat",
            version = new { currency = "EUR", interval = "monthly", fixedFees = new[] { new { code = "base", amount = "10.00" } } },
        }, key);
        await PostOkAsync("/v1/customers", new { id = "c", name = "C", currency = "EUR" }, key);
        await PostOkAsync("/v1/subscriptions", new { customer = "c", plan = "flat", startDate = Day(fixture.MonthStart) }, key);
        await PostOkAsync("/v1/billing-runs", new { asOf = Day(fixture.MonthStart) + "T12:00:00Z" }, key);
        string invoice = Assert.Single(await InvoicesAsync("c", key))["id"]!.GetValue<string>();
        await PostOkAsync($"/v1/invoices/{invoice}/credit-notes", new { reason = "goodwill", lines = new[] { new { lineNumber = 1, amount = "2.50" } } }, key);
        await PostOkAsync($"/v1/invoices/{invoice}/void", null, key);

        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (receiver.Received.Count < 4 && DateTime.UtcNow < deadline)
            await Task.Delay(50);
        // Deliveries run concurrently, so they may arrive in any order; each carries the state at its change.
        var events = receiver.Received.Select(r => JsonNode.Parse(r.Text)!).ToDictionary(e => e["type"]!.GetValue<string>());
        Assert.Equal(["credit_note.created", "invoice.created", "invoice.finalized", "invoice.voided"], events.Keys.Order());
        Assert.All(events.Values, e => Assert.Equal(tenant, e["tenant"]!.GetValue<string>()));
        // No grace period: the run inserted the invoice final and numbered, and both events carry it as it is.
        Assert.Equal("finalized", events["invoice.created"]["data"]!["status"]!.GetValue<string>());
        Assert.Equal("INV-000001", events["invoice.created"]["data"]!["number"]!.GetValue<string>());
        Assert.Equal("INV-000001", events["invoice.finalized"]["data"]!["number"]!.GetValue<string>());
        Assert.Equal("10.00", events["invoice.finalized"]["data"]!["total"]!.GetValue<string>());
        Assert.Equal(invoice, events["credit_note.created"]["data"]!["invoice"]!.GetValue<string>());
        Assert.Equal("2.50", events["credit_note.created"]["data"]!["total"]!.GetValue<string>());
        Assert.Equal("void", events["invoice.voided"]["data"]!["status"]!.GetValue<string>());
    }

    [Fact]
    public async Task EntitlementThresholds_UsageCrosses80And100Percent_AnnouncedOnceEach()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        string tenant = $"limits-{_run}";
        await PostOkAsync("/v1/tenants", new { id = tenant, name = "Limits" });
        string key = (await PostOkAsync($"/v1/tenants/{tenant}/api-keys", new { name = "all", scopes = new[] { "admin", "read", "ingest" } }))["key"]!.GetValue<string>();
        await PostOkAsync("/v1/meters", new { key = "api_calls", eventType = "api_call", aggregation = "COUNT" }, key);
        await PostOkAsync("/v1/webhook-endpoints", new { url = receiver.Url(), eventTypes = new[] { "entitlement.threshold_reached" } }, key);
        await PostOkAsync("/v1/plans", new
        {
            code = "capped",
            name = "Capped",
            version = new { currency = "USD", interval = "monthly", entitlements = new[] { new { meter = "api_calls", limit = "100" } } },
        }, key);
        await PostOkAsync("/v1/customers", new { id = "c", name = "C", currency = "USD" }, key);
        await PostOkAsync("/v1/subscriptions", new { customer = "c", plan = "capped", startDate = Day(fixture.MonthStart) }, key);
        var now = DateTimeOffset.UtcNow;
        var monthStart = new DateTimeOffset(now.Year, now.Month, 1, 0, 0, 0, TimeSpan.Zero);
        var from = now.AddMinutes(-3) < monthStart ? monthStart : now.AddMinutes(-3);

        await fixture.Api.IngestAsync(Calls("c", "a", 85, from), batchSize: 100, key);
        Assert.True(await Wait.UntilAsync(() => receiver.Received.Count >= 1), "no 80% announcement");
        await fixture.Api.IngestAsync(Calls("c", "b", 20, from.AddMinutes(1)), batchSize: 100, key);
        Assert.True(await Wait.UntilAsync(() => receiver.Received.Count >= 2), "no 100% announcement");
        await fixture.Api.IngestAsync(Calls("c", "c", 50, from.AddMinutes(2)), batchSize: 100, key);
        await Task.Delay(1000); // five more checks: nothing is announced twice

        var events = receiver.Received.Select(r => JsonNode.Parse(r.Text)!["data"]!).ToList();
        Assert.Equal([80, 100], events.Select(e => e["threshold"]!.GetValue<int>()).Order());
        Assert.All(events, e => Assert.Equal("c", e["customer"]!.GetValue<string>()));
        // The check may run while the 85 calls are being applied: the usage it announces is at least the threshold.
        Assert.InRange(decimal.Parse(events.Single(e => e["threshold"]!.GetValue<int>() == 80)["usage"]!.GetValue<string>(), CultureInfo.InvariantCulture), 80m, 85m);
    }

    [Fact]
    public async Task CreditNotes_PartialThenTooMuch_AreKeptWithinTheLineAndAudited()
    {
        await PostOkAsync("/v1/plans", ProPlan($"pro-{_run}"));
        string customer = $"credit-{_run}";
        await PostOkAsync("/v1/customers", new { id = customer, name = "Credit", currency = "USD" });
        await PostOkAsync("/v1/subscriptions", new { customer, plan = $"pro-{_run}", startDate = Day(fixture.MonthStart) });
        await PostOkAsync("/v1/billing-runs", new { asOf = Day(fixture.MonthStart) + "T12:00:00Z" });
        var invoice = Assert.Single(await InvoicesAsync(customer));
        string id = invoice["id"]!.GetValue<string>();

        await PostOkAsync($"/v1/invoices/{id}/credit-notes", new { reason = "outage on the 3rd", lines = new[] { new { lineNumber = 1, amount = "9.00" } } });
        var (status, problem) = await SendAsync(HttpMethod.Post, $"/v1/invoices/{id}/credit-notes", new { reason = "again", lines = new[] { new { lineNumber = 1, amount = "40.01" } } });
        AssertProblem(HttpStatusCode.BadRequest, "lines[0].amount", status, problem);
        var rest = await PostOkAsync($"/v1/invoices/{id}/credit-notes", new { reason = "goodwill" });
        Assert.Equal("40", rest["total"]!.GetValue<string>().TrimEnd('0').TrimEnd('.'));
        Assert.Equal(AlphaMesh.Ingest.ApiKey.DisplayPrefix(AdminKey), rest["createdBy"]!.GetValue<string>());
        var (nothingLeft, _) = await SendAsync(HttpMethod.Post, $"/v1/invoices/{id}/credit-notes", new { reason = "more" });
        Assert.Equal(HttpStatusCode.Conflict, nothingLeft);

        await PostOkAsync($"/v1/invoices/{id}/pay", null);
        var (voidPaid, _) = await SendAsync(HttpMethod.Post, $"/v1/invoices/{id}/void", null);
        Assert.Equal(HttpStatusCode.Conflict, voidPaid);
        var stored = (await GetAsync($"/v1/invoices/{id}")).Body!;
        Assert.Equal("paid", stored["status"]!.GetValue<string>());
        Assert.Equal(2, stored["creditNotes"]!.AsArray().Count);
    }

    [Fact]
    public async Task Endpoints_AnotherTenantsAdminKey_Return404ForEveryId()
    {
        await PostOkAsync("/v1/plans", ProPlan($"pro-{_run}"));
        string customer = $"private-{_run}";
        await PostOkAsync("/v1/customers", new { id = customer, name = "Private", currency = "USD" });
        var subscription = (await PostOkAsync("/v1/subscriptions", new { customer, plan = $"pro-{_run}", startDate = Day(fixture.MonthStart) }))["id"]!.GetValue<string>();
        await PostOkAsync("/v1/billing-runs", new { asOf = Day(fixture.MonthStart) + "T12:00:00Z", subscription });
        string invoice = Assert.Single(await InvoicesAsync(customer))["id"]!.GetValue<string>();
        string tenant = $"rival-{_run}";
        await PostOkAsync("/v1/tenants", new { id = tenant, name = "Rival" });
        string rivalKey = (await PostOkAsync($"/v1/tenants/{tenant}/api-keys", new { name = "admin", scopes = new[] { "admin", "read" } }))["key"]!.GetValue<string>();

        var calls = new (HttpMethod Method, string Path, object? Body)[]
        {
            (HttpMethod.Get, $"/v1/customers/{customer}", null),
            (HttpMethod.Get, $"/v1/customers/{customer}/usage/current", null),
            (HttpMethod.Get, $"/v1/customers/{customer}/simulate?plan=pro-{_run}&periodStart={Day(fixture.MonthStart)}", null),
            (HttpMethod.Get, $"/v1/plans/pro-{_run}", null),
            (HttpMethod.Get, $"/v1/plans/pro-{_run}/versions/1", null),
            (HttpMethod.Post, $"/v1/plans/pro-{_run}/versions", new { currency = "USD", interval = "monthly" }),
            (HttpMethod.Get, $"/v1/subscriptions/{subscription}", null),
            (HttpMethod.Post, $"/v1/subscriptions/{subscription}/cancel", new { at = "now", date = Day(fixture.MonthStart) }),
            (HttpMethod.Post, $"/v1/subscriptions/{subscription}/change-plan", new { plan = $"pro-{_run}", effectiveDate = Day(fixture.MonthStart.AddDays(2)) }),
            (HttpMethod.Get, $"/v1/invoices/{invoice}", null),
            (HttpMethod.Post, $"/v1/invoices/{invoice}/finalize", null),
            (HttpMethod.Post, $"/v1/invoices/{invoice}/pay", null),
            (HttpMethod.Post, $"/v1/invoices/{invoice}/void", null),
            (HttpMethod.Post, $"/v1/invoices/{invoice}/credit-notes", new { reason = "x" }),
        };
        foreach (var (method, path, body) in calls)
        {
            var (status, problem) = await SendAsync(method, path, body, rivalKey);
            Assert.True(status == HttpStatusCode.NotFound, $"{method} {path}: {status} {problem?.ToJsonString()}");
            Assert.Equal("not_found", problem!["code"]!.GetValue<string>());
        }
        // And the lists show none of it.
        Assert.Empty((await GetAsync("/v1/invoices", rivalKey)).Body!["data"]!.AsArray());
        Assert.Empty((await GetAsync("/v1/subscriptions", rivalKey)).Body!["data"]!.AsArray());
    }

    public static TheoryData<string, string, string> BadRequests => new()
    {
        { "/v1/customers", """{"id":"c1","name":"x","currency":"USD""", "" },
        { "/v1/customers", """{"id":"c1","name":"x","currency":"USD","vip":true}""", "" },
        { "/v1/customers", """{"id":"c1","name":"x","currency":"XYZ"}""", "currency" },
        { "/v1/customers", $$"""{"id":"c1","name":"{{new string('n', 201)}}","currency":"USD"}""", "name" },
        { "/v1/customers", """{"id":"c1","name":"x","currency":"USD","billingTimezone":"Mars/Olympus"}""", "billingTimezone" },
        { "/v1/plans", """{"code":"p","name":"x","version":{"currency":"USD","interval":"monthly","fixedFees":[{"code":"f","amount":"-5"}]}}""", "version.fixedFees[0]" },
        { "/v1/plans", """{"code":"p","name":"x","version":{"currency":"USD","interval":"monthly","charges":[{"code":"c","meter":"api_calls","model":{"type":"standard","unitPrice":"-0.1"}}]}}""", "version.charges[0]" },
        { "/v1/plans", """{"code":"p","name":"x","version":{"currency":"USD","interval":"monthly","charges":[{"code":"c","meter":"nope","model":{"type":"standard","unitPrice":"1"}}]}}""", "version.charges[0].meter" },
        { "/v1/plans", """{"code":"p","name":"x","version":{"currency":"USD","interval":"monthly","charges":[{"code":"c","meter":"api_calls","model":{"type":"graduated","tiers":[{"upTo":"10","unitPrice":"1"}]}}]}}""", "version.charges[0]" },
        { "/v1/subscriptions", """{"customer":"c1","plan":"p","startDate":"2026-13-01"}""", "startDate" },
        { "/v1/billing-runs", """{"asOf":"yesterday"}""", "asOf" },
        { "/v1/billing-settings", """{"roundingMode":"sideways"}""", "roundingMode" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task Post_BadInput_Returns400ProblemNamingTheField(string path, string json, string fieldPrefix)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
        using var response = await _http.SendAsync(request);
        var problem = JsonNode.Parse(await response.Content.ReadAsStringAsync());

        AssertProblem(HttpStatusCode.BadRequest, fieldPrefix, response.StatusCode, problem);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        // Nothing was created by a rejected request.
        Assert.Equal(HttpStatusCode.NotFound, (await GetAsync("/v1/customers/c1")).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await GetAsync("/v1/plans/p")).Status);
    }

    [Fact]
    public async Task OpenApi_Document_DescribesEveryBillingEndpointWithItsShapes()
    {
        using var response = await _http.GetAsync("/openapi/v1.json");
        var document = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("3.", document["openapi"]!.GetValue<string>(), StringComparison.Ordinal);
        var paths = document["paths"]!.AsObject();
        foreach (var path in new[] { "/v1/tenants", "/v1/customers", "/v1/customers/{id}", "/v1/plans/{code}/versions", "/v1/subscriptions/{id}/change-plan",
            "/v1/billing-runs", "/v1/invoices/{id}", "/v1/invoices/{id}/credit-notes", "/v1/customers/{id}/usage/current" })
            Assert.True(paths.ContainsKey(path), $"{path} is missing from the document: {string.Join(", ", paths.Select(p => p.Key))}");
        var create = paths["/v1/customers"]!["post"]!;
        Assert.NotNull(create["requestBody"]!["content"]!["application/json"]!["schema"]);
        Assert.NotNull(create["responses"]!["201"]!["content"]!["application/json"]!["schema"]);
        Assert.NotNull(create["responses"]!["400"]!["content"]!["application/problem+json"]);
    }

    // Helpers

    private static void AssertProblem(HttpStatusCode expected, string fieldPrefix, HttpStatusCode status, JsonNode? problem)
    {
        Assert.True(status == expected, $"expected {expected}, got {status}: {problem?.ToJsonString()}");
        Assert.Equal((int)expected, problem!["status"]!.GetValue<int>());
        Assert.False(string.IsNullOrWhiteSpace(problem["title"]!.GetValue<string>()));
        Assert.False(string.IsNullOrWhiteSpace(problem["detail"]!.GetValue<string>()));
        if (fieldPrefix.Length > 0)
            Assert.StartsWith(fieldPrefix, problem["field"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    private static List<UsageEvent> Calls(string customer, string tag, int count, DateTimeOffset from) =>
        [.. Enumerable.Range(0, count).Select(i => Requests.Event($"{customer}-{tag}-{i}", customer: customer, type: "api_call", time: from.AddSeconds(i)))];

    private static string Day(DateOnly day) => day.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);

    private static DateTimeOffset Midnight(DateOnly day) => new(day.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);

    private static decimal Total(JsonNode invoice) => decimal.Parse(invoice["total"]!.GetValue<string>(), CultureInfo.InvariantCulture);

    private static decimal Amount(JsonNode line) => decimal.Parse(line["amount"]!.GetValue<string>(), CultureInfo.InvariantCulture);

    /// <summary>Every invoice of the customer, whole (with lines), ordered by billing date.</summary>
    private async Task<List<JsonNode>> InvoicesAsync(string customer, string key = AdminKey)
    {
        var list = await ListAsync($"/v1/invoices?customer={Uri.EscapeDataString(customer)}&limit=100", key);
        var whole = new List<JsonNode>();
        foreach (var invoice in list)
            whole.Add((await GetAsync($"/v1/invoices/{invoice["id"]!.GetValue<string>()}", key)).Body!);
        return [.. whole.OrderBy(i => i["billingDate"]!.GetValue<string>(), StringComparer.Ordinal)];
    }

    private async Task<List<JsonNode>> ListAsync(string path, string key = AdminKey)
    {
        var (status, body) = await GetAsync(path, key);
        Assert.True(status == HttpStatusCode.OK, body?.ToJsonString());
        return [.. body!["data"]!.AsArray().Select(n => n!)];
    }

    private async Task<(HttpStatusCode Status, JsonNode? Body)> GetAsync(string path, string key = AdminKey) => await SendAsync(HttpMethod.Get, path, null, key);

    private async Task<JsonNode> PostOkAsync(string path, object? body, string key = AdminKey)
    {
        var (status, node) = await SendAsync(HttpMethod.Post, path, body, key);
        Assert.True(status is HttpStatusCode.OK or HttpStatusCode.Created, $"POST {path}: {status} {node?.ToJsonString()}");
        return node!;
    }

    private async Task<(HttpStatusCode Status, JsonNode? Body)> SendAsync(HttpMethod method, string path, object? body, string key = AdminKey)
    {
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (body is not null)
            request.Content = System.Net.Http.Json.JsonContent.Create(body);
        using var response = await _http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? null : JsonNode.Parse(text));
    }
}
