using System.Collections.Immutable;

namespace AlphaMesh.Rating.Tests;

/// <summary>Small builders shared by the tests.</summary>
internal static class TestPlans
{
    public static readonly Meter ApiCalls = new("api_calls", MeterAggregation.Count);
    public static readonly Meter Payments = new("payments", MeterAggregation.Sum);

    public static Charge Charge(ChargeModel model, decimal freeUnits = 0m, Meter? meter = null) =>
        new("c", meter ?? (model is PercentageModel or GraduatedPercentageModel ? Payments : ApiCalls), model) { FreeUnits = freeUnits };

    public static ImmutableArray<Tier> Tiers(params Tier[] tiers) => [.. tiers];

    public static PlanVersion Version(string currency = "USD", int version = 1) =>
        new("pro", version, currency, new BillingInterval(BillingCadence.Monthly));

    public static Dictionary<string, ChargeUsage> Usage(params (string Meter, decimal Quantity)[] usage)
    {
        var result = new Dictionary<string, ChargeUsage>();
        foreach (var (meter, quantity) in usage)
        {
            result[meter] = new ChargeUsage(quantity);
        }

        return result;
    }

    public static ChargeResult Rate(Charge charge, decimal quantity, long events = 0) =>
        ChargeRater.Rate(charge, new ChargeUsage(quantity, events), new TierLine[Math.Max(ChargeRater.MaxTierLines(charge.Model), 1)]);

    public static (ChargeResult Result, TierLine[] Tiers) RateWithTiers(Charge charge, decimal quantity)
    {
        var tiers = new TierLine[Math.Max(ChargeRater.MaxTierLines(charge.Model), 1)];
        var result = ChargeRater.Rate(charge, new ChargeUsage(quantity), tiers);
        return (result, tiers[..result.TierCount]);
    }

    /// <summary>Lines compared by value, tier breakdown included (ImmutableArray compares by reference).</summary>
    public static void AssertSameLines(IReadOnlyList<InvoiceLine> expected, IReadOnlyList<InvoiceLine> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i], actual[i]);
            Assert.Equal(expected[i].GetTiers().AsEnumerable(), actual[i].GetTiers().AsEnumerable());
        }
    }

    /// <summary>The same decimal, scale and sign included (<see cref="Assert.Equal{T}(T, T)"/> compares values: 1.0 equals 1.00).</summary>
    public static void AssertSameBits(decimal expected, decimal actual) =>
        Assert.Equal(decimal.GetBits(expected), decimal.GetBits(actual));

    /// <summary>The same tier line, every decimal with the same bits.</summary>
    public static void AssertSameBits(TierLine expected, TierLine actual)
    {
        Assert.Equal(expected.Tier, actual.Tier);
        AssertSameBits(expected.From, actual.From);
        Assert.Equal(expected.UpTo.HasValue, actual.UpTo.HasValue);
        AssertSameBits(expected.UpTo.GetValueOrDefault(), actual.UpTo.GetValueOrDefault());
        AssertSameBits(expected.Units, actual.Units);
        AssertSameBits(expected.UnitPrice, actual.UnitPrice);
        AssertSameBits(expected.FlatFee, actual.FlatFee);
        AssertSameBits(expected.Amount, actual.Amount);
    }

    public static BillingPeriod Month(int year, int month) =>
        new(new DateOnly(year, month, 1), new DateOnly(year, month, 1).AddMonths(1));
}
