using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using AlphaMesh.Core;

namespace AlphaMesh.Ingest.Internal;

/// <summary>
/// The check behind <c>invalid_number</c>. Data values are strings, and numbers travel as decimal text;
/// the aggregator sums them as <see cref="decimal"/>. A value that looks like a number but would not
/// parse there (an overflow such as "1e400", or "NaN") must be refused at the door, not when it is
/// aggregated.
/// <para>
/// A value <b>claims to be a number</b> when either
/// (a) it matches the JSON number grammar <c>-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?</c>, or
/// (b) it is, ignoring ASCII case, an optional sign (<c>+</c> or <c>-</c>) followed by <c>nan</c>,
/// <c>inf</c> or <c>infinity</c>.
/// A claiming value is valid only when it parses as a C# <see cref="decimal"/> with
/// <see cref="NumberStyles.Float"/> and the invariant culture (so (b) never is). Other text ("12 apples",
/// "+5", "0x1F") is not a number and is stored as it is. Every JSON number token claims to be a number.
/// </para>
/// </summary>
internal static class NumberText
{
    /// <summary>True when a value that claims to be a number is not a finite decimal.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsInvalidNumber(ReadOnlySpan<byte> value, DataValueKind kind)
        => (kind == DataValueKind.Number || ClaimsToBeNumber(value)) && !IsFiniteDecimal(value);

    public static bool IsFiniteDecimal(ReadOnlySpan<byte> value)
        => DecimalText.TryParseSimple(value, out _) || decimal.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out _);

    public static bool ClaimsToBeNumber(ReadOnlySpan<byte> value)
    {
        if (value.IsEmpty)
            return false;
        byte first = value[0];
        // Most values are words: decide them on the first byte.
        if (first == '-' || IsDigit(first))
            return MatchesJsonNumber(value) || IsNonFiniteWord(value);
        if (first == '+' || (first | 0x20) is (byte)'n' or (byte)'i')
            return IsNonFiniteWord(value);
        return false;
    }

    public static bool MatchesJsonNumber(ReadOnlySpan<byte> s)
    {
        int i = 0;
        if (s[i] == '-' && ++i == s.Length)
            return false;
        if (s[i] == '0')
        {
            i++;
        }
        else if (IsDigit(s[i]))
        {
            while (i < s.Length && IsDigit(s[i]))
                i++;
        }
        else
        {
            return false;
        }
        if (i < s.Length && s[i] == '.')
        {
            if (!SkipDigits(s, ref i))
                return false;
        }
        if (i < s.Length && (s[i] | 0x20) == 'e')
        {
            if (i + 1 < s.Length && s[i + 1] is (byte)'+' or (byte)'-')
                i++;
            if (!SkipDigits(s, ref i))
                return false;
        }
        return i == s.Length;
    }

    private static bool IsNonFiniteWord(ReadOnlySpan<byte> s)
    {
        if (s[0] is (byte)'+' or (byte)'-')
            s = s.Slice(1);
        return s.Length is 3 or 8
            && (Ascii.EqualsIgnoreCase(s, "nan"u8) || Ascii.EqualsIgnoreCase(s, "inf"u8) || Ascii.EqualsIgnoreCase(s, "infinity"u8));
    }

    /// <summary>Skips the marker at <paramref name="i"/> and at least one digit after it.</summary>
    private static bool SkipDigits(ReadOnlySpan<byte> s, ref int i)
    {
        int start = ++i;
        while (i < s.Length && IsDigit(s[i]))
            i++;
        return i > start;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsDigit(byte b) => (uint)(b - '0') <= 9;
}
