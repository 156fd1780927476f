using static AlphaMesh.Rating.Tests.TestPlans;

namespace AlphaMesh.Rating.Tests;

public sealed class RaterTests
{
    private static readonly BillingPeriod March2026 = Month(2026, 3);   // 31 days
    private static readonly BillingPeriod February2026 = Month(2026, 2); // 28 days
    private static readonly BillingPeriod April2026 = Month(2026, 4);   // 30 days

    private static PlanVersion Plan(decimal fee, FeeTiming timing = FeeTiming.InAdvance, string currency = "USD") => Version(currency) with
    {
        FixedFees = [new FixedFee("platform", fee, timing)],
        Charges = [new Charge("calls", ApiCalls, new StandardModel(0.01m))],
    };

    [Fact]
    public void RatePeriod_StartMidMonth_ProratesFixedFeeByDays()
    {
        // March 2026 has 31 days; active from the 11th: days 11..31 = 21 days.
        // 31.00 * 21 / 31 = 21.00
        var invoice = Rater.RatePeriod(Plan(31m), March2026, new DateOnly(2026, 3, 11), March2026.End, Usage());

        var fee = invoice.Lines[0];
        Assert.Equal(LineKind.FixedFee, fee.Kind);
        Assert.Equal((21, 31), (fee.Days, fee.PeriodDays));
        Assert.Equal(21.00m, fee.Amount);
    }

    [Fact]
    public void RatePeriod_StartMidFebruary_HalfTheFee()
    {
        // February 2026 has 28 days; active from the 15th: days 15..28 = 14 days. 100 * 14 / 28 = 50.00
        var invoice = Rater.RatePeriod(Plan(100m), February2026, new DateOnly(2026, 2, 15), February2026.End, Usage());

        Assert.Equal(50.00m, invoice.Lines[0].Amount);
    }

    [Fact]
    public void RatePeriod_EndMidMonth_ProratesAndRoundsOnce()
    {
        // April 2026 has 30 days; service ends before the 11th: days 1..10 = 10 days.
        // 100 * 10 / 30 = 33.333... -> 33.33 (half-even)
        var invoice = Rater.RatePeriod(Plan(100m, FeeTiming.InArrears), April2026, April2026.Start, new DateOnly(2026, 4, 11), Usage());

        var fee = invoice.Lines[0];
        Assert.Equal(33.33m, fee.Amount);
        Assert.Equal(FeeTiming.InArrears, fee.Timing);
        Assert.Equal(new DateOnly(2026, 4, 11), fee.ServiceTo);
    }

    [Fact]
    public void RatePeriod_JpyProration_RoundsToWholeYen()
    {
        // 1000 JPY, 31-day March, 10 active days (22..31): 1000 * 10 / 31 = 322.58... -> 323
        var invoice = Rater.RatePeriod(Plan(1000m, currency: "JPY"), March2026, new DateOnly(2026, 3, 22), March2026.End, Usage());

        Assert.Equal(323m, invoice.Lines[0].Amount);
    }

    [Fact]
    public void RatePeriod_UsageCharge_IsNotProrated()
    {
        // 1234 calls * 0.01 = 12.34 whatever the active days.
        var invoice = Rater.RatePeriod(Plan(31m), March2026, new DateOnly(2026, 3, 30), March2026.End, Usage(("api_calls", 1234m)));

        var usage = Assert.Single(invoice.Lines, l => l.Kind == LineKind.Usage);
        Assert.Equal(12.34m, usage.Amount);
        Assert.Equal("api_calls", usage.MeterCode);
        Assert.Equal(1234m, usage.Quantity);
    }

