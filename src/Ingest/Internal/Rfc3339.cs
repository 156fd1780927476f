using System.Runtime.CompilerServices;

namespace AlphaMesh.Ingest.Internal;

/// <summary>
/// Parses RFC 3339 timestamps (<c>2024-05-01T12:30:00.123456789+02:00</c>) to Unix seconds and
/// nanoseconds, normalised to UTC. Written out because the BCL's parsers stop at 7 fractional digits
/// (ticks) and the event log keeps nanoseconds.
/// <para>
/// Accepted: <c>YYYY-MM-DD</c>, <c>T</c> (or <c>t</c>, as RFC 3339 allows), <c>HH:MM:SS</c>, an optional
/// fraction of 1 to 9 digits, then <c>Z</c>/<c>z</c> or an offset <c>+HH:MM</c>/<c>-HH:MM</c>. A leap
/// second (<c>:60</c>) is refused: Unix time cannot represent it, and silently moving it would change
/// which window the event is counted in.
/// </para>
/// </summary>
internal static class Rfc3339
{
    public static bool TryParse(ReadOnlySpan<byte> s, out long unixSeconds, out int nanos)
    {
        unixSeconds = 0;
        nanos = 0;
        // "YYYY-MM-DDTHH:MM:SSZ" is the shortest form.
        if (s.Length < 20
            || !TryDigits(s, 0, 4, out int year) || s[4] != '-'
            || !TryDigits(s, 5, 2, out int month) || s[7] != '-'
            || !TryDigits(s, 8, 2, out int day) || (s[10] | 0x20) != 't'
            || !TryDigits(s, 11, 2, out int hour) || s[13] != ':'
            || !TryDigits(s, 14, 2, out int minute) || s[16] != ':'
            || !TryDigits(s, 17, 2, out int second))
            return false;
        if (month is < 1 or > 12 || day < 1 || day > DaysInMonth(year, month) || hour > 23 || minute > 59 || second > 59)
            return false;

        int pos = 19;
        if (s[pos] == '.')
        {
            int start = ++pos;
            int fraction = 0;
            while (pos < s.Length && IsDigit(s[pos]))
            {
                if (pos - start == 9)
                    return false;
                fraction = (fraction * 10) + (s[pos] - '0');
                pos++;
            }
            if (pos == start)
                return false;
            // Scale to nanoseconds. (A ReadOnlySpan<int> table of powers of ten allocated an int[] on
            // every call here, measured; this loop runs at most 8 times.)
            for (int digits = pos - start; digits < 9; digits++)
                fraction *= 10;
            nanos = fraction;
        }

        if (pos >= s.Length)
            return false;
        int offsetSeconds = 0;
        if ((s[pos] | 0x20) == 'z')
        {
            pos++;
        }
        else if (s[pos] is (byte)'+' or (byte)'-')
        {
            if (s.Length - pos < 6
                || !TryDigits(s, pos + 1, 2, out int offsetHours) || s[pos + 3] != ':'
                || !TryDigits(s, pos + 4, 2, out int offsetMinutes)
                || offsetHours > 23 || offsetMinutes > 59)
                return false;
            offsetSeconds = (offsetHours * 3600) + (offsetMinutes * 60);
            if (s[pos] == '-')
                offsetSeconds = -offsetSeconds;
            pos += 6;
        }
        else
        {
            return false;
        }
        if (pos != s.Length)
        {
            nanos = 0;
            return false;
        }

        // Local time minus its offset is UTC.
        unixSeconds = (DaysFromCivil(year, month, day) * 86_400L) + (hour * 3600) + (minute * 60) + second - offsetSeconds;
        return true;
    }

    /// <summary>Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).</summary>
    internal static long DaysFromCivil(int year, int month, int day)
    {
        long y = month <= 2 ? year - 1 : year;
        long era = (y >= 0 ? y : y - 399) / 400;
        long yearOfEra = y - (era * 400);
        long dayOfYear = ((153 * (month > 2 ? month - 3 : month + 9)) + 2) / 5 + day - 1;
        long dayOfEra = (yearOfEra * 365) + (yearOfEra / 4) - (yearOfEra / 100) + dayOfYear;
        return (era * 146_097) + dayOfEra - 719_468;
    }

    private static int DaysInMonth(int year, int month)
        => month == 2
            ? ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28)
            : 30 + ((month + (month >> 3)) & 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool TryDigits(ReadOnlySpan<byte> s, int start, int count, out int value)
    {
        value = 0;
        for (int i = start; i < start + count; i++)
        {
            if (!IsDigit(s[i]))
                return false;
            value = (value * 10) + (s[i] - '0');
        }
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsDigit(byte b) => (uint)(b - '0') <= 9;
}
