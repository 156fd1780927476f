using System.Collections.Immutable;
using CsCheck;
using static AlphaMesh.Rating.Tests.TestPlans;

namespace AlphaMesh.Rating.Tests;

/// <summary>Random plans and quantities checked against plain oracles written here, independently of the library.</summary>
public sealed class PropertyTests
{
    // Quantities with up to 4 decimals, up to 10^9; prices with up to 12 decimals; flat fees in cents.
    private static readonly Gen<decimal> Quantity = Gen.Long[0, 1_000_000_000_0000].Select(x => x / 10_000m);
    private static readonly Gen<decimal> Price = Gen.Long[1, 10_000_000_000_000].Select(x => x / 1_000_000_000_000m);
    private static readonly Gen<decimal> FlatFee = Gen.Long[0, 10_000].Select(x => x / 100m);

    /// <summary>1 to 6 tiers with strictly increasing (possibly fractional) bounds; the last is unbounded.</summary>
    private static readonly Gen<ImmutableArray<Tier>> TierList =
        Gen.Select(Gen.Long[1, 1_000_000].Array[0, 5], Price.Array[6], FlatFee.Array[6]).Select((steps, prices, flats) =>
        {
            var tiers = ImmutableArray.CreateBuilder<Tier>();
            decimal bound = 0m;
            for (int i = 0; i < steps.Length; i++)
            {
                bound += steps[i] / 10m;
                tiers.Add(new Tier(bound, prices[i], flats[i]));
            }

            tiers.Add(new Tier(null, prices[steps.Length], flats[steps.Length]));
            return tiers.ToImmutable();
        });

    private static readonly Gen<ChargeModel> Model = Gen.OneOf<ChargeModel>(
        Price.Select(p => (ChargeModel)new StandardModel(p)),
        TierList.Select(t => (ChargeModel)new GraduatedModel(t)),
        TierList.Select(t => (ChargeModel)new VolumeModel(t)),
        Gen.Select(Gen.Long[1, 100_000].Select(x => x / 100m), Price).Select((size, price) => (ChargeModel)new PackageModel(size, price)),
        Gen.Select(Gen.Long[0, 100_000].Select(x => x / 100_000m), Gen.Long[0, 100], FlatFee).Select((rate, free, fee) => (ChargeModel)new PercentageModel(rate, free, fee)),
        TierList.Select(t => (ChargeModel)new GraduatedPercentageModel(t)));

    // ---- oracles: the rules of issue 4 read literally ----

    private static decimal GraduatedOracle(ImmutableArray<Tier> tiers, decimal q)
    {
        decimal total = 0m;
        decimal previousUpTo = 0m;
        for (int i = 0; i < tiers.Length; i++)
        {
            decimal upTo = tiers[i].UpTo ?? decimal.MaxValue;
            decimal units = Math.Max(Math.Min(q, upTo) - previousUpTo, 0m);
            bool entered = i == 0 || q > previousUpTo;
            total += (units * tiers[i].UnitPrice) + (entered ? tiers[i].FlatFee : 0m);
            previousUpTo = upTo;
        }

        return total;
    }

    private static decimal VolumeOracle(ImmutableArray<Tier> tiers, decimal q)
    {
        int i = 0;
        while (tiers[i].UpTo is { } upTo && q > upTo)
        {
            i++;
        }

        return (q * tiers[i].UnitPrice) + tiers[i].FlatFee;
    }

    private static decimal PackageOracle(decimal size, decimal price, decimal q)
    {
        decimal packages = Math.Floor(q / size);
        if (packages * size < q)
        {
            packages++;
        }

        return packages * price;
    }

    [Fact]
    public void Rate_Graduated_MatchesOracleAndTierUnitsSumToQuantity()
    {
        Gen.Select(TierList, Quantity).Sample((tiers, q) =>
        {
            var (result, lines) = RateWithTiers(Charge(new GraduatedModel(tiers)), q);

            Assert.Equal(GraduatedOracle(tiers, q), result.Amount);
            Assert.Equal(q, lines.Sum(l => l.Units));
            Assert.Equal(result.Amount, lines.Sum(l => l.Amount));
        });
    }

