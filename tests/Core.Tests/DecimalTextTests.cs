using System.Globalization;
using System.Text;

namespace AlphaMesh.Core.Tests;

public sealed class DecimalTextTests
{
    [Theory]
    [InlineData("0")]
    [InlineData("7")]
    [InlineData("-7")]
    [InlineData("007")]
    [InlineData("0.1")]
    [InlineData("1.50")]
    [InlineData("-0.25")]
    [InlineData("0.00000000000000001")]
    [InlineData("999999999999999999")]
    [InlineData("-99999999.9999999999")]
    [InlineData("123456789.012345678")]
    [InlineData("0.000")]
    public void TryParseSimple_CommonShape_SameDecimalAsTheGeneralParser(string text)
    {
        Assert.True(DecimalText.TryParseSimple(Encoding.ASCII.GetBytes(text), out decimal value));

        AssertSameBits(decimal.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture), value, text);
    }

    [Theory]
    [InlineData("")]
    [InlineData("-")]
    [InlineData("1.")]
    [InlineData(".5")]
    [InlineData("+5")]
    [InlineData("1e5")]
    [InlineData("1.2.3")]
    [InlineData("-0")]
    [InlineData("-0.00")]
    [InlineData("1 ")]
    [InlineData("12a")]
    [InlineData("1000000000000000000")]
    [InlineData("0.0000000000000000001")]
    [InlineData("NaN")]
    public void TryParseSimple_OtherText_LeavesItToTheGeneralParser(string text)
    {
        Assert.False(DecimalText.TryParseSimple(Encoding.ASCII.GetBytes(text), out decimal value));
        Assert.Equal(0m, value);
    }

    [Fact]
    public void TryParseSimple_RandomDigitStrings_EqualTheGeneralParserBitForBit()
    {
        var random = new Random(20261126);
        int simple = 0;
        for (int trial = 0; trial < 200_000; trial++)
        {
            var text = new StringBuilder();
            if (random.Next(3) == 0)
                text.Append('-');
            int whole = random.Next(0, 21);
            for (int d = 0; d < whole; d++)
                text.Append((char)('0' + (random.Next(4) == 0 ? 0 : random.Next(10))));
            if (random.Next(2) == 0)
            {
                text.Append('.');
                int fraction = random.Next(0, 21);
                for (int d = 0; d < fraction; d++)
                    text.Append((char)('0' + random.Next(10)));
            }
            string s = text.ToString();

            bool parsed = DecimalText.TryParseSimple(Encoding.ASCII.GetBytes(s), out decimal value);

            // The oracle: the general parser, and the shape written out as a rule.
            bool general = decimal.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out decimal expected);
            string unsigned = s.TrimStart('-');
            int digitCount = unsigned.Count(char.IsAsciiDigit);
            bool shape = digitCount is > 0 and <= 18 && !unsigned.StartsWith('.') && !unsigned.EndsWith('.')
                && !(s.StartsWith('-') && unsigned.All(c => c is '0' or '.'));
            Assert.Equal(shape, parsed);
            if (parsed)
            {
                simple++;
                Assert.True(general, s);
                AssertSameBits(expected, value, s);
            }
        }
        Assert.True(simple > 50_000, $"only {simple} inputs had the common shape");
    }

    private static void AssertSameBits(decimal expected, decimal actual, string text)
        => Assert.True(decimal.GetBits(expected).SequenceEqual(decimal.GetBits(actual)),
            $"{text}: expected {expected} (bits {string.Join(',', decimal.GetBits(expected))}), got {actual} (bits {string.Join(',', decimal.GetBits(actual))})");
}
