using System.Collections.Immutable;
using System.Globalization;
using System.Runtime.InteropServices;
using static AlphaMesh.Rating.Tests.TestPlans;

namespace AlphaMesh.Rating.Tests;

/// <summary>
/// The invoice lines: what a line derives from its charge (meter, model, free units, billable events, the tier
/// breakdown built on demand), and a 20-line invoice written out decimal by decimal.
/// </summary>
public sealed class InvoiceLineTests
{
    private static readonly BillingPeriod March2026 = Month(2026, 3);

    /// <summary>The benchmarks' invoice (benchmarks/AlphaMesh.Benchmarks/RatingBenchmarks.cs): 2 fixed fees and 18 charges of every model.</summary>
    private static (PlanVersion Plan, Dictionary<string, ChargeUsage> Usage) TwentyLinePlan()
    {
        var charges = ImmutableArray.CreateBuilder<Charge>();
        var usage = new Dictionary<string, ChargeUsage>();
        for (int i = 0; i < 18; i++)
        {
            var sum = new Meter($"meter_{i}", MeterAggregation.Sum);
            ChargeModel model = (i % 6) switch
            {
                0 => new StandardModel(0.000012m),
                1 => new GraduatedModel([new Tier(1_000, 0m), new Tier(100_000, 0.001m, 1m), new Tier(null, 0.0005m)]),
                2 => new VolumeModel([new Tier(100, 1m, 10m), new Tier(1_000, 0.8m), new Tier(null, 0.5m)]),
                3 => new PackageModel(1000m, 2.5m),
                4 => new PercentageModel(0.029m, 10, 0.30m),
                _ => new GraduatedPercentageModel([new Tier(10_000, 0.03m), new Tier(null, 0.02m, 10m)]),
            };
            charges.Add(new Charge($"charge_{i}", sum, model) { FreeUnits = i % 2 == 0 ? 100m : 0m, MinimumSpend = i % 3 == 0 ? 5m : 0m });
            usage[sum.Code] = new ChargeUsage(12_345.678m * (i + 1), 1000 + i);
        }

        var plan = Version() with
        {
            FixedFees = [new FixedFee("platform", 49m), new FixedFee("support", 19.99m, FeeTiming.InArrears)],
            Charges = charges.ToImmutable(),
            MinimumCommitment = 10m,
        };
        return (plan, usage);
    }

