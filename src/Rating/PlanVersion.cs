using System.Collections.Immutable;

namespace AlphaMesh.Rating;

/// <summary>When a recurring fixed fee is invoiced: at the start of the period it pays for, or at its end.</summary>
public enum FeeTiming
{
    InAdvance = 0,
    InArrears = 1,
}

/// <summary>A recurring fee charged every period, prorated by days for partial periods.</summary>
public sealed record FixedFee(string Code, decimal Amount, FeeTiming Timing = FeeTiming.InAdvance);

/// <summary>
/// The price of one meter's usage. <see cref="FreeUnits"/> are included before pricing starts (for percentage
/// models: the free amount); <see cref="MinimumSpend"/> is the least the charge costs in a full period.
/// </summary>
public sealed record Charge(string Code, Meter Meter, ChargeModel Model)
{
    public decimal FreeUnits { get; init; }

    public decimal MinimumSpend { get; init; }
}

/// <summary>A feature limit: at most <see cref="Limit"/> of the meter per billing period (checked by the aggregator).</summary>
public readonly record struct Entitlement(string MeterCode, decimal Limit);

/// <summary>
/// One immutable version of a plan: everything that prices a subscription. Invoices name the version they were
/// rated with, so a newer version never changes them.
/// </summary>
public sealed record PlanVersion(string PlanCode, int Version, string CurrencyCode, BillingInterval Interval)
{
    public ImmutableArray<FixedFee> FixedFees { get; init; } = [];

    /// <summary>At most one charge per meter.</summary>
    public ImmutableArray<Charge> Charges { get; init; } = [];

    /// <summary>The least the usage charges of a full period add up to; a shortfall becomes a true-up line.</summary>
    public decimal? MinimumCommitment { get; init; }

    public ImmutableArray<Entitlement> Entitlements { get; init; } = [];
}

/// <summary>A plan: a code and its versions, oldest first. Immutable: adding a version returns a new plan.</summary>
public sealed class Plan
{
    private Plan(string code, ImmutableArray<PlanVersion> versions)
    {
        Code = code;
        Versions = versions;
    }

    public string Code { get; }

    public ImmutableArray<PlanVersion> Versions { get; }

    public PlanVersion Latest => Versions[^1];

    /// <summary>Creates a plan from its first version, which must be valid and numbered 1.</summary>
    /// <exception cref="PlanValidationException">The version is not valid.</exception>
    public static Plan Create(PlanVersion first)
    {
        ArgumentNullException.ThrowIfNull(first);
        PlanValidator.EnsureValid(first);
        if (first.Version != 1)
        {
            throw new PlanValidationException([new PlanValidationError("version", $"the first version of a plan is 1, not {first.Version}")]);
        }

        return new Plan(first.PlanCode, [first]);
    }

    /// <summary>
    /// Returns a plan with <paramref name="next"/> added. It must be valid, have this plan's code and currency and
    /// the next version number. Earlier versions are untouched.
    /// </summary>
    /// <exception cref="PlanValidationException">The version is not valid or does not follow the latest one.</exception>
    public Plan AddVersion(PlanVersion next)
    {
        ArgumentNullException.ThrowIfNull(next);
        PlanValidator.EnsureValid(next);
        var latest = Latest;
        var errors = new List<PlanValidationError>();
        if (next.PlanCode != Code)
        {
            errors.Add(new("planCode", $"version belongs to plan '{next.PlanCode}', not '{Code}'"));
        }

        if (next.Version != latest.Version + 1)
        {
            errors.Add(new("version", $"the next version of plan '{Code}' is {latest.Version + 1}, not {next.Version}"));
        }

        if (next.CurrencyCode != latest.CurrencyCode)
        {
            errors.Add(new("currency", $"plan '{Code}' is priced in {latest.CurrencyCode}; a version cannot change it to {next.CurrencyCode}"));
        }

        return errors.Count > 0 ? throw new PlanValidationException(errors) : new Plan(Code, Versions.Add(next));
    }

    /// <summary>The version numbered <paramref name="version"/>.</summary>
    public PlanVersion GetVersion(int version)
    {
        foreach (var v in Versions)
        {
            if (v.Version == version)
            {
                return v;
            }
        }

        throw new ArgumentOutOfRangeException(nameof(version), version, $"Plan '{Code}' has no version {version}.");
    }
}
