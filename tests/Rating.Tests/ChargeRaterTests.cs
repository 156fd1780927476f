using static AlphaMesh.Rating.Tests.TestPlans;

namespace AlphaMesh.Rating.Tests;

public sealed class ChargeRaterTests
{
    // Tiers: (0, 10] at 1.00 + flat 5; (10, 20] at 0.50 + flat 2; (20, ∞) at 0.10.
    private static readonly Charge Graduated = Charge(new GraduatedModel(Tiers(new(10, 1.00m, 5m), new(20, 0.50m, 2m), new(null, 0.10m))));

    public static TheoryData<decimal, decimal, int> GraduatedCases => new()
    {
        { 0m, 5m, 1 },                          // only the first tier's flat fee
        { 1m, 6m, 1 },
        { 10m, 15m, 1 },                        // exactly at upTo: tier 2 not entered
        { 10.5m, 17.25m, 2 },                   // 15 + 0.5 * 0.50 + 2
        { 20m, 22m, 2 },                        // 15 + 10 * 0.50 + 2
        { 20.000001m, 22.0000001m, 3 },         // 22 + 0.000001 * 0.10
        { 1_000_000_000_000m, 100_000_000_020m, 3 }, // 22 + (10^12 - 20) * 0.10
    };

    [Theory]
    [MemberData(nameof(GraduatedCases))]
    public void Rate_Graduated_PricesEachTierAndSumsUnitsToQuantity(decimal q, decimal expected, int tierCount)
    {
        var (result, tiers) = RateWithTiers(Graduated, q);

        Assert.Equal(expected, result.Amount);
        Assert.Equal(tierCount, result.TierCount);
        Assert.Equal(q, tiers.Sum(t => t.Units));
        Assert.Equal(result.Amount, tiers.Sum(t => t.Amount));
    }

    [Fact]
    public void Rate_GraduatedFractionalAboveBound_PutsFractionInNextTier()
    {
        var (_, tiers) = RateWithTiers(Graduated, 10.5m);

        Assert.Equal(new TierLine(1, 0m, 10m, 10m, 1.00m, 5m, 15m), tiers[0]);
        Assert.Equal(new TierLine(2, 10m, 20m, 0.5m, 0.50m, 2m, 2.25m), tiers[1]);
    }

    // Tiers: (0, 100] at 1.00 + flat 10; (100, 1000] at 0.80; (1000, ∞) at 0.50.
    private static readonly Charge Volume = Charge(new VolumeModel(Tiers(new(100, 1.00m, 10m), new(1000, 0.80m), new(null, 0.50m))));

    public static TheoryData<decimal, decimal, int> VolumeCases => new()
    {
        { 0m, 10m, 1 },                         // q = 0 falls in the first tier: its flat fee
        { 100m, 110m, 1 },                      // exactly at upTo: still tier 1
        { 100.5m, 80.4m, 2 },                   // just above: every unit at 0.80
        { 1000m, 800m, 2 },
        { 1000.000001m, 500.0000005m, 3 },
        { 1_000_000_000_000m, 500_000_000_000m, 3 },
    };

    [Theory]
    [MemberData(nameof(VolumeCases))]
    public void Rate_Volume_PricesEveryUnitInTheTierQuantityFallsIn(decimal q, decimal expected, int tier)
    {
        var (result, tiers) = RateWithTiers(Volume, q);

        Assert.Equal(expected, result.Amount);
        Assert.Equal(tier, Assert.Single(tiers).Tier);
        Assert.Equal(q, tiers[0].Units);
    }

    public static TheoryData<decimal, decimal, decimal> PackageCases => new()
    {
        // free units, q, expected: ceil(max(q - free, 0) / 100) * 5
        { 0m, 0m, 0m },
        { 0m, 1m, 5m },
        { 0m, 100m, 5m },
        { 0m, 100.5m, 10m },
        { 0m, 1_000_000_000_000m, 50_000_000_000m },
        { 50m, 30m, 0m },
        { 50m, 150m, 5m },
        { 50m, 150.01m, 10m },
    };

