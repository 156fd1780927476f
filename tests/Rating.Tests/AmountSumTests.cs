using AlphaMesh.Rating.Internal;
using CsCheck;

namespace AlphaMesh.Rating.Tests;

public sealed class AmountSumTests
{
    [Fact]
    public void DecimalBits_RandomDecimals_MatchDecimalGetBits()
    {
        // AmountSum reads a decimal's fields through this layout; if the runtime's layout ever changed, this fails.
        Gen.Select(Gen.Int, Gen.Int, Gen.Int, Gen.Bool, Gen.Byte[0, 28]).Sample((lo, mid, hi, negative, scale) =>
        {
            decimal value = new(lo, mid, hi, negative, scale);
            int[] bits = decimal.GetBits(value);
            var layout = System.Runtime.CompilerServices.Unsafe.As<decimal, AmountSum.DecimalBits>(ref value);
            Assert.Equal(bits[3], layout.Flags);
            Assert.Equal((uint)bits[2], layout.Hi32);
            Assert.Equal((ulong)(uint)bits[1] << 32 | (uint)bits[0], layout.Lo64);
        });
    }

    [Theory]
    [InlineData(new[] { "1.50", "2", "0.005" }, "3.505")]
    [InlineData(new[] { "0", "0.00" }, "0.00")]
    [InlineData(new[] { "10", "20" }, "30")]
    [InlineData(new string[0], "0")]
    [InlineData(new[] { "18446744073709551615", "18446744073709551615" }, "36893488147419103230")]
    public void TryGetTotal_NonNegativeAmounts_SumWithTheLargestScale(string[] amounts, string expected)
    {
        var sum = default(AmountSum);
        foreach (string amount in amounts)
        {
            sum.Add(decimal.Parse(amount, System.Globalization.CultureInfo.InvariantCulture));
        }

        Assert.True(sum.TryGetTotal(out decimal total));
        // The string keeps the scale: 0.00 is not 0.
        Assert.Equal(expected, total.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    [Theory]
    [InlineData("-0.01")]
    [InlineData("18446744073709551616")] // 2^64: the mantissa needs more than 64 bits
    [InlineData("0.0000000001")] // scale 10
    public void TryGetTotal_AnAmountItCannotSumAsAnInteger_Fails(string amount)
    {
        var sum = default(AmountSum);
        sum.Add(1m);
        sum.Add(decimal.Parse(amount, System.Globalization.CultureInfo.InvariantCulture));

        Assert.False(sum.TryGetTotal(out _));
    }

    [Fact]
    public void TryGetTotal_NegativeZero_Fails()
    {
        // decimal.Round(-0.001m, 2) is -0.00: adding it in order can give a negative zero, which the integer sum would lose.
        var sum = default(AmountSum);
        sum.Add(decimal.Round(-0.001m, 2));

        Assert.False(sum.TryGetTotal(out _));
    }

    [Fact]
    public void TryGetTotal_SumOver96Bits_Fails()
    {
        decimal max64 = new(-1, -1, 0, false, 0); // 2^64 - 1
        var fits = default(AmountSum);
        var over = default(AmountSum);
        for (int i = 0; i < 5; i++)
        {
            fits.Add(max64);
            over.Add(max64);
        }

        // Rescaled to 9 places, the five earlier amounts need 5 * 2^64 * 10^9, over 2^96: adding in order would round.
        over.Add(0.000000001m);

        Assert.True(fits.TryGetTotal(out decimal total));
        Assert.Equal(5 * max64, total);
        Assert.False(over.TryGetTotal(out _));
    }

    [Fact]
    public void TryGetTotal_RandomAmounts_SameDecimalAsAddingInOrder()
    {
        // Oracle: decimal additions from 0m in order, compared bit for bit (scale and sign included), whenever the
        // integer sum gives a result; it must give one whenever every amount is non-negative and fits 64 bits.
        var amount = Gen.Select(Gen.ULong, Gen.Int[0, 3], Gen.Int[0, 12], Gen.Int[0, 9]).Select((m, size, scale, negative) =>
        {
            ulong mantissa = size switch { 0 => m % 1_000, 1 => m % 100_000_000, 2 => m, _ => m % 2 };
            var value = new decimal((int)(uint)mantissa, (int)(uint)(mantissa >> 32), size == 3 && m % 5 == 0 ? 1 : 0, negative == 0, (byte)scale);
            return value;
        });
        amount.Array[0, 40].Sample(amounts =>
        {
            decimal inOrder = 0m;
            var sum = default(AmountSum);
            foreach (decimal a in amounts)
            {
                inOrder += a;
                sum.Add(a);
            }

            // Exact when every amount is non-negative, fits 64 bits with at most 9 places, and the sum at the largest scale
            // fits a decimal's 96 bits (worked out with BigInteger).
            int scale = amounts.Length == 0 ? 0 : amounts.Max(a => (int)a.Scale);
            var units = amounts.Aggregate(System.Numerics.BigInteger.Zero,
                (s, a) => s + (new System.Numerics.BigInteger(Math.Abs(a) * (decimal)Math.Pow(10, a.Scale)) * System.Numerics.BigInteger.Pow(10, scale - a.Scale)));
            bool expectExact = amounts.All(a => !decimal.IsNegative(a) && decimal.GetBits(a)[2] == 0 && a.Scale <= 9)
                && units < System.Numerics.BigInteger.Pow(2, 96);
            if (sum.TryGetTotal(out decimal total))
            {
                Assert.Equal(decimal.GetBits(inOrder), decimal.GetBits(total));
            }
            else
            {
                Assert.False(expectExact, "an integer sum of non-negative 64-bit amounts was refused");
            }
        });
    }
}