    [Fact]
    public void RatePlanChange_Upgrade_CreditsUnusedOldFeeAndChargesNewFee()
    {
        // April 2026 has 30 days; change on the 21st, so days 21..30 = 10 days remain.
        // credit: -30 * 10 / 30 = -10.00; new fee: 90 * 10 / 30 = 30.00; total 20.00
        var from = Plan(30m);
        var to = Plan(90m) with { Version = 2 };

        var invoice = Rater.RatePlanChange(from, to, April2026, new DateOnly(2026, 4, 21));

        Assert.Collection(invoice.Lines,
            credit =>
            {
                Assert.Equal(LineKind.PlanChangeCredit, credit.Kind);
                Assert.Equal(-10.00m, credit.Amount);
                Assert.Equal(10, credit.Days);
            },
            charge =>
            {
                Assert.Equal(LineKind.FixedFee, charge.Kind);
                Assert.Equal(30.00m, charge.Amount);
            });
        Assert.Equal(20.00m, invoice.Total);
    }

    [Fact]
    public void RatePlanChange_Downgrade_TotalIsACredit()
    {
        // March 2026: 31 days, change on the 17th: days 17..31 = 15 days remain.
        // credit -99 * 15 / 31 = -47.903... -> -47.90; new 9 * 15 / 31 = 4.354... -> 4.35; total -43.55
        var invoice = Rater.RatePlanChange(Plan(99m), Plan(9m) with { Version = 2 }, March2026, new DateOnly(2026, 3, 17));

        Assert.Equal(-47.90m, invoice.Lines[0].Amount);
        Assert.Equal(4.35m, invoice.Lines[1].Amount);
        Assert.Equal(-43.55m, invoice.Total);
    }

    [Fact]
    public void RatePlanChange_ArrearsFees_AreLeftToThePeriodEnd()
    {
        var invoice = Rater.RatePlanChange(Plan(30m, FeeTiming.InArrears), Plan(90m, FeeTiming.InArrears), April2026, new DateOnly(2026, 4, 21));

        Assert.Empty(invoice.Lines);
    }

    [Fact]
    public void RatePeriod_UsageBelowProratedCommitment_AddsTrueUpLine()
    {
        // Commitment 100 per period; February 2026 (28 days) from the 15th: 14 days, so 100 * 14 / 28 = 50 owed.
        // Usage 2000 calls * 0.01 = 20.00; true-up 50 - 20 = 30.00.
        var plan = Plan(0m) with { MinimumCommitment = 100m };

        var invoice = Rater.RatePeriod(plan, February2026, new DateOnly(2026, 2, 15), February2026.End, Usage(("api_calls", 2000m)));

        var trueUp = Assert.Single(invoice.Lines, l => l.Kind == LineKind.MinimumCommitmentTrueUp);
        Assert.Equal(30.00m, trueUp.Amount);
        Assert.Equal(100m, trueUp.FullPeriodAmount);
        Assert.Equal(50.00m, invoice.Total);   // fee 0 + usage 20 + true-up 30
    }

    [Fact]
    public void RatePeriod_UsageAboveCommitment_NoTrueUp()
    {
        var plan = Plan(0m) with { MinimumCommitment = 10m };

        var invoice = Rater.RatePeriod(plan, March2026, Usage(("api_calls", 2000m)));

        Assert.DoesNotContain(invoice.Lines, l => l.Kind == LineKind.MinimumCommitmentTrueUp);
    }

    [Fact]
    public void RatePeriod_ChargeBelowMinimumSpend_TopsUpProratedMinimum()
    {
        // Minimum spend 10 per period; February 2026 from the 15th: 10 * 14 / 28 = 5.00.
        // Usage 200 * 0.01 = 2.00; the line is raised to 5.00 (top-up 3.00).
        var plan = Version() with { Charges = [new Charge("calls", ApiCalls, new StandardModel(0.01m)) { MinimumSpend = 10m }] };

        var invoice = Rater.RatePeriod(plan, February2026, new DateOnly(2026, 2, 15), February2026.End, Usage(("api_calls", 200m)));

        var line = Assert.Single(invoice.Lines);
        Assert.Equal(5.00m, line.Amount);
        Assert.Equal(3.00m, line.MinimumSpendTopUp);
    }

