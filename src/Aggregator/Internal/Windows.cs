using System.Runtime.CompilerServices;

namespace AlphaMesh.Aggregator.Internal;

/// <summary>Window arithmetic on Unix nanoseconds (UTC). Windows are half-open: [start, end).</summary>
internal static class Windows
{
    public const long NanosPerSecond = 1_000_000_000;
    public const long NanosPerMinute = 60 * NanosPerSecond;
    public const long NanosPerHour = 60 * NanosPerMinute;
    public const long NanosPerDay = 24 * NanosPerHour;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long FixedLength(WindowSize size) => size switch
    {
        WindowSize.Minute => NanosPerMinute,
        WindowSize.Hour => NanosPerHour,
        WindowSize.Day => NanosPerDay,
        _ => throw new ArgumentOutOfRangeException(nameof(size), size, "Only MINUTE, HOUR and DAY have a fixed length."),
    };

    /// <summary>Start of the window of <paramref name="size"/> that holds <paramref name="time"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long Start(WindowSize size, long time)
    {
        if (size == WindowSize.Month)
            return MonthStart(time);
        long length = FixedLength(size);
        long start = time - (time % length);
        return time < 0 && start != time ? start - length : start; // floor, also before 1970
    }

    /// <summary>End of the window of <paramref name="size"/> that starts at <paramref name="start"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long End(WindowSize size, long start)
        => size == WindowSize.Month ? AddMonths(start, 1) : start + FixedLength(size);

    public static long MonthStart(long time)
    {
        var t = ToDateTime(time);
        return FromDateTime(new DateTime(t.Year, t.Month, 1, 0, 0, 0, DateTimeKind.Utc));
    }

    public static long AddMonths(long monthStart, int months) => FromDateTime(ToDateTime(monthStart).AddMonths(months));

    public static DateTime ToDateTime(long unixNanos) => DateTime.UnixEpoch.AddTicks(unixNanos / 100);

    public static long FromDateTime(DateTime utc) => (utc.Ticks - DateTime.UnixEpoch.Ticks) * 100;

    public static DateTimeOffset ToDateTimeOffset(long unixNanos) => new(ToDateTime(unixNanos), TimeSpan.Zero);

    public static long FromDateTimeOffset(DateTimeOffset time) => FromDateTime(time.UtcDateTime);

    /// <summary>The stored levels of a meter, finest first: its own window, then every coarser one up to MONTH.</summary>
    public static int LevelCount(WindowSize baseSize) => WindowSize.Month - baseSize + 1;
}

/// <summary>The calendar month that holds recent event times, cached so that the hot path computes it with two
/// comparisons instead of a calendar conversion.</summary>
internal struct MonthCache
{
    private long _start;
    private long _end;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public long Start(long time)
    {
        if (time >= _start && time < _end)
            return _start;
        return Refresh(time);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private long Refresh(long time)
    {
        long start = Windows.MonthStart(time);
        _start = start;
        _end = Windows.AddMonths(start, 1);
        return start;
    }
}
