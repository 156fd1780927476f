using System.Globalization;
using AlphaMesh.Rating.Internal;
using CsCheck;

namespace AlphaMesh.Rating.Tests;

public sealed class MoneyTests
{
    public static TheoryData<string, int> Currencies => new()
    {
        { "JPY", 0 }, { "KRW", 0 }, { "CLP", 0 }, { "USD", 2 }, { "EUR", 2 }, { "GBP", 2 },
        { "BHD", 3 }, { "KWD", 3 }, { "JOD", 3 }, { "OMR", 3 }, { "TND", 3 }, { "CLF", 4 }, { "UYW", 4 },
    };

    [Theory]
    [MemberData(nameof(Currencies))]
    public void Get_KnownCurrency_HasIsoMinorUnits(string code, int minorUnits)
    {
        Assert.Equal(minorUnits, Currency.Get(code).MinorUnits);
    }

    [Theory]
    [InlineData("XYZ")]
    [InlineData("usd")]
    [InlineData("")]
    [InlineData(null)]
    public void TryGet_UnknownCurrency_ReturnsFalse(string? code)
    {
        Assert.False(Currency.TryGet(code, out _));
    }

    public static TheoryData<string, decimal, decimal> RoundOncePerCurrency => new()
    {
        { "JPY", 1234.5678m, 1235m },
        { "USD", 1234.5678m, 1234.57m },
        { "BHD", 1234.5678m, 1234.568m },
        { "CLF", 1234.56785m, 1234.5678m },    // half-even: 8 stays
        { "USD", 0.000012m, 0.00m },
    };

    [Theory]
    [MemberData(nameof(RoundOncePerCurrency))]
    public void Round_HalfEven_RoundsToMinorUnit(string code, decimal exact, decimal expected)
    {
        Assert.Equal(expected, Currency.Get(code).Round(exact, RoundingMode.HalfEven));
    }

    public static TheoryData<RoundingMode, decimal, decimal> Modes => new()
    {
        { RoundingMode.HalfEven, 2.345m, 2.34m },
        { RoundingMode.HalfEven, 2.355m, 2.36m },
        { RoundingMode.HalfEven, 2.3451m, 2.35m },
        { RoundingMode.HalfUp, 2.345m, 2.35m },
        { RoundingMode.HalfUp, -2.345m, -2.35m },
        { RoundingMode.HalfUp, 2.3449m, 2.34m },
        { RoundingMode.Up, 2.341m, 2.35m },
        { RoundingMode.Up, -2.341m, -2.35m },
        { RoundingMode.Up, 2.34m, 2.34m },
        { RoundingMode.Down, 2.349m, 2.34m },
        { RoundingMode.Down, -2.349m, -2.34m },
    };

    [Theory]
    [MemberData(nameof(Modes))]
    public void Round_EachMode_RoundsAsDocumented(RoundingMode mode, decimal exact, decimal expected)
    {
        Assert.Equal(expected, Currency.Get("USD").Round(exact, mode));
    }

    [Theory]
    [InlineData(RoundingMode.HalfEven, 2)]
    [InlineData(RoundingMode.HalfUp, 3)]
    [InlineData(RoundingMode.Up, 3)]
    [InlineData(RoundingMode.Down, 2)]
    public void Round_JpyTie_UsesTenantMode(RoundingMode mode, decimal expected)
    {
        Assert.Equal(expected, Currency.Get("JPY").Round(2.5m, mode));
    }

    [Theory]
    [InlineData("0", "1000", "0")]
    [InlineData("1000", "1000", "1")]
    [InlineData("1000.001", "1000", "2")]
    [InlineData("0.5", "1000", "1")]
    [InlineData("3.000", "1.5", "2")]
    [InlineData("3.0001", "1.5", "3")]
    [InlineData("18446744073709551615", "1", "18446744073709551615")] // the largest 64-bit mantissa
    [InlineData("18446744073709551616", "7", "2635249153387078803")] // a 65-bit mantissa: the decimal path
    [InlineData("79228162514264337593543950335", "0.5", "OVERFLOW")]
    public void DivideRoundingUp_HandPickedOperands_IsCeilingOfQuotient(string dividend, string divisor, string expected)
    {
        decimal a = decimal.Parse(dividend, CultureInfo.InvariantCulture);
        decimal b = decimal.Parse(divisor, CultureInfo.InvariantCulture);
        if (expected == "OVERFLOW")
        {
            Assert.Throws<OverflowException>(() => Money.DivideRoundingUp(a, b));
            return;
        }

        decimal result = Money.DivideRoundingUp(a, b);

        Assert.Equal(decimal.Parse(expected, CultureInfo.InvariantCulture), result);
        Assert.Equal(0, result.Scale);
    }

    [Fact]
    public void DivideRoundingUp_RandomOperands_SameDecimalAsCeilingOfDecimalQuotient()
    {
        // Oracle: decimal.Ceiling(a / b), the formula the package model used before; compared bit for bit.
        var operand = Gen.Select(Gen.Long[0, long.MaxValue], Gen.Int[0, 12]).Select((m, scale) => new decimal(m) / Pow10(scale));
        var positive = Gen.Select(Gen.Long[1, 10_000_000_000], Gen.Int[0, 6]).Select((m, scale) => new decimal(m) / Pow10(scale));
        Gen.Select(operand, positive).Sample((a, b) =>
            Assert.Equal(decimal.GetBits(decimal.Ceiling(a / b)), decimal.GetBits(Money.DivideRoundingUp(a, b))));
    }

    private static decimal Pow10(int n) => n == 0 ? 1m : 10m * Pow10(n - 1);
}
