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

    public static decimal Round(decimal amount, int decimals, RoundingMode mode) => mode switch
    {
        RoundingMode.HalfEven => decimal.Round(amount, decimals, MidpointRounding.ToEven),
        RoundingMode.HalfUp => decimal.Round(amount, decimals, MidpointRounding.AwayFromZero),
        RoundingMode.Up => decimal.Round(amount, decimals, amount >= 0 ? MidpointRounding.ToPositiveInfinity : MidpointRounding.ToNegativeInfinity),
        RoundingMode.Down => decimal.Round(amount, decimals, MidpointRounding.ToZero),
        _ => throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown rounding mode."),
    };

    /// <summary>amount * days / periodDays: multiply first so that the one inexact step is the last division.</summary>
    public static decimal Prorate(decimal amount, int days, int periodDays) =>
        days == periodDays ? amount : amount * days / periodDays;
}
