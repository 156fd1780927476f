using System.Collections.Immutable;
using System.Runtime.InteropServices;
using AlphaMesh.Rating.Internal;

namespace AlphaMesh.Rating;

/// <summary>
/// Turns a plan version, a period and the usage of each meter into invoice lines. Pure functions: nothing is
/// stored or changed, so rating a past period against another plan version is a simulation.
/// </summary>
public static class Rater
{
    [ThreadStatic]
    private static ChargeUsage[]? t_usageByCharge;

    /// <summary>Rates a whole period of a subscription active throughout it.</summary>
    public static Invoice RatePeriod(PlanVersion plan, BillingPeriod period, IReadOnlyDictionary<string, ChargeUsage> usage,
        RoundingMode rounding = RoundingMode.HalfEven, LineSelection lines = LineSelection.All) =>
        RatePeriod(plan, period, period.Start, period.End, usage, rounding, lines);

    /// <summary>
    /// Rates a period in which the subscription is active on the days <c>[activeFrom, activeTo)</c> (a start, an end
    /// or one side of a plan change). Fixed fees, minimum spends and the minimum commitment are prorated by
    /// <c>active days / period days</c>; usage charges are not.
    /// </summary>
    /// <param name="plan">A valid plan version (see <see cref="PlanValidator"/>).</param>
    /// <param name="period">The billing period.</param>
    /// <param name="activeFrom">First active day (UTC).</param>
    /// <param name="activeTo">Day after the last active day.</param>
    /// <param name="usage">Usage by meter code; a meter without an entry has zero usage.</param>
    /// <param name="rounding">The tenant's rounding mode.</param>
    /// <param name="lines">Which lines to produce.</param>
    public static Invoice RatePeriod(PlanVersion plan, BillingPeriod period, DateOnly activeFrom, DateOnly activeTo,
        IReadOnlyDictionary<string, ChargeUsage> usage, RoundingMode rounding = RoundingMode.HalfEven, LineSelection lines = LineSelection.All)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(usage);
        int n = plan.Charges.Length;
        // A buffer kept per thread rather than a stackalloc: a method with a stackalloc is compiled once, without the
        // profile-guided tier, and measured slower. Taken out while in use, so a re-entrant call gets its own.
        var buffer = t_usageByCharge is { } kept && kept.Length >= n ? kept : new ChargeUsage[Math.Max(n, 64)];
        t_usageByCharge = null;
        Span<ChargeUsage> byCharge = buffer;
        var charges = plan.Charges;
        if (usage is Dictionary<string, ChargeUsage> dictionary)
        {
            // The usual caller fills the dictionary in the plan's charge order: read it in that order while each key is
            // the next charge's meter (no hashing), and look up the charges from the first key out of place on.
            int i = 0;
            foreach (var entry in dictionary)
            {
                if (i == n)
                {
                    break;
                }

                string code = charges[i].Meter.Code;
                if (!ReferenceEquals(entry.Key, code) && !string.Equals(entry.Key, code, StringComparison.Ordinal))
                {
                    break;
                }

                byCharge[i++] = entry.Value;
            }

            for (; i < n; i++)
            {
                byCharge[i] = dictionary.TryGetValue(charges[i].Meter.Code, out var u) ? u : default;
            }
        }
        else
        {
            for (int i = 0; i < n; i++)
            {
                byCharge[i] = usage.TryGetValue(charges[i].Meter.Code, out var u) ? u : default;
            }
        }

