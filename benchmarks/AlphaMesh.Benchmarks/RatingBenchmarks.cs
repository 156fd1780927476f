using System.Collections.Immutable;
using AlphaMesh.Rating;
using BenchmarkDotNet.Attributes;

namespace AlphaMesh.Benchmarks;

/// <summary>
/// The rating library (issue 4), per operation: one charge rated (the <see cref="Charge"/> group, baseline a graduated
/// charge into a caller span) or one whole 20-line invoice (the <see cref="Invoice"/> group: 2 fixed fees and 18 usage
/// charges of every model, free units and minimum spends, USD, half-even). Issue 4's targets: rating one tiered charge
/// allocates 0 B, at least 5,000,000 charge ratings/s on one core (under 200 ns each), a 20-line invoice under 2 µs.
/// </summary>
[BenchmarkCategory(Categories.Rating)]
public class RatingBenchmarks
{
    /// <summary>Sub-category: one charge rated.</summary>
    public const string Charge = "Charge";

    /// <summary>Sub-category: one 20-line invoice.</summary>
    public const string Invoice = "Invoice";

    private static readonly Meter Calls = new("api_calls", MeterAggregation.Count);

    private readonly TierLine[] _tiers = new TierLine[8];
    private readonly Charge _graduated = new("calls", Calls, new GraduatedModel(
    [
        new Tier(1_000, 0m, 0m),
        new Tier(100_000, 0.000012m, 1m),
        new Tier(10_000_000, 0.00001m, 5m),
        new Tier(null, 0.000008m),
    ]));

    private readonly Charge _standard = new("calls", Calls, new StandardModel(0.000012m)) { FreeUnits = 1000m };
    private readonly Charge _volume = new("seats", new Meter("seats", MeterAggregation.Max), new VolumeModel([new Tier(10, 8m), new Tier(100, 6m), new Tier(null, 4m)]));
    private readonly Charge _percentage = new("payments", new Meter("payments", MeterAggregation.Sum), new PercentageModel(0.029m, 10, 0.30m));
    private readonly ChargeUsage _usage = new(12_345_678.9m);
    private readonly ChargeUsage _payments = new(98_765.43m, 1234);

    private PlanVersion _plan = null!;
    private Dictionary<string, ChargeUsage> _invoiceUsage = null!;
    private Dictionary<string, ChargeUsage> _invoiceUsageReversed = null!;
    private ChargeUsage[] _usageByCharge = null!;
    private BillingPeriod _period;

    [GlobalSetup]
    public void Setup()
    {
        // 2 fixed fees + 18 usage charges of every model = 20 lines.
        var charges = ImmutableArray.CreateBuilder<Charge>();
        _invoiceUsage = [];
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
            _invoiceUsage[sum.Code] = new ChargeUsage(12_345.678m * (i + 1), 1000 + i);
        }

        _plan = new PlanVersion("pro", 1, "USD", new BillingInterval(BillingCadence.Monthly))
        {
            FixedFees = [new FixedFee("platform", 49m), new FixedFee("support", 19.99m, FeeTiming.InArrears)],
            Charges = charges.ToImmutable(),
            MinimumCommitment = 10m,
        };
        PlanValidator.EnsureValid(_plan);
        _usageByCharge = [.. _plan.Charges.Select(c => _invoiceUsage[c.Meter.Code])];
        _invoiceUsageReversed = new Dictionary<string, ChargeUsage>(_invoiceUsage.Reverse());
        _period = _plan.Interval.PeriodContaining(new DateOnly(2026, 3, 14), new DateOnly(2026, 1, 1));
    }

    [Benchmark(Baseline = true)]
    [BenchmarkCategory(Charge)]
    public decimal GraduatedCharge_IntoSpan() => ChargeRater.Rate(_graduated, _usage, _tiers).Amount;

    [Benchmark]
    [BenchmarkCategory(Charge)]
    public decimal StandardCharge() => ChargeRater.Rate(_standard, _usage, _tiers).Amount;

    [Benchmark]
    [BenchmarkCategory(Charge)]
    public decimal VolumeCharge_IntoSpan() => ChargeRater.Rate(_volume, _usage, _tiers).Amount;

    [Benchmark]
    [BenchmarkCategory(Charge)]
    public decimal PercentageCharge() => ChargeRater.Rate(_percentage, _payments, _tiers).Amount;

    /// <summary>The invoice: usage by meter code (a dictionary filled in the plan's charge order), the whole period.</summary>
    [Benchmark(Baseline = true)]
    [BenchmarkCategory(Invoice)]
    public decimal Invoice20Lines() => Rater.RatePeriod(_plan, _period, _invoiceUsage).Total;

    [Benchmark]
    [BenchmarkCategory(Invoice)]
    public decimal Invoice20Lines_UsageInChargeOrder() =>
        Rater.RatePeriod(_plan, _period, _period.Start, _period.End, _usageByCharge).Total;

    /// <summary>The same with the dictionary filled in the reverse order of the charges: one lookup per charge.</summary>
    [Benchmark]
    [BenchmarkCategory(Invoice)]
    public decimal Invoice20Lines_UsageNotInChargeOrder() => Rater.RatePeriod(_plan, _period, _invoiceUsageReversed).Total;

    [Benchmark]
    [BenchmarkCategory(Invoice)]
    public decimal Invoice20Lines_Prorated() =>
        Rater.RatePeriod(_plan, _period, new DateOnly(2026, 3, 11), _period.End, _invoiceUsage).Total;
}