    [Theory]
    [MemberData(nameof(PackageCases))]
    public void Rate_Package_ChargesWholePackagesAfterFreeUnits(decimal free, decimal q, decimal expected)
    {
        var charge = Charge(new PackageModel(100m, 5m), free);

        Assert.Equal(expected, Rate(charge, q).Amount);
    }

    public static TheoryData<decimal, decimal, decimal, decimal> StandardCases => new()
    {
        // unit price, free units, q, expected
        { 0.000012m, 0m, 0m, 0m },
        { 0.000012m, 0m, 1m, 0.000012m },
        { 0.000012m, 0m, 1_000_000_000_000m, 12_000_000m },
        { 0.000000000001m, 0m, 3m, 0.000000000003m },      // 12 decimal places survive
        { 0.40m, 0m, 2.5m, 1.00m },
        { 2m, 1000m, 999m, 0m },                           // inside the free allowance
        { 2m, 1000m, 1000.25m, 0.5m },
    };

    [Theory]
    [MemberData(nameof(StandardCases))]
    public void Rate_Standard_MultipliesBillableUnitsByPrice(decimal unitPrice, decimal free, decimal q, decimal expected)
    {
        var result = Rate(Charge(new StandardModel(unitPrice), free), q);

        Assert.Equal(expected, result.Amount);
        Assert.Equal(0, result.TierCount);
    }

    public static TheoryData<decimal, long, decimal, long, decimal> PercentageCases => new()
    {
        // free amount, free events, amount, events, expected = rate 2.9% of (amount - free) + 0.30 x (events - free events)
        { 0m, 0, 0m, 0, 0m },
        { 0m, 0, 1000m, 10, 32m },             // 29 + 3
        { 100m, 5, 1000m, 10, 27.6m },         // 900 * 0.029 = 26.1, + 5 * 0.30
        { 100m, 5, 50m, 3, 0m },               // all free
        { 0m, 0, 1_000_000_000_000m, 1_000_000, 29_000_300_000m },
    };

    [Theory]
    [MemberData(nameof(PercentageCases))]
    public void Rate_Percentage_AppliesRateAndPerEventFee(decimal freeAmount, long freeEvents, decimal amount, long events, decimal expected)
    {
        var charge = Charge(new PercentageModel(0.029m, freeEvents, 0.30m), freeAmount);

        Assert.Equal(expected, Rate(charge, amount, events).Amount);
    }

    public static TheoryData<decimal, decimal> GraduatedPercentageCases => new()
    {
        // (0, 10000] at 3%; above at 2% + flat 10 when entered
        { 0m, 0m },
        { 10000m, 300m },
        { 10000.01m, 310.0002m },              // 300 + 0.01 * 0.02 + 10
        { 15000m, 410m },                      // 300 + 5000 * 0.02 + 10
    };

    [Theory]
    [MemberData(nameof(GraduatedPercentageCases))]
    public void Rate_GraduatedPercentage_AppliesEachTiersRate(decimal amount, decimal expected)
    {
        var charge = Charge(new GraduatedPercentageModel(Tiers(new(10000, 0.03m), new(null, 0.02m, 10m))));

        var (result, tiers) = RateWithTiers(charge, amount);

        Assert.Equal(expected, result.Amount);
        Assert.Equal(amount, tiers.Sum(t => t.Units));
    }

    [Fact]
    public void Rate_GraduatedWithFreeUnits_TiersStartAfterTheAllowance()
    {
        var charge = Graduated with { FreeUnits = 5m };

        var (result, tiers) = RateWithTiers(charge, 15m);

        Assert.Equal(10m, result.BillableQuantity);
        Assert.Equal(15m, result.Amount);   // 10 billable units: 10 * 1.00 + 5
        Assert.Equal(10m, tiers.Sum(t => t.Units));
    }

