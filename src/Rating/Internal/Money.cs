using System.Runtime.CompilerServices;

namespace AlphaMesh.Rating.Internal;

internal static class Money
{
    /// <summary>
    /// True when <paramref name="value"/> is 0m itself: every bit zero (scale 0, positive). Adding it to any decimal
    /// returns that decimal unchanged, bit for bit (a 0.00m would raise the scale), so the addition can be skipped.
    /// </summary>
    public static bool IsPlainZero(decimal value) =>
        Unsafe.As<decimal, UInt128>(ref value) == UInt128.Zero;

    /// <summary>True when <paramref name="a"/> and <paramref name="b"/> are the same decimal, scale included.</summary>
    public static bool SameBits(decimal a, decimal b) =>
        Unsafe.As<decimal, UInt128>(ref a) == Unsafe.As<decimal, UInt128>(ref b);

    /// <summary>Rounds once to <paramref name="decimals"/> places; half-even, the default, is tested first and inlined.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static decimal Round(decimal amount, int decimals, RoundingMode mode) =>
        mode == RoundingMode.HalfEven ? decimal.Round(amount, decimals, MidpointRounding.ToEven) : RoundOtherMode(amount, decimals, mode);

    private static decimal RoundOtherMode(decimal amount, int decimals, RoundingMode mode) => mode switch
    {
        RoundingMode.HalfUp => decimal.Round(amount, decimals, MidpointRounding.AwayFromZero),
        RoundingMode.Up => decimal.Round(amount, decimals, amount >= 0 ? MidpointRounding.ToPositiveInfinity : MidpointRounding.ToNegativeInfinity),
        RoundingMode.Down => decimal.Round(amount, decimals, MidpointRounding.ToZero),
        _ => throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown rounding mode."),
    };

    /// <summary>
    /// <c>ceil(dividend / divisor)</c> for a dividend &gt;= 0 and a divisor &gt; 0, as a whole decimal (scale 0). With
    /// both mantissas in 64 bits and the scales brought level within 64 bits, it is one integer division, exact;
    /// otherwise decimal.Ceiling of the decimal quotient.
    /// </summary>
    public static decimal DivideRoundingUp(decimal dividend, decimal divisor)
    {
        Span<int> a = stackalloc int[4];
        Span<int> b = stackalloc int[4];
        decimal.GetBits(dividend, a);
        decimal.GetBits(divisor, b);
        int scaleA = dividend.Scale;
        int scaleB = divisor.Scale;
        // dividend / divisor = (mA * 10^scaleB) / (mB * 10^scaleA)
        if (a[2] == 0 && b[2] == 0 && scaleA < PowersOfTen.Length && scaleB < PowersOfTen.Length)
        {
            ulong numeratorHigh = Math.BigMul((uint)a[0] | ((ulong)(uint)a[1] << 32), PowersOfTen[scaleB], out ulong numerator);
            ulong denominatorHigh = Math.BigMul((uint)b[0] | ((ulong)(uint)b[1] << 32), PowersOfTen[scaleA], out ulong denominator);
            if (numeratorHigh == 0 && denominatorHigh == 0 && denominator != 0)
            {
                (ulong quotient, ulong remainder) = Math.DivRem(numerator, denominator);
                return remainder == 0 ? quotient : quotient + 1;
            }
        }

        return decimal.Ceiling(dividend / divisor);
    }

    /// <summary>10^0 to 10^19, the powers of ten that fit in a ulong.</summary>
    private static ReadOnlySpan<ulong> PowersOfTen =>
    [
        1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000, 10_000_000_000,
        100_000_000_000, 1_000_000_000_000, 10_000_000_000_000, 100_000_000_000_000, 1_000_000_000_000_000,
        10_000_000_000_000_000, 100_000_000_000_000_000, 1_000_000_000_000_000_000, 10_000_000_000_000_000_000,
    ];

    /// <summary>amount * days / periodDays: multiply first so that the one inexact step is the last division.</summary>
    public static decimal Prorate(decimal amount, int days, int periodDays) =>
        days == periodDays ? amount : amount * days / periodDays;
}
