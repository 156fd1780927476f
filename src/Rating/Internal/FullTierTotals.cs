using System.Collections.Immutable;

namespace AlphaMesh.Rating.Internal;

/// <summary>
/// For graduated tiers: the exact amount of every bounded tier a quantity has gone past, and the running total up to
/// each, worked out once per model instead of on every rating. They are the very decimals
/// <see cref="TierMath.Graduated"/> works out tier by tier (the same operations in the same order), so an amount rated
/// from them is the same decimal, scale included.
/// </summary>
internal sealed class FullTierTotals
{
    private readonly ImmutableArray<Tier> _tiers;

    private FullTierTotals(ImmutableArray<Tier> tiers)
    {
        _tiers = tiers;
        int bounded = 0;
        while (bounded < tiers.Length && tiers[bounded].UpTo.HasValue)
        {
            bounded++;
        }

        var totals = new decimal[bounded];
        int known = 0;
        try
        {
            decimal lower = 0m;
            for (; known < bounded; known++)
            {
                var tier = tiers[known];
                decimal upTo = tier.UpTo.GetValueOrDefault();
                decimal amount = TierMath.TierAmount(known == 0 ? upTo : upTo - lower, tier);
                totals[known] = known == 0 ? amount : totals[known - 1] + amount;
                lower = upTo;
            }
        }
        catch (OverflowException)
        {
            // A tier too large for a decimal is left to the tier-by-tier path, which fails the same way only for a
            // quantity that reaches it.
        }

        Through = totals.AsSpan(0, known).ToArray();
    }

    /// <summary><c>Through[i]</c>: the exact total of tiers 0 to i, each used in full (tier i's bound reached).</summary>
    public decimal[] Through { get; }

    /// <summary>The totals of <paramref name="tiers"/>, from <paramref name="cache"/> unless it was built for other tiers.</summary>
    public static FullTierTotals For(ImmutableArray<Tier> tiers, ref FullTierTotals? cache)
    {
        var cached = cache;
        if (cached is null || cached._tiers != tiers)
        {
            // A copy made with 'with { Tiers = ... }' carries the original's cache: the tiers check catches it.
            cache = cached = new FullTierTotals(tiers);
        }

        return cached;
    }
}