    [Fact]
    public void RatePeriod_LineSelection_SplitsAdvanceFromArrears()
    {
        var plan = Version() with
        {
            FixedFees = [new FixedFee("base", 10m), new FixedFee("support", 5m, FeeTiming.InArrears)],
            Charges = [new Charge("calls", ApiCalls, new StandardModel(1m))],
        };

        var start = Rater.RatePeriod(plan, March2026, Usage(), lines: LineSelection.InAdvanceFees);
        var end = Rater.RatePeriod(plan, March2026, Usage(("api_calls", 3m)), lines: LineSelection.InArrearsFees | LineSelection.Usage);

        Assert.Equal(["base"], start.Lines.Select(l => l.Code));
        Assert.Equal(["support", "calls"], end.Lines.Select(l => l.Code));
        Assert.Equal(8m, end.Total);
    }

    [Fact]
    public void RatePeriod_TieredLine_ExplainsItselfAndTotalsTheLines()
    {
        var plan = Version("BHD") with
        {
            FixedFees = [new FixedFee("base", 9.9995m)],
            Charges =
            [
                new Charge("calls", ApiCalls, new GraduatedModel(Tiers(new(1000, 0m), new(null, 0.000012m)))),
                new Charge("fees", Payments, new PercentageModel(0.0125m)),
            ],
        };

        var invoice = Rater.RatePeriod(plan, March2026, Usage(("api_calls", 1_000_001_000m), ("payments", 123.4567m)));

        // base: 9.9995 -> 10.000 (half-even, BHD has 3 digits); calls: 10^9 * 0.000012 = 12000.000; fees: 1.54320875 -> 1.543
        Assert.Equal([10.000m, 12000.000m, 1.543m], invoice.Lines.Select(l => l.Amount));
        Assert.Equal(invoice.Lines.Sum(l => l.Amount), invoice.Total);
        var calls = invoice.Lines[1];
        Assert.Equal(calls.BillableQuantity, calls.GetTiers().Sum(t => t.Units));
        Assert.Equal(calls.ExactAmount, calls.GetTiers().Sum(t => t.Amount));
        Assert.Contains("calls (graduated) on meter api_calls", calls.Explain());
        Assert.Contains("tier 2", calls.Explain());
    }

    [Fact]
    public void RatePeriod_SameInputs_SameLines()
    {
        var plan = Plan(31m) with { MinimumCommitment = 50m };
        var usage = Usage(("api_calls", 777.7m));

        var first = Rater.RatePeriod(plan, March2026, new DateOnly(2026, 3, 5), March2026.End, usage);
        var second = Rater.RatePeriod(plan, March2026, new DateOnly(2026, 3, 5), March2026.End, usage);

        AssertSameLines(first.Lines, second.Lines);
    }

    [Fact]
    public void RatePeriod_UsageInChargeOrder_SameAsByMeter()
    {
        var plan = Version() with
        {
            Charges = [new Charge("calls", ApiCalls, new StandardModel(0.01m)), new Charge("fees", Payments, new PercentageModel(0.01m))],
        };

        var byMeter = Rater.RatePeriod(plan, March2026, Usage(("payments", 500m), ("api_calls", 300m)));
        var byCharge = Rater.RatePeriod(plan, March2026, March2026.Start, March2026.End, [new ChargeUsage(300m), new ChargeUsage(500m)]);

        AssertSameLines(byMeter.Lines, byCharge.Lines);
        Assert.Equal(8.00m, byCharge.Total);   // 300 * 0.01 + 500 * 0.01
        Assert.Throws<ArgumentException>(() => Rater.RatePeriod(plan, March2026, March2026.Start, March2026.End, [new ChargeUsage(1m)]));
    }

    [Fact]
    public void RatePeriod_NoActiveDays_Throws()
    {
        Assert.Throws<ArgumentException>(() => Rater.RatePeriod(Plan(1m), March2026, April2026.Start, April2026.End, Usage()));
    }