        var invoice = RatePeriod(plan, period, activeFrom, activeTo, byCharge[..n], rounding, lines);
        t_usageByCharge = buffer;
        return invoice;
    }

    /// <summary>
    /// As <see cref="RatePeriod(PlanVersion, BillingPeriod, DateOnly, DateOnly, IReadOnlyDictionary{string, ChargeUsage}, RoundingMode, LineSelection)"/>,
    /// with the usage given in the order of <see cref="PlanVersion.Charges"/> (no lookups by meter code).
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="usageByCharge"/> does not have one entry per charge.</exception>
    public static Invoice RatePeriod(PlanVersion plan, BillingPeriod period, DateOnly activeFrom, DateOnly activeTo,
        ReadOnlySpan<ChargeUsage> usageByCharge, RoundingMode rounding = RoundingMode.HalfEven, LineSelection lines = LineSelection.All)
    {
        ArgumentNullException.ThrowIfNull(plan);
        if (usageByCharge.Length != plan.Charges.Length)
        {
            throw new ArgumentException($"Expected usage for each of the plan's {plan.Charges.Length} charges; got {usageByCharge.Length}.", nameof(usageByCharge));
        }
        var currency = Currency.Get(plan.CurrencyCode);
        int periodDays = CheckPeriod(period);
        int days = period.OverlapDays(activeFrom, activeTo);
        if (days == 0)
        {
            throw new ArgumentException($"The subscription is not active on any day of {period} (active [{activeFrom:yyyy-MM-dd}, {activeTo:yyyy-MM-dd})).", nameof(activeFrom));
        }

        var from = activeFrom > period.Start ? activeFrom : period.Start;
        var to = activeTo < period.End ? activeTo : period.End;
        // Sized for the lines that are always produced, so the array usually needs no resizing; the rare true-up
        // line grows it by one.
        int capacity = (lines & LineSelection.Usage) != 0 ? plan.Charges.Length : 0;
        foreach (var fee in plan.FixedFees)
        {
            if ((lines & Wanted(fee)) != 0)
            {
                capacity++;
            }
        }

        var result = new InvoiceLine[capacity];
        int count = 0;
        // The invoice total is the sum of the line amounts in line order; the usage total is only needed against a
        // minimum commitment. Both are kept as integers (AmountSum) and added as decimals only when that cannot be exact.
        var total = default(AmountSum);
        var usage = default(AmountSum);

        foreach (var fee in plan.FixedFees)
        {
            if ((lines & Wanted(fee)) != 0)
            {
                var line = FeeLine(LineKind.FixedFee, fee, fee.Amount, from, to, days, periodDays, currency, rounding);
                total.Add(line.Amount);
                result[count++] = line;
            }
        }

        if ((lines & LineSelection.Usage) != 0)
        {
            int firstUsage = count;
            var charges = plan.Charges;
            for (int i = 0; i < charges.Length; i++)
            {
                var line = UsageLine(charges[i], usageByCharge[i], from, to, days, periodDays, currency, rounding);
                total.Add(line.Amount);
                usage.Add(line.Amount);
                result[count++] = line;
            }

            if (plan.MinimumCommitment is { } commitmentAmount)
            {
                decimal usageTotal = usage.TryGetTotal(out var sum) ? sum : SumInOrder(result.AsSpan(firstUsage, count - firstUsage));
                decimal owed = Money.Prorate(commitmentAmount, days, periodDays);
                if (usageTotal < owed)
                {
                    decimal exact = owed - usageTotal;
                    Array.Resize(ref result, count + 1);
                    var trueUp = new InvoiceLine
                    {
                        Kind = LineKind.MinimumCommitmentTrueUp,
                        Code = "minimum_commitment",
                        FullPeriodAmount = commitmentAmount,
                        ServiceFrom = from,
                        ServiceTo = to,
                        Days = days,
                        PeriodDays = periodDays,
                        ExactAmount = exact,
                        Amount = currency.Round(exact, rounding),
                    };
                    total.Add(trueUp.Amount);
                    result[count++] = trueUp;
                }
            }
        }

        decimal invoiceTotal = total.TryGetTotal(out var exactTotal) ? exactTotal : SumInOrder(result.AsSpan(0, count));
        return new Invoice(plan.PlanCode, plan.Version, currency, period, rounding, Seal(result, count), invoiceTotal);
    }

    /// <summary>The amounts added one by one from 0m, in line order: the total when <see cref="AmountSum"/> cannot give it.</summary>
    private static decimal SumInOrder(ReadOnlySpan<InvoiceLine> lines)
    {
        decimal sum = 0m;
        foreach (var line in lines)
        {
            sum += line.Amount;
        }

        return sum;
    }

    /// <summary>
    /// What a period's usage would have cost under <paramref name="plan"/> (another version, another plan): validates
    /// the plan and rates, creating nothing.
    /// </summary>
    /// <exception cref="PlanValidationException">The plan is not valid.</exception>
    public static Invoice Simulate(PlanVersion plan, BillingPeriod period, IReadOnlyDictionary<string, ChargeUsage> usage,
        RoundingMode rounding = RoundingMode.HalfEven) =>
        Simulate(plan, period, period.Start, period.End, usage, rounding);

    /// <inheritdoc cref="Simulate(PlanVersion, BillingPeriod, IReadOnlyDictionary{string, ChargeUsage}, RoundingMode)"/>
    public static Invoice Simulate(PlanVersion plan, BillingPeriod period, DateOnly activeFrom, DateOnly activeTo,
        IReadOnlyDictionary<string, ChargeUsage> usage, RoundingMode rounding = RoundingMode.HalfEven)
    {
        PlanValidator.EnsureValid(plan);
        return RatePeriod(plan, period, activeFrom, activeTo, usage, rounding);
    }

    /// <summary>
    /// The lines due when a subscription moves from <paramref name="from"/> to <paramref name="to"/> on
    /// <paramref name="changeDate"/> (the new plan serves that day): a credit for the unused days
    /// <c>[changeDate, period end)</c> of each in-advance fee of the old plan, and the new plan's in-advance fees for
    /// the same days. Downgrades work the same way (the total may be negative: a credit).
    /// In-arrears fees and usage are rated at the period's end, one <see cref="RatePeriod(PlanVersion, BillingPeriod, DateOnly, DateOnly, IReadOnlyDictionary{string, ChargeUsage}, RoundingMode, LineSelection)"/>
    /// per side of the change.
    /// </summary>
    public static Invoice RatePlanChange(PlanVersion from, PlanVersion to, BillingPeriod period, DateOnly changeDate,
        RoundingMode rounding = RoundingMode.HalfEven)
    {
        ArgumentNullException.ThrowIfNull(from);
        ArgumentNullException.ThrowIfNull(to);
        if (from.CurrencyCode != to.CurrencyCode)
        {
            throw new ArgumentException($"A plan change keeps the currency: {from.CurrencyCode} to {to.CurrencyCode}.", nameof(to));
        }

        var currency = Currency.Get(to.CurrencyCode);
        int periodDays = CheckPeriod(period);
        if (!period.Contains(changeDate))
        {
            throw new ArgumentOutOfRangeException(nameof(changeDate), changeDate, $"The change date is outside {period}.");
        }

        int days = period.End.DayNumber - changeDate.DayNumber;
        var result = new InvoiceLine[from.FixedFees.Length + to.FixedFees.Length];
        int count = 0;
        decimal total = 0m;
        foreach (var fee in from.FixedFees)
        {
            if (fee.Timing == FeeTiming.InAdvance)
            {
                var line = FeeLine(LineKind.PlanChangeCredit, fee, -fee.Amount, changeDate, period.End, days, periodDays, currency, rounding);
                total += line.Amount;
                result[count++] = line;
            }
        }

        foreach (var fee in to.FixedFees)
        {
            if (fee.Timing == FeeTiming.InAdvance)
            {
                var line = FeeLine(LineKind.FixedFee, fee, fee.Amount, changeDate, period.End, days, periodDays, currency, rounding);
                total += line.Amount;
                result[count++] = line;
            }
        }

        return new Invoice(to.PlanCode, to.Version, currency, period, rounding, Seal(result, count), total);
    }

    private static InvoiceLine FeeLine(LineKind kind, FixedFee fee, decimal fullAmount, DateOnly from, DateOnly to, int days, int periodDays,
        Currency currency, RoundingMode rounding)
    {
        decimal exact = Money.Prorate(fullAmount, days, periodDays);
        return new InvoiceLine
        {
            Kind = kind,
            Code = fee.Code,
            Timing = fee.Timing,
            FullPeriodAmount = fullAmount,
            ServiceFrom = from,
            ServiceTo = to,
            Days = days,
            PeriodDays = periodDays,
            ExactAmount = exact,
            Amount = currency.Round(exact, rounding),
        };
    }

    private static InvoiceLine UsageLine(Charge charge, ChargeUsage usage, DateOnly from, DateOnly to, int days, int periodDays,
        Currency currency, RoundingMode rounding)
    {
        // The tier breakdown is not built here: InvoiceLine.GetTiers builds it from the charge when it is asked for.
        var rated = ChargeRater.RateAmount(charge, usage);

        decimal exact = rated.Amount;
        decimal topUp = 0m;
        if (decimal.Sign(charge.MinimumSpend) > 0)
        {
            decimal minimum = Money.Prorate(charge.MinimumSpend, days, periodDays);
            if (exact < minimum)
            {
                topUp = minimum - exact;
                exact = minimum;
            }
        }

        return new InvoiceLine
        {
            Kind = LineKind.Usage,
            Code = charge.Code,
            Charge = charge,
            Quantity = usage.Quantity,
            BillableQuantity = rated.BillableQuantity,
            EventCount = usage.EventCount,
            ServiceFrom = from,
            ServiceTo = to,
            Days = days,
            PeriodDays = periodDays,
            MinimumSpendTopUp = topUp,
            ExactAmount = exact,
            Amount = currency.Round(exact, rounding),
        };
    }

    private static LineSelection Wanted(FixedFee fee) =>
        fee.Timing == FeeTiming.InAdvance ? LineSelection.InAdvanceFees : LineSelection.InArrearsFees;

    private static int CheckPeriod(BillingPeriod period)
    {
        int periodDays = period.Days;
        return periodDays > 0 ? periodDays : throw new ArgumentException($"The period {period} has no days.", nameof(period));
    }

    private static ImmutableArray<InvoiceLine> Seal(InvoiceLine[] lines, int count)
    {
        if (count != lines.Length)
        {
            Array.Resize(ref lines, count);
        }

        return ImmutableCollectionsMarshal.AsImmutableArray(lines);
    }
}
