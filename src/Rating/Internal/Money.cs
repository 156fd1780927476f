namespace AlphaMesh.Rating.Internal;

internal static class Money
{
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
