namespace AlphaMesh.Rating.Tests;

public sealed class BillingIntervalTests
{
    private static readonly DateOnly NoAnchor = new(2020, 1, 1);

    public static TheoryData<BillingCadence, BillingAlignment, string, string, string, string> Cases => new()
    {
        // cadence, alignment, anchor, day, expected start, expected end
        { BillingCadence.Monthly, BillingAlignment.Calendar, "2020-01-01", "2026-02-14", "2026-02-01", "2026-03-01" },
        { BillingCadence.Monthly, BillingAlignment.Calendar, "2020-01-01", "2026-12-31", "2026-12-01", "2027-01-01" },
        { BillingCadence.Monthly, BillingAlignment.Anniversary, "2026-01-15", "2026-03-14", "2026-02-15", "2026-03-15" },
        { BillingCadence.Monthly, BillingAlignment.Anniversary, "2026-01-15", "2026-03-15", "2026-03-15", "2026-04-15" },
        // Anchor on the 31st: February's period starts on its last day, March's on the 31st again.
        { BillingCadence.Monthly, BillingAlignment.Anniversary, "2026-01-31", "2026-02-15", "2026-01-31", "2026-02-28" },
        { BillingCadence.Monthly, BillingAlignment.Anniversary, "2026-01-31", "2026-03-01", "2026-02-28", "2026-03-31" },
        { BillingCadence.Monthly, BillingAlignment.Anniversary, "2026-01-20", "2027-01-05", "2026-12-20", "2027-01-20" },
        { BillingCadence.Yearly, BillingAlignment.Calendar, "2020-01-01", "2024-02-29", "2024-01-01", "2025-01-01" },
        { BillingCadence.Yearly, BillingAlignment.Anniversary, "2024-02-29", "2025-03-01", "2025-02-28", "2026-02-28" },
        { BillingCadence.Yearly, BillingAlignment.Anniversary, "2024-02-29", "2028-02-29", "2028-02-29", "2029-02-28" },
        { BillingCadence.Yearly, BillingAlignment.Anniversary, "2024-06-10", "2026-06-09", "2025-06-10", "2026-06-10" },
        // 2026-11-25 is a Wednesday: the calendar week starts Monday 23rd.
        { BillingCadence.Weekly, BillingAlignment.Calendar, "2020-01-01", "2026-11-25", "2026-11-23", "2026-11-30" },
        { BillingCadence.Weekly, BillingAlignment.Calendar, "2020-01-01", "2026-11-23", "2026-11-23", "2026-11-30" },
        // Anchored on Friday 2026-11-27: weeks run Friday to Friday, also before the anchor.
        { BillingCadence.Weekly, BillingAlignment.Anniversary, "2026-11-27", "2026-11-25", "2026-11-20", "2026-11-27" },
        { BillingCadence.Weekly, BillingAlignment.Anniversary, "2026-11-27", "2026-12-04", "2026-12-04", "2026-12-11" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void PeriodContaining_Day_ReturnsPeriodAroundIt(BillingCadence cadence, BillingAlignment alignment, string anchor, string day, string start, string end)
    {
        var period = new BillingInterval(cadence, alignment).PeriodContaining(DateOnly.Parse(day), DateOnly.Parse(anchor));

        Assert.Equal(new BillingPeriod(DateOnly.Parse(start), DateOnly.Parse(end)), period);
        Assert.True(period.Contains(DateOnly.Parse(day)));
    }

    [Fact]
    public void PeriodContaining_TimeWithOffset_UsesUtcDay()
    {
        // 2026-03-01T00:30+02:00 is 2026-02-28T22:30Z: still February in UTC.
        var time = new DateTimeOffset(2026, 3, 1, 0, 30, 0, TimeSpan.FromHours(2));

        var period = BillingInterval.MonthlyCalendar.PeriodContaining(time, NoAnchor);

        Assert.Equal(new BillingPeriod(new DateOnly(2026, 2, 1), new DateOnly(2026, 3, 1)), period);
        Assert.Equal(28, period.Days);
    }

    [Fact]
    public void PeriodContaining_ConsecutivePeriods_TileWithoutGaps()
    {
        var interval = new BillingInterval(BillingCadence.Monthly, BillingAlignment.Anniversary);
        var anchor = new DateOnly(2024, 1, 31);
        var period = interval.PeriodContaining(anchor, anchor);
        for (int i = 0; i < 30; i++)
        {
            var next = interval.PeriodContaining(period.End, anchor);
            Assert.Equal(period.End, next.Start);
            Assert.True(next.Days is >= 28 and <= 31);
            period = next;
        }
    }
}