    [Fact]
    public void Rate_NegativeQuantity_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Rate(Graduated, -1m));
    }

    [Fact]
    public void Rate_BreakdownSpanTooShort_Throws()
    {
        Assert.Throws<ArgumentException>(() => ChargeRater.Rate(Graduated, new ChargeUsage(15m), new TierLine[1]));
    }

    [Fact]
    public void MaxTierLines_TieredAndUntiered_GivesBreakdownSize()
    {
        Assert.Equal(3, ChargeRater.MaxTierLines(Graduated.Model));
        Assert.Equal(1, ChargeRater.MaxTierLines(Volume.Model));
        Assert.Equal(0, ChargeRater.MaxTierLines(new StandardModel(1m)));
    }

    [Theory]
    [InlineData(5, "5")]       // first tier
    [InlineData(100, "910")]   // 10 * 1 + 90 * 10: past the first tier, from its precomputed total
    public void RatePeriod_TierTooLargeForADecimal_RatesBelowItAsBefore(int quantity, string expected)
    {
        // Tier 2 in full, (10^28 - 10) * 10, does not fit in a decimal, so no total is kept for it; a quantity below it
        // still rates, on the invoice path (no breakdown) as on ChargeRater.Rate's tier-by-tier path.
        var charge = Charge(new GraduatedModel(Tiers(new(10, 1m), new(10_000_000_000_000_000_000_000_000_000m, 10m), new(null, 1m))));
        var plan = Version() with { Charges = [charge] };

        var line = Rater.RatePeriod(plan, Month(2026, 5), new Dictionary<string, ChargeUsage> { [charge.Meter.Code] = new(quantity) }).Lines.Single(l => l.Kind == LineKind.Usage);

        Assert.Equal(decimal.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), line.ExactAmount);
        Assert.Equal(RateWithTiers(charge, quantity).Result.Amount, line.ExactAmount);
    }

    [Fact]
    public void RatePeriod_QuantityInTierTooLargeForADecimal_ThrowsOverflowLikeTheBreakdown()
    {
        var charge = Charge(new GraduatedModel(Tiers(new(10, 1m), new(10_000_000_000_000_000_000_000_000_000m, 10m), new(null, 1m))));
        var plan = Version() with { Charges = [charge] };
        var usage = new Dictionary<string, ChargeUsage> { [charge.Meter.Code] = new(20_000_000_000_000_000_000_000_000_000m) };

        Assert.Throws<OverflowException>(() => Rater.RatePeriod(plan, Month(2026, 5), usage));
        Assert.Throws<OverflowException>(() => RateWithTiers(charge, 20_000_000_000_000_000_000_000_000_000m));
    }

    [Fact]
    public void RatePeriod_ModelCopiedWithOtherTiers_RatesWithTheNewTiers()
    {
        // The first model's tier totals are worked out on its first rating; a copy made with 'with' must not reuse them.
        var first = new GraduatedModel(Tiers(new(10, 1m), new(null, 2m)));
        var copy = first with { Tiers = Tiers(new(10, 3m), new(null, 4m)) };
        var plan = Version() with { Charges = [Charge(first)] };
        var usage = new Dictionary<string, ChargeUsage> { [plan.Charges[0].Meter.Code] = new(15m) };

        decimal before = Rater.RatePeriod(plan, Month(2026, 5), usage, lines: LineSelection.Usage).Total;
        decimal after = Rater.RatePeriod(plan with { Charges = [Charge(copy)] }, Month(2026, 5), usage, lines: LineSelection.Usage).Total;

        Assert.Equal(20m, before); // 10 * 1 + 5 * 2
        Assert.Equal(50m, after);  // 10 * 3 + 5 * 4
    }

    [Fact]
    public void Equals_SameTiersOneModelRated_EqualAndSameHash()
    {
        var tiers = Tiers(new(10, 1m), new(null, 2m));
        var rated = new GraduatedModel(tiers);
        var fresh = new GraduatedModel(tiers);
        _ = Rater.RatePeriod(Version() with { Charges = [Charge(rated)] }, Month(2026, 5), new Dictionary<string, ChargeUsage>());

        Assert.Equal(fresh, rated);
        Assert.Equal(fresh.GetHashCode(), rated.GetHashCode());
        Assert.NotEqual(new GraduatedModel(Tiers(new(10, 1m), new(null, 2m))), rated); // other tier list: as before, compared by reference
        Assert.Equal(new GraduatedPercentageModel(tiers), new GraduatedPercentageModel(tiers));
    }
}
