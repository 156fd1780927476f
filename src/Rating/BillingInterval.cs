namespace AlphaMesh.Rating;

/// <summary>How often a plan bills.</summary>
public enum BillingCadence
{
    Weekly = 0,
    Monthly = 1,
    Yearly = 2,
}

/// <summary>Where periods start.</summary>
public enum BillingAlignment
{
    /// <summary>Calendar periods: weeks start on Monday, months on the 1st, years on 1 January (UTC).</summary>
    Calendar = 0,

    /// <summary>
    /// Periods start on the anchor's weekday, day of month or day of year. An anchor day that a month lacks
    /// (the 31st, 29 February) falls on that month's last day, and the next period returns to the anchor day.
    /// </summary>
    Anniversary = 1,
}

/// <summary>A billing interval: a cadence and an alignment.</summary>
public readonly record struct BillingInterval(BillingCadence Cadence, BillingAlignment Alignment = BillingAlignment.Calendar)
{
    public static BillingInterval MonthlyCalendar => new(BillingCadence.Monthly);

    /// <summary>The period that contains <paramref name="time"/> (taken in UTC).</summary>
    /// <param name="time">Any instant.</param>
    /// <param name="anchor">The billing anchor (usually the subscription's start day); ignored for calendar periods.</param>
    public BillingPeriod PeriodContaining(DateTimeOffset time, DateOnly anchor) =>
        PeriodContaining(DateOnly.FromDateTime(time.UtcDateTime), anchor);

    /// <summary>The period that contains the UTC day <paramref name="day"/>.</summary>
    public BillingPeriod PeriodContaining(DateOnly day, DateOnly anchor)
    {
        switch (Cadence)
        {
            case BillingCadence.Weekly:
                {
                    // Calendar weeks start on Monday (ISO 8601); anniversary weeks on the anchor's weekday.
                    int offset = Alignment == BillingAlignment.Calendar
                        ? ((int)day.DayOfWeek + 6) % 7
                        : (((day.DayNumber - anchor.DayNumber) % 7) + 7) % 7;
                    var start = day.AddDays(-offset);
                    return new BillingPeriod(start, start.AddDays(7));
                }

            case BillingCadence.Monthly:
                {
                    int anchorDay = Alignment == BillingAlignment.Calendar ? 1 : anchor.Day;
                    int month = (day.Year * 12) + day.Month - 1;
                    var start = MonthStart(month, anchorDay);
                    if (day < start)
                    {
                        month--;
                        start = MonthStart(month, anchorDay);
                    }

                    return new BillingPeriod(start, MonthStart(month + 1, anchorDay));
                }

            case BillingCadence.Yearly:
                {
                    int anchorMonth = Alignment == BillingAlignment.Calendar ? 1 : anchor.Month;
                    int anchorDay = Alignment == BillingAlignment.Calendar ? 1 : anchor.Day;
                    int year = day.Year;
                    var start = YearStart(year, anchorMonth, anchorDay);
                    if (day < start)
                    {
                        year--;
                        start = YearStart(year, anchorMonth, anchorDay);
                    }

                    return new BillingPeriod(start, YearStart(year + 1, anchorMonth, anchorDay));
                }

            default:
                throw new InvalidOperationException($"Unknown billing cadence {Cadence}.");
        }
    }

    private static DateOnly MonthStart(int monthIndex, int anchorDay)
    {
        int year = monthIndex / 12;
        int month = (monthIndex % 12) + 1;
        return new DateOnly(year, month, Math.Min(anchorDay, DateTime.DaysInMonth(year, month)));
    }

    private static DateOnly YearStart(int year, int month, int anchorDay) =>
        new(year, month, Math.Min(anchorDay, DateTime.DaysInMonth(year, month)));
}

/// <summary>A half-open range of UTC calendar days <c>[Start, End)</c>.</summary>
public readonly record struct BillingPeriod(DateOnly Start, DateOnly End)
{
    /// <summary>Number of days in the period.</summary>
    public int Days => End.DayNumber - Start.DayNumber;

    public bool Contains(DateOnly day) => day >= Start && day < End;

    /// <summary>Days of this period that are also in <c>[from, to)</c>; 0 when they do not overlap.</summary>
    public int OverlapDays(DateOnly from, DateOnly to)
    {
        int start = Math.Max(Start.DayNumber, from.DayNumber);
        int end = Math.Min(End.DayNumber, to.DayNumber);
        return Math.Max(end - start, 0);
    }

    /// <inheritdoc />
    public override string ToString() => $"[{Start:yyyy-MM-dd}, {End:yyyy-MM-dd})";
}
