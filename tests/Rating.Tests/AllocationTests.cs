using static AlphaMesh.Rating.Tests.TestPlans;

namespace AlphaMesh.Rating.Tests;

/// <summary>The allocation budget of the hot path (issue 4: rating one tiered charge allocates 0 B). No timings here.</summary>
public sealed class AllocationTests
{
    public static TheoryData<string> Models => ["graduated", "volume", "standard", "package", "percentage", "graduated_percentage"];

    [Theory]
    [MemberData(nameof(Models))]
    public void Rate_IntoCallerSpan_AllocatesNothing(string name)
    {
        var tiers = Tiers(new(1_000, 0m), new(100_000, 0.000012m, 1m), new(null, 0.00001m));
        ChargeModel model = name switch
        {
            "graduated" => new GraduatedModel(tiers),
            "volume" => new VolumeModel(tiers),
            "standard" => new StandardModel(0.000012m),
            "package" => new PackageModel(1000m, 2.5m),
            "percentage" => new PercentageModel(0.029m, 10, 0.30m),
            _ => new GraduatedPercentageModel(tiers),
        };
        var charge = Charge(model, freeUnits: 10m);
        var usage = new ChargeUsage(123_456.789m, 1234);
        var breakdown = new TierLine[3];
        ChargeRater.Rate(charge, usage, breakdown);

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1_000; i++)
        {
            ChargeRater.Rate(charge, usage, breakdown);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
