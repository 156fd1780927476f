using System.Collections.Immutable;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using AlphaMesh.Rating.Internal;

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
/// One invoice line, carrying what it takes to explain it: the charge or fee, the meter and quantity, the tiers (built
/// when asked for, <see cref="GetTiers"/>), the days it covers, the exact amount and the amount rounded once to the
/// currency's minor unit.
/// </summary>
public sealed record InvoiceLine
{
    public required LineKind Kind { get; init; }

    /// <summary>The fixed fee's or charge's code; <c>minimum_commitment</c> for a true-up.</summary>
    public required string Code { get; init; }

    /// <summary>The charge a usage line prices (its meter, model, free units and minimum spend); null on other lines.</summary>
    public Charge? Charge { get; init; }

    /// <summary>The meter of a usage line.</summary>
    public string? MeterCode => Charge?.Meter.Code;

    /// <summary>The charge model of a usage line.</summary>
    public ChargeModel? Model => Charge?.Model;

    /// <summary>The meter's quantity (usage lines).</summary>
    public decimal Quantity { get; init; }

    /// <summary>
    /// Free units deducted from <see cref="Quantity"/> before pricing: <c>Quantity - BillableQuantity</c>. With no
    /// units free the two are the same decimal, and the difference is 0 at the quantity's scale, written directly.
    /// </summary>
    public decimal FreeUnits => Money.SameBits(Quantity, BillableQuantity)
        ? new decimal(0, 0, 0, false, Quantity.Scale)
        : Quantity - BillableQuantity;

    /// <summary>Quantity priced after free units; the tier units add up to it.</summary>
    public decimal BillableQuantity { get; init; }

    public long EventCount { get; init; }

    /// <summary>Events that paid a per-event fee (percentage: the events after the model's free events); 0 otherwise.</summary>
    public long BillableEvents => Charge?.Model is PercentageModel m ? Math.Max(EventCount - m.FreeEvents, 0) : 0;

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

    /// <summary>
    /// The per-tier breakdown of a tiered usage line; empty for other lines. Built on each call (rating does not
    /// build it) from the charge's model and <see cref="BillableQuantity"/>, with the same arithmetic that priced the
    /// line: the tier units add up to <see cref="BillableQuantity"/> and the tier amounts to the charge's exact amount
    /// (<see cref="ExactAmount"/> less <see cref="MinimumSpendTopUp"/>), decimal for decimal.
    /// </summary>
    public ImmutableArray<TierLine> GetTiers()
    {
        var model = Charge?.Model;
        int max = model is null ? 0 : ChargeRater.MaxTierLines(model);
        if (max == 0)
        {
            return [];
        }

        var tiers = new TierLine[max];
        int count = ChargeRater.WriteTiers(model!, BillableQuantity, tiers);
        if (count != max)
        {
            Array.Resize(ref tiers, count);
        }

        return ImmutableCollectionsMarshal.AsImmutableArray(tiers);
    }

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

                foreach (var tier in GetTiers())
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
public sealed record Invoice
{
    internal Invoice(string planCode, int planVersion, Currency currency, BillingPeriod period, RoundingMode rounding,
        ImmutableArray<InvoiceLine> lines, decimal total)
    {
        PlanCode = planCode;
        PlanVersion = planVersion;
        Currency = currency;
        Period = period;
        Rounding = rounding;
        Lines = lines;
        Total = total;
    }

    public string PlanCode { get; }

    public int PlanVersion { get; }

    public Currency Currency { get; }

    public BillingPeriod Period { get; }

    public RoundingMode Rounding { get; }

    public ImmutableArray<InvoiceLine> Lines { get; }

    /// <summary>
    /// Sum of the line amounts (each already rounded), so the total is exact: added up in line order, starting from
    /// 0m, once, while the lines were made.
    /// </summary>
    public decimal Total { get; }
}