    // Written by the code before the tier breakdowns were built on demand (main at a4359e4), with each decimal's
    // scale visible in its text (125.0, 0.000): rating must keep giving these decimals, not only these values.
    public static TheoryData<DateOnly, string, string[]> TwentyLineInvoices => new()
    {
        {
            March2026.Start, "189715.51",
            [
                "platform q=0 free=0 billable=0 events=0 topUp=0 exact=49 amount=49 tiers=[]",
                "support q=0 free=0 billable=0 events=0 topUp=0 exact=19.99 amount=19.99 tiers=[]",
                "charge_0 q=12345.678 free=100.000 billable=12245.678 events=0 topUp=4.853051864 exact=5 amount=5 tiers=[]",
                "charge_1 q=24691.356 free=0.000 billable=24691.356 events=0 topUp=0 exact=24.691356 amount=24.69 tiers=[1000 x 0 + 0 = 0; 23691.356 x 0.001 + 1 = 24.691356]",
                "charge_2 q=37037.034 free=100.000 billable=36937.034 events=0 topUp=0 exact=18468.5170 amount=18468.52 tiers=[36937.034 x 0.5 + 0 = 18468.5170]",
                "charge_3 q=49382.712 free=0.000 billable=49382.712 events=0 topUp=0 exact=125.0 amount=125.0 tiers=[]",
                "charge_4 q=61728.390 free=100.000 billable=61628.390 events=994 topUp=0 exact=2085.423310 amount=2085.42 tiers=[]",
                "charge_5 q=74074.068 free=0.000 billable=74074.068 events=0 topUp=0 exact=1591.48136 amount=1591.48 tiers=[10000 x 0.03 + 0 = 300.00; 64074.068 x 0.02 + 10 = 1291.48136]",
                "charge_6 q=86419.746 free=100.000 billable=86319.746 events=0 topUp=3.964163048 exact=5 amount=5 tiers=[]",
                "charge_7 q=98765.424 free=0.000 billable=98765.424 events=0 topUp=0 exact=98.765424 amount=98.77 tiers=[1000 x 0 + 0 = 0; 97765.424 x 0.001 + 1 = 98.765424]",
                "charge_8 q=111111.102 free=100.000 billable=111011.102 events=0 topUp=0 exact=55505.5510 amount=55505.55 tiers=[111011.102 x 0.5 + 0 = 55505.5510]",
                "charge_9 q=123456.780 free=0.000 billable=123456.780 events=0 topUp=0 exact=310.0 amount=310.0 tiers=[]",
                "charge_10 q=135802.458 free=100.000 billable=135702.458 events=1000 topUp=0 exact=4235.371282 amount=4235.37 tiers=[]",
                "charge_11 q=148148.136 free=0.000 billable=148148.136 events=0 topUp=0 exact=3072.96272 amount=3072.96 tiers=[10000 x 0.03 + 0 = 300.00; 138148.136 x 0.02 + 10 = 2772.96272]",
                "charge_12 q=160493.814 free=100.000 billable=160393.814 events=0 topUp=3.075274232 exact=5 amount=5 tiers=[]",
                "charge_13 q=172839.492 free=0.000 billable=172839.492 events=0 topUp=0 exact=136.4197460 amount=136.42 tiers=[1000 x 0 + 0 = 0; 99000 x 0.001 + 1 = 100.000; 72839.492 x 0.0005 + 0 = 36.4197460]",
                "charge_14 q=185185.170 free=100.000 billable=185085.170 events=0 topUp=0 exact=92542.5850 amount=92542.58 tiers=[185085.170 x 0.5 + 0 = 92542.5850]",
                "charge_15 q=197530.848 free=0.000 billable=197530.848 events=0 topUp=0 exact=495.0 amount=495.0 tiers=[]",
                "charge_16 q=209876.526 free=100.000 billable=209776.526 events=1006 topUp=0 exact=6385.319254 amount=6385.32 tiers=[]",
                "charge_17 q=222222.204 free=0.000 billable=222222.204 events=0 topUp=0 exact=4554.44408 amount=4554.44 tiers=[10000 x 0.03 + 0 = 300.00; 212222.204 x 0.02 + 10 = 4254.44408]",
            ]
        },
        {
            new DateOnly(2026, 3, 11), "189688.42",
            [
                "platform q=0 free=0 billable=0 events=0 topUp=0 exact=33.193548387096774193548387097 amount=33.19 tiers=[]",
                "support q=0 free=0 billable=0 events=0 topUp=0 exact=13.541612903225806451612903226 amount=13.54 tiers=[]",
                "charge_0 q=12345.678 free=100.000 billable=12245.678 events=0 topUp=3.2401486381935483870967741935 exact=3.3870967741935483870967741935 amount=3.39 tiers=[]",
                "charge_1 q=24691.356 free=0.000 billable=24691.356 events=0 topUp=0 exact=24.691356 amount=24.69 tiers=[1000 x 0 + 0 = 0; 23691.356 x 0.001 + 1 = 24.691356]",
                "charge_2 q=37037.034 free=100.000 billable=36937.034 events=0 topUp=0 exact=18468.5170 amount=18468.52 tiers=[36937.034 x 0.5 + 0 = 18468.5170]",
                "charge_3 q=49382.712 free=0.000 billable=49382.712 events=0 topUp=0 exact=125.0 amount=125.0 tiers=[]",
                "charge_4 q=61728.390 free=100.000 billable=61628.390 events=994 topUp=0 exact=2085.423310 amount=2085.42 tiers=[]",
                "charge_5 q=74074.068 free=0.000 billable=74074.068 events=0 topUp=0 exact=1591.48136 amount=1591.48 tiers=[10000 x 0.03 + 0 = 300.00; 64074.068 x 0.02 + 10 = 1291.48136]",
                "charge_6 q=86419.746 free=100.000 billable=86319.746 events=0 topUp=2.3512598221935483870967741935 exact=3.3870967741935483870967741935 amount=3.39 tiers=[]",
                "charge_7 q=98765.424 free=0.000 billable=98765.424 events=0 topUp=0 exact=98.765424 amount=98.77 tiers=[1000 x 0 + 0 = 0; 97765.424 x 0.001 + 1 = 98.765424]",
                "charge_8 q=111111.102 free=100.000 billable=111011.102 events=0 topUp=0 exact=55505.5510 amount=55505.55 tiers=[111011.102 x 0.5 + 0 = 55505.5510]",
                "charge_9 q=123456.780 free=0.000 billable=123456.780 events=0 topUp=0 exact=310.0 amount=310.0 tiers=[]",
                "charge_10 q=135802.458 free=100.000 billable=135702.458 events=1000 topUp=0 exact=4235.371282 amount=4235.37 tiers=[]",
                "charge_11 q=148148.136 free=0.000 billable=148148.136 events=0 topUp=0 exact=3072.96272 amount=3072.96 tiers=[10000 x 0.03 + 0 = 300.00; 138148.136 x 0.02 + 10 = 2772.96272]",
                "charge_12 q=160493.814 free=100.000 billable=160393.814 events=0 topUp=1.4623710061935483870967741935 exact=3.3870967741935483870967741935 amount=3.39 tiers=[]",
                "charge_13 q=172839.492 free=0.000 billable=172839.492 events=0 topUp=0 exact=136.4197460 amount=136.42 tiers=[1000 x 0 + 0 = 0; 99000 x 0.001 + 1 = 100.000; 72839.492 x 0.0005 + 0 = 36.4197460]",
                "charge_14 q=185185.170 free=100.000 billable=185085.170 events=0 topUp=0 exact=92542.5850 amount=92542.58 tiers=[185085.170 x 0.5 + 0 = 92542.5850]",
                "charge_15 q=197530.848 free=0.000 billable=197530.848 events=0 topUp=0 exact=495.0 amount=495.0 tiers=[]",
                "charge_16 q=209876.526 free=100.000 billable=209776.526 events=1006 topUp=0 exact=6385.319254 amount=6385.32 tiers=[]",
                "charge_17 q=222222.204 free=0.000 billable=222222.204 events=0 topUp=0 exact=4554.44408 amount=4554.44 tiers=[10000 x 0.03 + 0 = 300.00; 212222.204 x 0.02 + 10 = 4254.44408]",
            ]
        },
    };

