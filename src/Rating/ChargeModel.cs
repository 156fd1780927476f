using System.Collections.Immutable;
using AlphaMesh.Rating.Internal;

namespace AlphaMesh.Rating;

/// <summary>
/// A tier of a tiered model. Tiers are listed in order of their inclusive upper bound; the last tier has
/// no bound (<see cref="UpTo"/> is null).
/// </summary>
/// <param name="UpTo">Inclusive upper bound of the tier, or null for the last tier.</param>
/// <param name="UnitPrice">Price per unit in the tier; for graduated percentage, the rate (0.029 is 2.9%).</param>
/// <param name="FlatFee">Charged once when the tier is entered.</param>
public readonly record struct Tier(decimal? UpTo, decimal UnitPrice, decimal FlatFee = 0m);

/// <summary>How a charge turns a quantity into an amount. The models are the sealed records below.</summary>
public abstract record ChargeModel
{
    private protected ChargeModel()
    {
    }

    /// <summary>Short name used in lines and messages (for example <c>graduated</c>).</summary>
    public abstract string Name { get; }
}

/// <summary><c>q * UnitPrice</c>.</summary>
public sealed record StandardModel(decimal UnitPrice) : ChargeModel
{
    public override string Name => "standard";
}

/// <summary>
/// Graduated tiers: the units in tier i are <c>min(q, upTo_i) - upTo_{i-1}</c>, each priced at the tier's unit
/// price; a tier's flat fee is charged when the tier is entered (q above the previous bound), the first tier's
/// even at q = 0.
/// </summary>
public sealed record GraduatedModel(ImmutableArray<Tier> Tiers) : ChargeModel
{
    private FullTierTotals? _totals;

    public override string Name => "graduated";

    /// <summary>The exact totals of the tiers a quantity has passed through, worked out on first use.</summary>
    internal FullTierTotals Totals => FullTierTotals.For(Tiers, ref _totals);

    /// <inheritdoc />
    public bool Equals(GraduatedModel? other) => base.Equals(other) && Tiers.Equals(other.Tiers);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(base.GetHashCode(), Tiers);
}

/// <summary>
/// Volume tiers: the single tier that q falls in (<c>q &lt;= upTo</c>) prices every unit, plus that tier's
/// flat fee. q = 0 falls in the first tier, so its flat fee is charged.
/// </summary>
public sealed record VolumeModel(ImmutableArray<Tier> Tiers) : ChargeModel
{
    public override string Name => "volume";
}

/// <summary><c>ceil(q / PackageSize) * PackagePrice</c>, q after the charge's free units.</summary>
public sealed record PackageModel(decimal PackageSize, decimal PackagePrice) : ChargeModel
{
    public override string Name => "package";
}

/// <summary>
/// A rate applied to a summed amount (payment volume, for example), after the charge's free units (the free
/// amount), plus <see cref="FixedFeePerEvent"/> for each event after the first <see cref="FreeEvents"/>.
/// </summary>
/// <param name="Rate">A fraction: 0.029 is 2.9%.</param>
/// <param name="FreeEvents">Events that pay no fixed fee.</param>
/// <param name="FixedFeePerEvent">Fee per event beyond the free events (needs the event count).</param>
public sealed record PercentageModel(decimal Rate, long FreeEvents = 0, decimal FixedFeePerEvent = 0m) : ChargeModel
{
    public override string Name => "percentage";
}

/// <summary>
/// Percentage rates by tier of amount, graduated like <see cref="GraduatedModel"/>: each tier's
/// <see cref="Tier.UnitPrice"/> is the rate applied to the part of the amount in that tier, plus its flat fee.
/// </summary>
public sealed record GraduatedPercentageModel(ImmutableArray<Tier> Tiers) : ChargeModel
{
    private FullTierTotals? _totals;

    public override string Name => "graduated_percentage";

    /// <inheritdoc cref="GraduatedModel.Totals"/>
    internal FullTierTotals Totals => FullTierTotals.For(Tiers, ref _totals);

    /// <inheritdoc />
    public bool Equals(GraduatedPercentageModel? other) => base.Equals(other) && Tiers.Equals(other.Tiers);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(base.GetHashCode(), Tiers);
}