    [Fact]
    public void RatePeriod_GraduatedAndPackageLines_MatchOraclesAndChargeRater()
    {
        // Invoice lines are rated without a breakdown (graduated amounts from the model's precomputed tier totals,
        // package counts by integer division): the same decimal, scale included, as ChargeRater.Rate's tier-by-tier
        // path, and the oracles' value.
        var size = Gen.Long[1, 100_000].Select(x => x / 100m);
        Gen.Select(TierList, TierList, Gen.Select(size, Price), Quantity, Quantity).Sample((graduated, percentage, package, q, free) =>
        {
            var charges = ImmutableArray.Create(
                Charge(new GraduatedModel(graduated), free, new Meter("g", MeterAggregation.Sum)),
                Charge(new GraduatedPercentageModel(percentage), 0m, new Meter("p", MeterAggregation.Sum)),
                Charge(new PackageModel(package.Item1, package.Item2), free, new Meter("k", MeterAggregation.Sum)));
            var plan = Version() with { Charges = charges };
            var usage = new Dictionary<string, ChargeUsage> { ["g"] = new(q), ["p"] = new(q), ["k"] = new(q) };

            var lines = Rater.RatePeriod(plan, Month(2026, 5), usage, lines: LineSelection.Usage).Lines;

            decimal billable = Math.Max(q - free, 0m);
            Assert.Equal(GraduatedOracle(graduated, billable), lines[0].ExactAmount);
            Assert.Equal(GraduatedOracle(percentage, q), lines[1].ExactAmount);
            Assert.Equal(PackageOracle(package.Item1, package.Item2, billable), lines[2].ExactAmount);
            for (int i = 0; i < charges.Length; i++)
            {
                var (result, _) = RateWithTiers(charges[i], q);
                Assert.Equal(decimal.GetBits(result.Amount), decimal.GetBits(lines[i].ExactAmount));
            }
        });
    }

    [Fact]
    public void Rate_Volume_MatchesOracleAndSingleTierHoldsQuantity()
    {
        Gen.Select(TierList, Quantity).Sample((tiers, q) =>
        {
            var (result, lines) = RateWithTiers(Charge(new VolumeModel(tiers)), q);

            Assert.Equal(VolumeOracle(tiers, q), result.Amount);
            Assert.Equal(q, Assert.Single(lines).Units);
        });
    }

    [Fact]
    public void Rate_Package_MatchesOracle()
    {
        Gen.Select(Gen.Long[1, 100_000].Select(x => x / 100m), Price, Quantity, Quantity).Sample((size, price, free, q) =>
        {
            var result = Rate(Charge(new PackageModel(size, price), free), q);

            Assert.Equal(PackageOracle(size, price, Math.Max(q - free, 0m)), result.Amount);
        });
    }

    [Fact]
    public void Rate_NonVolumeModels_AmountNeverDecreasesAsQuantityGrows()
    {
        // Volume pricing is left out on purpose: crossing into a cheaper tier reprices every unit, so its amount
        // can drop (100 units at 1.00 = 100 > 101 units at 0.50 = 50.50). That cliff is what volume pricing means.
        var nonVolume = Model.Where(m => m is not VolumeModel);
        Gen.Select(nonVolume, Quantity, Quantity, Gen.Long[0, 1000]).Sample((model, a, b, events) =>
        {
            var charge = Charge(model);
            var (low, high) = a <= b ? (a, b) : (b, a);

            Assert.True(Rate(charge, low, events).Amount <= Rate(charge, high, events).Amount);
        });
    }

    [Fact]
    public void Rate_Percentage_AmountNeverDecreasesAsEventsGrow()
    {
        Gen.Select(Quantity, Gen.Long[0, 1_000_000], Gen.Long[0, 1_000_000], Gen.Long[0, 100], FlatFee).Sample((amount, e1, e2, free, fee) =>
        {
            var charge = Charge(new PercentageModel(0.029m, free, fee));
            var (low, high) = e1 <= e2 ? (e1, e2) : (e2, e1);

            Assert.True(Rate(charge, amount, low).Amount <= Rate(charge, amount, high).Amount);
        });
    }