    [Theory]
    [MemberData(nameof(TwentyLineInvoices))]
    public void RatePeriod_TwentyLineInvoice_SameDecimalsAsBefore(DateOnly activeFrom, string total, string[] expected)
    {
        var (plan, usage) = TwentyLinePlan();

        var invoice = Rater.RatePeriod(plan, March2026, activeFrom, March2026.End, usage);

        Assert.Equal(expected, invoice.Lines.Select(Describe));
        Assert.Equal(total, invoice.Total.ToString(CultureInfo.InvariantCulture));
    }

    [Fact]
    public void RatePeriod_DictionaryNotInChargeOrder_SameLinesAsInOrder()
    {
        var (plan, usage) = TwentyLinePlan();
        var reversed = new Dictionary<string, ChargeUsage>(usage.Reverse());
        var partial = new Dictionary<string, ChargeUsage>(usage);
        partial.Remove("meter_3");

        var inOrder = Rater.RatePeriod(plan, March2026, usage);
        var byCharge = Rater.RatePeriod(plan, March2026, March2026.Start, March2026.End, [.. plan.Charges.Select(c => usage[c.Meter.Code])]);

        AssertSameLines(inOrder.Lines, byCharge.Lines);
        AssertSameLines(inOrder.Lines, Rater.RatePeriod(plan, March2026, reversed).Lines);
        var withoutMeter3 = Rater.RatePeriod(plan, March2026, partial);
        Assert.Equal(0m, withoutMeter3.Lines.Single(l => l.MeterCode == "meter_3").Quantity);
        Assert.Equal(inOrder.Lines.Single(l => l.MeterCode == "meter_4"), withoutMeter3.Lines.Single(l => l.MeterCode == "meter_4"));
    }

    [Fact]
    public void UsageLine_TakesMeterModelAndBillableEventsFromItsCharge()
    {
        var charge = new Charge("cards", Payments, new PercentageModel(0.029m, 10, 0.30m)) { FreeUnits = 100m };
        var plan = Version() with { Charges = [charge] };

        var line = Rater.RatePeriod(plan, March2026, new Dictionary<string, ChargeUsage> { ["payments"] = new(1000.00m, 25) }).Lines.Single();

        Assert.Same(charge, line.Charge);
        Assert.Equal("payments", line.MeterCode);
        Assert.Same(charge.Model, line.Model);
        Assert.Equal(15, line.BillableEvents);        // 25 events, 10 free
        AssertSameBits(100.00m, line.FreeUnits);      // 1000.00 - 900.00
        AssertSameBits(900.00m, line.BillableQuantity);
        Assert.Empty(line.GetTiers());
    }

