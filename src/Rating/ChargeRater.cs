using System.Runtime.CompilerServices;
using AlphaMesh.Rating.Internal;

namespace AlphaMesh.Rating;

/// <summary>The usage of one charge in a period.</summary>
/// <param name="Quantity">The meter's aggregate: units, or for percentage models the summed amount. Never negative.</param>
/// <param name="EventCount">Number of events behind the quantity; used by percentage models (free events, fee per event).</param>
public readonly record struct ChargeUsage(decimal Quantity, long EventCount = 0)
{
    public static ChargeUsage Zero => default;
}

/// <summary>One tier's part of a tiered charge.</summary>
/// <param name="Tier">1-based tier number.</param>
/// <param name="From">The tier's exclusive lower bound (the previous tier's upTo, 0 for the first).</param>
/// <param name="UpTo">The tier's inclusive upper bound; null for the last tier.</param>
/// <param name="Units">Units priced in this tier (for percentage tiers: the part of the amount).</param>
/// <param name="UnitPrice">Price per unit, or rate for graduated percentage.</param>
/// <param name="FlatFee">The tier's flat fee, charged because the tier was entered.</param>
/// <param name="Amount"><c>Units * UnitPrice + FlatFee</c>, exact (not rounded).</param>
public readonly record struct TierLine(int Tier, decimal From, decimal? UpTo, decimal Units, decimal UnitPrice, decimal FlatFee, decimal Amount);

/// <summary>The exact (unrounded) result of rating one charge.</summary>
/// <param name="BillableQuantity">The quantity after the charge's free units.</param>
/// <param name="Amount">The exact amount, before minimum spend and rounding.</param>
/// <param name="TierCount">How many <see cref="TierLine"/>s were written (0 for untiered models).</param>
/// <param name="BillableEvents">Events that pay the per-event fee (percentage models; otherwise 0).</param>
public readonly record struct ChargeResult(decimal BillableQuantity, decimal Amount, int TierCount, long BillableEvents = 0);

/// <summary>Rates a single charge. Allocation-free: the tier breakdown goes into a span the caller provides.</summary>
public static class ChargeRater
{
    /// <summary>How many <see cref="TierLine"/>s rating <paramref name="model"/> can write at most.</summary>
    public static int MaxTierLines(ChargeModel model) => model switch
    {
        GraduatedModel m => m.Tiers.Length,
        GraduatedPercentageModel m => m.Tiers.Length,
        VolumeModel => 1,
        _ => 0,
    };

    /// <summary>
    /// Rates <paramref name="usage"/> with <paramref name="charge"/> (free units first, then the model), exactly, with no
    /// rounding; writes the per-tier breakdown into <paramref name="tiers"/>. The charge's plan must be valid.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The quantity or event count is negative.</exception>
    /// <exception cref="ArgumentException"><paramref name="tiers"/> is shorter than <see cref="MaxTierLines"/>.</exception>
    public static ChargeResult Rate(Charge charge, ChargeUsage usage, Span<TierLine> tiers)
    {
        if (tiers.IsEmpty && MaxTierLines(charge.Model) > 0)
        {
            TierMath.ThrowTooShort(MaxTierLines(charge.Model));
        }

        return RateCore(charge, usage, tiers);
    }

    /// <summary>
    /// As <see cref="Rate"/> without the tier breakdown (<see cref="ChargeResult.TierCount"/> still says how many tiers
    /// there are). The amount is the same decimal: the breakdown is only left unwritten.
    /// </summary>
    internal static ChargeResult RateAmount(Charge charge, ChargeUsage usage) => RateCore(charge, usage, default);

    /// <summary>
    /// Writes the tier breakdown of <paramref name="billable"/> units (the quantity after free units) under
    /// <paramref name="model"/> into <paramref name="into"/> (<see cref="MaxTierLines"/> long) and returns how many
    /// lines it wrote: the same lines <see cref="Rate"/> writes.
    /// </summary>
    internal static int WriteTiers(ChargeModel model, decimal billable, Span<TierLine> into)
    {
        switch (model)
        {
            case GraduatedModel m:
                TierMath.Graduated(m.Tiers.AsSpan(), billable, into, out int count);
                return count;
            case GraduatedPercentageModel m:
                TierMath.Graduated(m.Tiers.AsSpan(), billable, into, out count);
                return count;
            case VolumeModel m:
                TierMath.Volume(m.Tiers.AsSpan(), billable, into);
                return 1;
            default:
                return 0;
        }
    }

    /// <summary>Rates; writes the breakdown into <paramref name="tiers"/> unless it is empty.</summary>
    private static ChargeResult RateCore(Charge charge, ChargeUsage usage, Span<TierLine> tiers)
    {
        decimal q = usage.Quantity;
        if (decimal.Sign(q) < 0 || usage.EventCount < 0)
        {
            ThrowNegativeUsage(usage);
        }

        // q - 0m is q itself, bit for bit (0m is rescaled to q's scale and nothing is subtracted), so a charge without
        // free units skips the subtraction (and the comparison: q > 0m is its sign).
        decimal free = charge.FreeUnits;
        decimal billable;
        if (Money.IsPlainZero(free))
        {
            billable = decimal.Sign(q) > 0 ? q : 0m;
        }
        else
        {
            // Subtract once and look at the sign rather than compare and then subtract: the sign of q - free is the
            // sign of the exact difference (a rounded difference is never rounded to zero or across it).
            decimal difference = q - free;
            billable = decimal.Sign(difference) > 0 ? difference : 0m;
        }

        // One construction of the result at the end (rather than one per model) lets the JIT inline it.
        decimal amount;
        int tierCount = 0;
        long billableEvents = 0;
        switch (charge.Model)
        {
            case StandardModel m:
                amount = billable * m.UnitPrice;
                break;
            case GraduatedModel m:
                amount = tiers.IsEmpty
                    ? TierMath.GraduatedAmount(m.Tiers.AsSpan(), m.Totals.Through, billable, out tierCount)
                    : TierMath.Graduated(m.Tiers.AsSpan(), billable, tiers, out tierCount);
                break;
            case VolumeModel m:
                amount = TierMath.Volume(m.Tiers.AsSpan(), billable, tiers);
                tierCount = 1;
                break;
            case PackageModel m:
                amount = Money.DivideRoundingUp(billable, m.PackageSize) * m.PackagePrice;
                break;
            case PercentageModel m:
                billableEvents = Math.Max(usage.EventCount - m.FreeEvents, 0);
                amount = (billable * m.Rate) + (billableEvents * m.FixedFeePerEvent);
                break;
            case GraduatedPercentageModel m:
                amount = tiers.IsEmpty
                    ? TierMath.GraduatedAmount(m.Tiers.AsSpan(), m.Totals.Through, billable, out tierCount)
                    : TierMath.Graduated(m.Tiers.AsSpan(), billable, tiers, out tierCount);
                break;
            default:
                throw new NotSupportedException($"Charge model {charge.Model?.GetType().Name ?? "null"} is not supported.");
        }

        return new ChargeResult(billable, amount, tierCount, billableEvents);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowNegativeUsage(ChargeUsage usage) =>
        throw new ArgumentOutOfRangeException(nameof(usage), usage, "Usage quantity and event count must not be negative.");
}
