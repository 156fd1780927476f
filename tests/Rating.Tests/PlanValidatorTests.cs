using static AlphaMesh.Rating.Tests.TestPlans;

namespace AlphaMesh.Rating.Tests;

public sealed class PlanValidatorTests
{
    private static PlanVersion WithCharge(ChargeModel model, Meter? meter = null) =>
        Version() with { Charges = [new Charge("api", meter ?? ApiCalls, model)] };

    public static TheoryData<string, PlanVersion, string, string> InvalidPlans => new()
    {
        { "tiers out of order", WithCharge(new GraduatedModel(Tiers(new(20, 1m), new(10, 1m), new(null, 1m)))), "charges[api].tiers[2]", "tiers out of order: upTo 10 is below tier 1's upTo 20" },
        { "bounded last tier", WithCharge(new VolumeModel(Tiers(new(10, 1m), new(20, 1m)))), "charges[api].tiers[2]", "the last tier must be unbounded" },
        { "duplicate bounds", WithCharge(new GraduatedModel(Tiers(new(10, 1m), new(10, 2m), new(null, 1m)))), "charges[api].tiers[2]", "duplicate bound: upTo 10" },
        { "unbounded middle tier", WithCharge(new GraduatedModel(Tiers(new(null, 1m), new(null, 2m)))), "charges[api].tiers[1]", "only the last tier may be unbounded" },
        { "no tiers", WithCharge(new GraduatedModel([])), "charges[api]", "at least one tier" },
        { "negative unit price", WithCharge(new StandardModel(-0.01m)), "charges[api]", "negative unit price -0.01" },
        { "negative tier price", WithCharge(new GraduatedModel(Tiers(new(10, -1m), new(null, 1m)))), "charges[api].tiers[1]", "negative unit price -1" },
        { "negative flat fee", WithCharge(new VolumeModel(Tiers(new Tier(null, 1m, -5m)))), "charges[api].tiers[1]", "negative flat fee -5" },
        { "package size 0", WithCharge(new PackageModel(0m, 5m)), "charges[api]", "package size must be greater than 0" },
        { "negative package size", WithCharge(new PackageModel(-1m, 5m)), "charges[api]", "package size must be greater than 0; got -1" },
        { "unknown currency", Version("ABC"), "currency", "'ABC' is not an ISO 4217 currency code" },
        { "percentage on COUNT", WithCharge(new PercentageModel(0.01m)), "charges[api]", "a percentage charge cannot price meter 'api_calls' (Count)" },
        { "graduated percentage on MAX", WithCharge(new GraduatedPercentageModel(Tiers(new Tier(null, 0.01m))), new Meter("m", MeterAggregation.Max)), "charges[api]", "graduated_percentage charge cannot price meter 'm' (Max)" },
        { "package on AVG", WithCharge(new PackageModel(10m, 1m), new Meter("m", MeterAggregation.Avg)), "charges[api]", "a package charge cannot price meter 'm' (Avg)" },
        { "rate as percent", WithCharge(new PercentageModel(2.9m), Payments), "charges[api]", "rate 2.9 is above 1" },
        { "negative fixed fee", Version() with { FixedFees = [new FixedFee("base", -1m)] }, "fixedFees[base]", "negative amount -1" },
        { "two charges on a meter", Version() with { Charges = [new Charge("a", ApiCalls, new StandardModel(1m)), new Charge("b", ApiCalls, new StandardModel(2m))] }, "charges[b]", "meter 'api_calls' already has a charge" },
        { "negative commitment", Version() with { MinimumCommitment = -1m }, "minimumCommitment", "must not be negative" },
        { "negative entitlement", Version() with { Entitlements = [new Entitlement("api_calls", -1m)] }, "entitlements[api_calls]", "negative limit" },
    };

    [Theory]
    [MemberData(nameof(InvalidPlans))]
    public void Validate_InvalidPlan_NamesThePlaceAndTheProblem(string scenario, PlanVersion plan, string path, string message)
    {
        var errors = PlanValidator.Validate(plan);

        Assert.True(errors.Any(e => e.Path == path && e.Message.Contains(message, StringComparison.Ordinal)),
            $"{scenario}: expected '{path}: ...{message}...' in [{string.Join(" | ", errors)}]");
    }

    [Theory]
    [InlineData(MeterAggregation.Sum)]
    [InlineData(MeterAggregation.Count)]
    [InlineData(MeterAggregation.Min)]
    [InlineData(MeterAggregation.Max)]
    [InlineData(MeterAggregation.Avg)]
    [InlineData(MeterAggregation.Latest)]
    [InlineData(MeterAggregation.UniqueCount)]
    [InlineData(MeterAggregation.TimeWeightedSum)]
    public void Accepts_StandardModel_EveryAggregation(MeterAggregation aggregation)
    {
        Assert.True(PlanValidator.Accepts(new StandardModel(1m), aggregation));
    }

    [Fact]
    public void Validate_FullValidPlan_NoErrors()
    {
        var plan = Version("EUR") with
        {
            FixedFees = [new FixedFee("base", 49m), new FixedFee("support", 10m, FeeTiming.InArrears)],
            Charges =
            [
                new Charge("calls", ApiCalls, new GraduatedModel(Tiers(new(1000, 0m, 0m), new(100000, 0.001m, 1m), new(null, 0.0005m)))) { FreeUnits = 100m, MinimumSpend = 5m },
                new Charge("seats", new Meter("seats", MeterAggregation.Max), new VolumeModel(Tiers(new(10, 8m), new(null, 6m)))),
                new Charge("storage", new Meter("storage_gb", MeterAggregation.TimeWeightedSum), new PackageModel(100m, 2m)),
                new Charge("payments", Payments, new PercentageModel(0.029m, 10, 0.30m)),
            ],
            MinimumCommitment = 100m,
            Entitlements = [new Entitlement("api_calls", 1_000_000m)],
        };

        Assert.Empty(PlanValidator.Validate(plan));
    }

    [Fact]
    public void AddVersion_Valid_KeepsOldVersionsUnchanged()
    {
        var v1 = Version() with { FixedFees = [new FixedFee("base", 10m)] };
        var plan = Plan.Create(v1);

        var next = plan.AddVersion(v1 with { Version = 2, FixedFees = [new FixedFee("base", 12m)] });

        Assert.Single(plan.Versions);
        Assert.Equal(2, next.Versions.Length);
        Assert.Equal(10m, next.GetVersion(1).FixedFees[0].Amount);
        Assert.Equal(12m, next.Latest.FixedFees[0].Amount);
    }

    [Fact]
    public void AddVersion_OtherCurrencyOrSkippedNumber_Throws()
    {
        var plan = Plan.Create(Version());

        var error = Assert.Throws<PlanValidationException>(() => plan.AddVersion(Version("EUR", 3)));

        Assert.Contains(error.Errors, e => e.Path == "version" && e.Message.Contains("is 2, not 3", StringComparison.Ordinal));
        Assert.Contains(error.Errors, e => e.Path == "currency");
    }

    [Fact]
    public void Create_InvalidVersion_ThrowsWithEveryProblem()
    {
        var bad = Version("XYZ") with { Charges = [new Charge("p", ApiCalls, new PackageModel(0m, -1m))] };

        var error = Assert.Throws<PlanValidationException>(() => Plan.Create(bad));

        Assert.Equal(3, error.Errors.Count);   // currency, package size, package price
        Assert.Contains("package size must be greater than 0", error.Message);
    }
}
