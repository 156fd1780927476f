using System.Runtime.CompilerServices;

namespace AlphaMesh.Core;

/// <summary>
/// The common shape of a numeric data value, read without the general parser: an optional minus, 1 to 18 digits,
/// and optionally a point and more digits, 18 digits in all at most ("42", "-0.25", "1234.5"). Almost every value
/// has this shape, and the general decimal parsers cost several times more. The result is the same decimal,
/// scale included, as <see cref="decimal.Parse(string)"/> gives (the tests check bit for bit); anything else
/// (an exponent, a plus, more digits, a negative zero) is left to the general parser.
/// </summary>
public static class DecimalText
{
    private const int MaxDigits = 18; // 10^18 - 1 fits in the low 64 bits of the decimal's 96

    /// <summary>Reads a value of the common shape; returns false, with <paramref name="value"/> zero, for any
    /// other text, which the caller then gives to the general parser.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryParseSimple(ReadOnlySpan<byte> text, out decimal value)
    {
        value = 0;
        int i = 0;
        bool negative = false;
        if (text.Length > 0 && text[0] == '-')
        {
            negative = true;
            i = 1;
        }
        ulong digits = 0;
        int count = 0, scale = 0;
        bool point = false;
        for (; i < text.Length; i++)
        {
            uint digit = (uint)(text[i] - '0');
            if (digit <= 9)
            {
                digits = (digits * 10) + digit;
                count++;
                if (point)
                    scale++;
            }
            else if (text[i] == '.' && !point && count > 0)
            {
                point = true;
            }
            else
            {
                return false;
            }
        }
        // "", "-", "1." and too many digits go to the general parser, and so does a negative zero: its sign is
        // the general parser's to keep or drop.
        if (count == 0 || count > MaxDigits || (point && scale == 0) || (negative && digits == 0))
            return false;
        value = new decimal((int)digits, (int)(digits >> 32), 0, negative, (byte)scale);
        return true;
    }
}