    [Fact]
    public void GetTiers_AnyPlan_SameLinesAsChargeRaterAndSumsToTheLine()
    {
        // The line's breakdown is built on demand from its charge and billable quantity; it must be, decimal for decimal
        // (scale included), the breakdown ChargeRater.Rate writes while pricing the same usage.
        Gen.Select(Model.Array[1, 8], Quantity.Array[8], Quantity, Gen.Long[0, 1000]).Sample((models, quantities, free, events) =>
        {
            var charges = ImmutableArray.CreateBuilder<Charge>();
            var usage = new Dictionary<string, ChargeUsage>();
            for (int i = 0; i < models.Length; i++)
            {
                var meter = new Meter($"m{i}", MeterAggregation.Sum);
                charges.Add(new Charge($"c{i}", meter, models[i]) { FreeUnits = i % 2 == 0 ? free : 0m, MinimumSpend = i % 3 == 0 ? 5m : 0m });
                usage[meter.Code] = new ChargeUsage(quantities[i], events);
            }

            var plan = Version() with { Charges = charges.ToImmutable() };
            var invoice = Rater.RatePeriod(plan, Month(2026, 5), usage);

            for (int i = 0; i < models.Length; i++)
            {
                var line = invoice.Lines[i];
                var charge = plan.Charges[i];
                var rated = new TierLine[Math.Max(ChargeRater.MaxTierLines(charge.Model), 1)];
                var result = ChargeRater.Rate(charge, usage[charge.Meter.Code], rated);
                var tiers = line.GetTiers();

                Assert.Same(charge, line.Charge);
                AssertSameBits(result.BillableQuantity, line.BillableQuantity);
                Assert.Equal(result.BillableEvents, line.BillableEvents);
                Assert.Equal(line.Quantity - line.BillableQuantity, line.FreeUnits);
                Assert.Equal(result.TierCount, tiers.Length);
                for (int t = 0; t < tiers.Length; t++)
                {
                    AssertSameBits(rated[t], tiers[t]);
                }

                if (tiers.Length > 0)
                {
                    Assert.Equal(line.BillableQuantity, tiers.Sum(t => t.Units));
                    Assert.Equal(result.Amount, tiers.Sum(t => t.Amount));
                    Assert.Equal(line.ExactAmount - line.MinimumSpendTopUp, tiers.Sum(t => t.Amount));
                }
            }
        });
    }

    [Fact]
    public void RatePeriod_AnyPlan_DeterministicAndTotalIsSumOfRoundedLines()
    {
        string[] codes = ["JPY", "USD", "EUR", "BHD", "KWD", "CLF"];
        var currencies = Gen.Int[0, codes.Length - 1].Select(i => codes[i]);
        var modes = Gen.Int[0, 3].Select(i => (RoundingMode)i);
        Gen.Select(Model.Array[1, 20], Quantity.Array[20], currencies, modes).Sample((models, quantities, currency, mode) =>
        {
            var charges = ImmutableArray.CreateBuilder<Charge>();
            var usage = new Dictionary<string, ChargeUsage>();
            for (int i = 0; i < models.Length; i++)
            {
                var meter = new Meter($"m{i}", MeterAggregation.Sum);
                charges.Add(new Charge($"c{i}", meter, models[i]));
                usage[meter.Code] = new ChargeUsage(quantities[i], (long)Math.Min(quantities[i], 1_000_000m));
            }

            var plan = Version(currency) with { Charges = charges.ToImmutable() };
            var period = Month(2026, 5);
            var first = Rater.RatePeriod(plan, period, usage, mode);
            var second = Rater.RatePeriod(plan, period, usage, mode);

            AssertSameLines(first.Lines, second.Lines);
            Assert.Equal(first.Lines.Sum(l => l.Amount), first.Total);
            decimal minorUnit = 1m / (decimal)Math.Pow(10, Currency.Get(currency).MinorUnits);
            foreach (var line in first.Lines)
            {
                Assert.Equal(line.Amount, Math.Round(line.Amount, Currency.Get(currency).MinorUnits));
                Assert.True(Math.Abs(line.Amount - line.ExactAmount) < minorUnit);
            }
        });
    }
}
