using System.Diagnostics.CodeAnalysis;

namespace AlphaMesh.Rating.Internal;

internal static class TierMath
{
    /// <summary>
    /// Graduated tiers: units in tier i are <c>min(q, upTo_i) - upTo_{i-1}</c>. A tier is entered when q is above
    /// its lower bound; the first is always entered (its flat fee is due even at q = 0). Writes one line per entered
    /// tier (none when <paramref name="into"/> is empty: the amount alone) and returns the exact sum of their amounts.
    /// The amount is the same decimal whether or not the lines are written.
    /// </summary>
    public static decimal Graduated(ReadOnlySpan<Tier> tiers, decimal q, Span<TierLine> into, out int count)
    {
        bool write = !into.IsEmpty;
        if (write && into.Length < tiers.Length)
        {
            ThrowTooShort(tiers.Length);
        }

        // Bit-for-bit the same arithmetic as units * price + flatFee per tier summed into a total, with the
        // operations that cannot change a bit left out (see Money.IsPlainZero): subtracting the first tier's lower
        // bound 0m, adding a flat fee of 0m, adding the first amount to a total of 0m. "q is within this tier" is
        // remembered from the tier's own bound rather than compared again against the next tier's lower bound.
        decimal lower = 0m;
        decimal total = 0m;
        count = 0;
        for (int i = 0; i < tiers.Length; i++)
        {
            ref readonly var tier = ref tiers[i];
            bool within = tier.UpTo is not { } upTo || q <= upTo;
            decimal bound = within ? q : tier.UpTo.GetValueOrDefault();
            decimal units = i == 0 ? bound : bound - lower; // the first tier's lower bound is 0m: x - 0m is x
            decimal amount = TierAmount(units, tier);

            if (write)
            {
                into[count] = new TierLine(i + 1, lower, tier.UpTo, units, tier.UnitPrice, tier.FlatFee, amount);
            }

            count++;
            total = i == 0 ? amount : total + amount;
            if (within)
            {
                return total;
            }

            lower = tier.UpTo.GetValueOrDefault();
        }

        // Only a bounded last tier (which validation rejects) can leave units unpriced.
        if (q > lower)
        {
            ThrowBoundedLastTier(q, lower);
        }

        return total;
    }

    /// <summary>
    /// The amount of a graduated charge, as <see cref="Graduated"/> works it out without a breakdown, from the totals
    /// of the tiers below <paramref name="q"/> worked out beforehand: one tier's arithmetic instead of one per tier.
    /// </summary>
    public static decimal GraduatedAmount(ReadOnlySpan<Tier> tiers, decimal[] fullTotals, decimal q, out int count)
    {
        int i = 0;
        while (i < tiers.Length && tiers[i].UpTo is { } upTo && q > upTo)
        {
            i++;
        }

        if (i > fullTotals.Length || i == tiers.Length)
        {
            // A tier whose full total did not fit in a decimal, or a bounded last tier (which validation rejects):
            // the tier-by-tier path throws as it always has.
            return Graduated(tiers, q, default, out count);
        }

        count = i + 1;
        ref readonly var tier = ref tiers[i];
        decimal amount = TierAmount(i == 0 ? q : q - tiers[i - 1].UpTo.GetValueOrDefault(), tier);
        return i == 0 ? amount : fullTotals[i - 1] + amount;
    }

    /// <summary><c>units * unitPrice + flatFee</c>; adding a flat fee of 0m changes no bit, so it is skipped.</summary>
    public static decimal TierAmount(decimal units, in Tier tier)
    {
        decimal amount = units * tier.UnitPrice;
        return Money.IsPlainZero(tier.FlatFee) ? amount : amount + tier.FlatFee;
    }

    /// <summary>
    /// Volume tiers: the tier with <c>q &lt;= upTo</c> (or the last) prices every unit, plus its flat fee. Writes its
    /// line unless <paramref name="into"/> is empty.
    /// </summary>
    public static decimal Volume(ReadOnlySpan<Tier> tiers, decimal q, Span<TierLine> into)
    {
        decimal lower = 0m;
        for (int i = 0; i < tiers.Length; i++)
        {
            ref readonly var tier = ref tiers[i];
            if (tier.UpTo is not { } upTo || q <= upTo)
            {
                decimal amount = q * tier.UnitPrice;
                if (!Money.IsPlainZero(tier.FlatFee))
                {
                    amount += tier.FlatFee;
                }

                if (!into.IsEmpty)
                {
                    into[0] = new TierLine(i + 1, lower, tier.UpTo, q, tier.UnitPrice, tier.FlatFee, amount);
                }

                return amount;
            }

            lower = upTo;
        }

        ThrowBoundedLastTier(q, lower);
        return 0m;
    }

    [DoesNotReturn]
    public static void ThrowTooShort(int needed) =>
        throw new ArgumentException($"The tier breakdown span needs room for {needed} tier lines.", "into");

    [DoesNotReturn]
    private static void ThrowBoundedLastTier(decimal q, decimal lastBound) =>
        throw new InvalidOperationException($"Quantity {q} is above the last tier's bound {lastBound}; the plan was not validated (the last tier must be unbounded).");
}
