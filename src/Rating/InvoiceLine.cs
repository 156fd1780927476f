using System.Collections.Immutable;
using System.Globalization;
using System.Text;

namespace AlphaMesh.Rating;

/// <summary>What an invoice line is for.</summary>
public enum LineKind
{
    /// <summary>A recurring fixed fee, prorated by days when the service covers part of the period.</summary>
    FixedFee = 0,

    /// <summary>A usage charge (never prorated; its minimum spend is).</summary>
    Usage = 1,

    /// <summary>The shortfall of the usage charges under the plan's (prorated) minimum commitment.</summary>
    MinimumCommitmentTrueUp = 2,

    /// <summary>A negative line: the unused part of an in-advance fee of the plan being left.</summary>
    PlanChangeCredit = 3,
}

/// <summary>Which lines a rating produces; the billing run asks for in-advance fees at a period's start and the rest at its end.</summary>
[Flags]
public enum LineSelection
{
    InAdvanceFees = 1,
    InArrearsFees = 2,

    /// <summary>Usage charges and the minimum commitment true-up.</summary>
    Usage = 4,
    All = InAdvanceFees | InArrearsFees | Usage,
}

/// <summary>
/// One invoice line, carrying what it takes to explain it: the charge or fee, the meter and quantity, the tiers,
/// the days it covers, the exact amount and the amount rounded once to the currency's minor unit.
/// </summary>
public sealed record InvoiceLine
{
    public required LineKind Kind { get; init; }

    /// <summary>The fixed fee's or charge's code; <c>minimum_commitment</c> for a true-up.</summary>
    public required string Code { get; init; }

    /// <summary>The meter of a usage line.</summary>
    public string? MeterCode { get; init; }

    /// <summary>The charge model of a usage line.</summary>
    public ChargeModel? Model { get; init; }

    /// <summary>The meter's quantity (usage lines).</summary>
    public decimal Quantity { get; init; }

    /// <summary>Free units deducted from <see cref="Quantity"/> before pricing.</summary>
    public decimal FreeUnits { get; init; }

    /// <summary>Quantity priced after free units; the tier units add up to it.</summary>
    public decimal BillableQuantity { get; init; }

    public long EventCount { get; init; }

    /// <summary>Events that paid a per-event fee (percentage).</summary>
    public long BillableEvents { get; init; }

    /// <summary>Per-tier breakdown of tiered models; empty otherwise.</summary>
    public ImmutableArray<TierLine> Tiers { get; init; } = [];

    /// <summary>The full-period price that was prorated (fixed fee or minimum commitment); 0 for usage lines.</summary>
    public decimal FullPeriodAmount { get; init; }

    public FeeTiming? Timing { get; init; }

    /// <summary>First day of service the line covers.</summary>
    public required DateOnly ServiceFrom { get; init; }

    /// <summary>Day after the last day of service the line covers.</summary>
    public required DateOnly ServiceTo { get; init; }

    /// <summary>Days covered; with <see cref="PeriodDays"/> the proration fraction of fees and minimums.</summary>
    public required int Days { get; init; }

    public required int PeriodDays { get; init; }

    /// <summary>What the minimum spend added to the charge's exact amount (usage lines).</summary>
    public decimal MinimumSpendTopUp { get; init; }

    /// <summary>The exact amount, before the one rounding.</summary>
    public required decimal ExactAmount { get; init; }

    /// <summary><see cref="ExactAmount"/> rounded once to the currency's minor unit.</summary>
    public required decimal Amount { get; init; }

    /// <summary>A human-readable explanation of how the amount was reached.</summary>
    public string Explain()
    {
        var c = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        switch (Kind)
        {
            case LineKind.Usage:
                text.Append(c, $"{Code} ({Model?.Name}) on meter {MeterCode}: quantity {Quantity}");
                if (FreeUnits > 0)
                {
                    text.Append(c, $", {FreeUnits} free, {BillableQuantity} billable");
                }

                foreach (var tier in Tiers)
                {
                    text.Append(c, $"; tier {tier.Tier} ({tier.From}, {tier.UpTo?.ToString(c) ?? "∞"}]: {tier.Units} x {tier.UnitPrice} + {tier.FlatFee} = {tier.Amount}");
                }

                if (Model is PackageModel p)
                {
                    text.Append(c, $"; {decimal.Ceiling(BillableQuantity / p.PackageSize)} packages of {p.PackageSize} x {p.PackagePrice}");
                }
                else if (Model is PercentageModel pct)
                {
                    text.Append(c, $"; {BillableQuantity} x {pct.Rate} + {BillableEvents} events x {pct.FixedFeePerEvent}");
                }
                else if (Model is StandardModel s)
                {
                    text.Append(c, $"; {BillableQuantity} x {s.UnitPrice}");
                }

                if (MinimumSpendTopUp > 0)
                {
                    text.Append(c, $"; minimum spend adds {MinimumSpendTopUp}");
                }

                break;
            case LineKind.FixedFee:
            case LineKind.PlanChangeCredit:
            case LineKind.MinimumCommitmentTrueUp:
                text.Append(c, $"{Kind} {Code}: {FullPeriodAmount} x {Days}/{PeriodDays} days");
                break;
        }

        text.Append(c, $"; exact {ExactAmount}, billed {Amount} for [{ServiceFrom:yyyy-MM-dd}, {ServiceTo:yyyy-MM-dd})");
        return text.ToString();
    }
}

/// <summary>The lines of one rating and their total (the exact sum of the rounded line amounts).</summary>
public sealed record Invoice(string PlanCode, int PlanVersion, Currency Currency, BillingPeriod Period, RoundingMode Rounding, ImmutableArray<InvoiceLine> Lines)
{
    /// <summary>Sum of the line amounts (each already rounded), so the total is exact.</summary>
    public decimal Total => Sum(Lines);

    private static decimal Sum(ImmutableArray<InvoiceLine> lines)
    {
        decimal total = 0m;
        foreach (var line in lines)
        {
            total += line.Amount;
        }

        return total;
    }
}
