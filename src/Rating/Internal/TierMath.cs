using System.Diagnostics.CodeAnalysis;

namespace AlphaMesh.Rating.Internal;

internal static class TierMath
{
    /// <summary>
    /// Graduated tiers: units in tier i are <c>min(q, upTo_i) - upTo_{i-1}</c>. A tier is entered when q is above
    /// its lower bound; the first is always entered (its flat fee is due even at q = 0). Writes one line per entered
    /// tier and returns the exact sum of their amounts.
    /// </summary>
    public static decimal Graduated(ReadOnlySpan<Tier> tiers, decimal q, Span<TierLine> into, out int count)
    {
        if (into.Length < tiers.Length)
        {
            ThrowTooShort(tiers.Length);
        }

        decimal lower = 0m;
        decimal total = 0m;
        count = 0;
        for (int i = 0; i < tiers.Length; i++)
        {
            var tier = tiers[i];
            if (i > 0 && q <= lower)
            {
                return total;
            }

            decimal top = tier.UpTo is { } upTo && q > upTo ? upTo : q;
            decimal units = top - lower;
            decimal amount = (units * tier.UnitPrice) + tier.FlatFee;
            into[count++] = new TierLine(i + 1, lower, tier.UpTo, units, tier.UnitPrice, tier.FlatFee, amount);
            total += amount;
            if (tier.UpTo is not { } bound)
            {
                return total;
            }

            lower = bound;
        }

        // Only a bounded last tier (which validation rejects) can leave units unpriced.
        if (q > lower)
        {
            ThrowBoundedLastTier(q, lower);
        }

        return total;
    }

    /// <summary>Volume tiers: the tier with <c>q &lt;= upTo</c> (or the last) prices every unit, plus its flat fee.</summary>
    public static decimal Volume(ReadOnlySpan<Tier> tiers, decimal q, Span<TierLine> into)
    {
        if (into.Length < 1)
        {
            ThrowTooShort(1);
        }

        decimal lower = 0m;
        for (int i = 0; i < tiers.Length; i++)
        {
            var tier = tiers[i];
            if (tier.UpTo is not { } upTo || q <= upTo)
            {
                decimal amount = (q * tier.UnitPrice) + tier.FlatFee;
                into[0] = new TierLine(i + 1, lower, tier.UpTo, q, tier.UnitPrice, tier.FlatFee, amount);
                return amount;
            }

            lower = upTo;
        }

        ThrowBoundedLastTier(q, lower);
        return 0m;
    }

    [DoesNotReturn]
    private static void ThrowTooShort(int needed) =>
        throw new ArgumentException($"The tier breakdown span needs room for {needed} tier lines.", "into");

    [DoesNotReturn]
    private static void ThrowBoundedLastTier(decimal q, decimal lastBound) =>
        throw new InvalidOperationException($"Quantity {q} is above the last tier's bound {lastBound}; the plan was not validated (the last tier must be unbounded).");
}