    [Fact]
    public void UsageLine_NoFreeUnits_FreeUnitsIsZeroAtTheQuantitysScale()
    {
        var plan = Version() with { Charges = [Charge(new StandardModel(0.01m))] };

        var line = Rater.RatePeriod(plan, March2026, Usage(("api_calls", 12.345m))).Lines.Single();

        AssertSameBits(0.000m, line.FreeUnits);
        Assert.Equal(0, line.BillableEvents);
    }

    [Fact]
    public void GetTiers_FeeAndTrueUpLines_Empty()
    {
        var plan = Version() with
        {
            FixedFees = [new FixedFee("base", 10m)],
            Charges = [Charge(new GraduatedModel(Tiers(new(10, 1m), new(null, 0.5m))))],
            MinimumCommitment = 100m,
        };

        var invoice = Rater.RatePeriod(plan, March2026, Usage(("api_calls", 15m)));

        Assert.Equal([LineKind.FixedFee, LineKind.Usage, LineKind.MinimumCommitmentTrueUp], invoice.Lines.Select(l => l.Kind));
        Assert.Empty(invoice.Lines[0].GetTiers());
        Assert.Empty(invoice.Lines[2].GetTiers());
        Assert.Null(invoice.Lines[0].Charge);
        Assert.Equal(2, invoice.Lines[1].GetTiers().Length);
        // usage 10 x 1 + 5 x 0.5 = 12.5; the commitment covers usage: true-up 100 - 12.5 = 87.5; total 10 + 12.5 + 87.5
        Assert.Equal(110m, invoice.Total);
    }

    [Fact]
    public void GetTiers_GraduatedLine_UnitsSumToBillableAndAmountsToTheChargeBeforeMinimumSpend()
    {
        // (0, 10] at 1.00 + flat 5; (10, 20] at 0.50 + flat 2; (20, inf) at 0.10; 2 free units, minimum spend 100.
        // 32.5 - 2 = 30.5 billable: 10 x 1.00 + 5 = 15; 10 x 0.50 + 2 = 7; 10.5 x 0.10 = 1.05; charge 23.05, topped up to 100.
        var charge = Charge(new GraduatedModel(Tiers(new(10, 1.00m, 5m), new(20, 0.50m, 2m), new(null, 0.10m))), freeUnits: 2m) with { MinimumSpend = 100m };
        var plan = Version() with { Charges = [charge] };

        var line = Rater.RatePeriod(plan, March2026, Usage(("api_calls", 32.5m))).Lines.Single();
        var tiers = line.GetTiers();

        Assert.Equal([10m, 10m, 10.5m], tiers.Select(t => t.Units));
        Assert.Equal([15m, 7m, 1.05m], tiers.Select(t => t.Amount));
        Assert.Equal(line.BillableQuantity, tiers.Sum(t => t.Units));
        Assert.Equal(23.05m, tiers.Sum(t => t.Amount));
        Assert.Equal(76.95m, line.MinimumSpendTopUp);
        Assert.Equal(100m, line.Amount);
        Assert.NotSame(ImmutableCollectionsMarshal.AsArray(tiers), ImmutableCollectionsMarshal.AsArray(line.GetTiers()));
        Assert.Equal(tiers.AsEnumerable(), line.GetTiers().AsEnumerable());
    }

    private static string Describe(InvoiceLine l)
    {
        var c = CultureInfo.InvariantCulture;
        var tiers = string.Join("; ", l.GetTiers().Select(t => string.Create(c, $"{t.Units} x {t.UnitPrice} + {t.FlatFee} = {t.Amount}")));
        return string.Create(c, $"{l.Code} q={l.Quantity} free={l.FreeUnits} billable={l.BillableQuantity} events={l.BillableEvents} topUp={l.MinimumSpendTopUp} exact={l.ExactAmount} amount={l.Amount} tiers=[{tiers}]");
    }
}