    [Fact]
    public void Simulate_OtherVersion_RatesWithoutChangingThePlan()
    {
        var v1 = Plan(10m);
        var plan = AlphaMesh.Rating.Plan.Create(v1);
        var v2 = v1 with { Version = 2, Charges = [new Charge("calls", ApiCalls, new StandardModel(0.02m))] };
        plan = plan.AddVersion(v2);
        var usage = Usage(("api_calls", 1000m));

        var actual = Rater.RatePeriod(plan.GetVersion(1), March2026, usage);
        var simulated = Rater.Simulate(plan.Latest, March2026, usage);

        Assert.Equal(20.00m, actual.Total);        // 10 + 1000 * 0.01
        Assert.Equal(30.00m, simulated.Total);     // 10 + 1000 * 0.02
        Assert.Equal(2, simulated.PlanVersion);
        Assert.Same(v1, plan.GetVersion(1));
        Assert.Equal(20.00m, Rater.RatePeriod(plan.GetVersion(1), March2026, usage).Total);
    }

    [Fact]
    public void Simulate_InvalidPlan_Throws()
    {
        var bad = Version("XYZ");

        var error = Assert.Throws<PlanValidationException>(() => Rater.Simulate(bad, March2026, Usage()));

        Assert.Contains(error.Errors, e => e.Path == "currency");
    }
}

/// <summary>The usage of a dictionary read back into charge order: a buffer per thread, which a re-entrant call must not share.</summary>
public sealed class RaterUsageBufferTests
{
    [Fact]
    public void RatePeriod_UsageWhoseLookupRatesAnotherInvoice_BothInvoicesAsRatedAlone()
    {
        // A usage source that, while it is read, rates a second invoice on the same thread (a test double: no real source
        // does this, but a caller's own IReadOnlyDictionary could, and then the two calls must not share one buffer).
        var period = TestPlans.Month(2026, 3);
        var outer = PlanOf(70, 0.01m);
        var inner = PlanOf(3, 5m);
        var innerUsage = new Dictionary<string, ChargeUsage> { ["m0"] = new(7m), ["m1"] = new(11m), ["m2"] = new(13m) };
        var outerUsage = Enumerable.Range(0, 70).ToDictionary(i => $"m{i}", i => new ChargeUsage(100m + i));
        // Rated alone first, which also leaves this thread a kept buffer large enough for both invoices.
        decimal outerAlone = Rater.RatePeriod(outer, period, outerUsage).Total;
        decimal innerAlone = Rater.RatePeriod(inner, period, innerUsage).Total;
        Rater.RatePeriod(outer, period, outerUsage);
        Invoice? nested = null;
        // Nested once the first charges' usage is read into the buffer, so that a shared buffer would be overwritten.
        var reentrant = new ReentrantUsage(outerUsage, key => nested ??= key == "m5" ? Rater.RatePeriod(inner, period, innerUsage) : null);

        var invoice = Rater.RatePeriod(outer, period, reentrant);

        Assert.Equal(outerAlone, invoice.Total);
        Assert.Equal(innerAlone, nested!.Total);
        // 0.01 * (100 + 101 + ... + 169) = 0.01 * 9,415 = 94.15; 5 * (7 + 11 + 13) = 155
        Assert.Equal(94.15m, invoice.Total);
        Assert.Equal(155m, nested.Total);
    }

    private static PlanVersion PlanOf(int charges, decimal unitPrice) => TestPlans.Version("USD") with
    {
        Charges = [.. Enumerable.Range(0, charges).Select(i => new Charge($"c{i}", new Meter($"m{i}", MeterAggregation.Sum), new StandardModel(unitPrice)))],
    };

    private sealed class ReentrantUsage(Dictionary<string, ChargeUsage> usage, Action<string> onRead) : IReadOnlyDictionary<string, ChargeUsage>
    {
        public ChargeUsage this[string key] => usage[key];

        public IEnumerable<string> Keys => usage.Keys;

        public IEnumerable<ChargeUsage> Values => usage.Values;

        public int Count => usage.Count;

        public bool ContainsKey(string key) => usage.ContainsKey(key);

        public bool TryGetValue(string key, out ChargeUsage value)
        {
            onRead(key);
            return usage.TryGetValue(key, out value);
        }

        public IEnumerator<KeyValuePair<string, ChargeUsage>> GetEnumerator() => usage.GetEnumerator();

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
