using System.Collections.Immutable;

namespace AlphaMesh.Rating.Internal;

/// <summary>The checks behind <see cref="PlanValidator"/>; collects every problem rather than stopping at the first.</summary>
internal sealed class PlanChecks(PlanVersion plan)
{
    private readonly ImmutableArray<PlanValidationError>.Builder _errors = ImmutableArray.CreateBuilder<PlanValidationError>();

    public ImmutableArray<PlanValidationError> Run()
    {
        if (string.IsNullOrWhiteSpace(plan.PlanCode))
        {
            Add("planCode", "the plan code is empty");
        }

        if (plan.Version < 1)
        {
            Add("version", $"version numbers start at 1; got {plan.Version}");
        }

        if (!Currency.TryGet(plan.CurrencyCode, out _))
        {
            Add("currency", $"'{plan.CurrencyCode}' is not an ISO 4217 currency code");
        }

        if (!Enum.IsDefined(plan.Interval.Cadence) || !Enum.IsDefined(plan.Interval.Alignment))
        {
            Add("interval", $"unknown billing interval {plan.Interval.Cadence}/{plan.Interval.Alignment}");
        }

        CheckFixedFees();
        CheckCharges();

        if (plan.MinimumCommitment is < 0)
        {
            Add("minimumCommitment", $"must not be negative; got {plan.MinimumCommitment}");
        }

        CheckEntitlements();
        return _errors.ToImmutable();
    }

    private void CheckFixedFees()
    {
        var codes = new HashSet<string>(StringComparer.Ordinal);
        foreach (var fee in plan.FixedFees)
        {
            var path = $"fixedFees[{fee.Code}]";
            if (string.IsNullOrWhiteSpace(fee.Code))
            {
                Add(path, "the fee code is empty");
            }
            else if (!codes.Add(fee.Code))
            {
                Add(path, "the fee code is used twice");
            }

            if (fee.Amount < 0)
            {
                Add(path, $"negative amount {fee.Amount}");
            }

            if (!Enum.IsDefined(fee.Timing))
            {
                Add(path, $"unknown timing {fee.Timing}");
            }
        }
    }

    private void CheckCharges()
    {
        var codes = new HashSet<string>(StringComparer.Ordinal);
        var meters = new HashSet<string>(StringComparer.Ordinal);
        foreach (var charge in plan.Charges)
        {
            var path = $"charges[{charge.Code}]";
            if (string.IsNullOrWhiteSpace(charge.Code))
            {
                Add(path, "the charge code is empty");
            }
            else if (!codes.Add(charge.Code))
            {
                Add(path, "the charge code is used twice");
            }

            if (string.IsNullOrWhiteSpace(charge.Meter.Code))
            {
                Add(path, "the meter code is empty");
            }
            else if (!meters.Add(charge.Meter.Code))
            {
                Add(path, $"meter '{charge.Meter.Code}' already has a charge; a plan has one charge per meter");
            }

            if (charge.FreeUnits < 0)
            {
                Add(path, $"negative free units {charge.FreeUnits}");
            }

            if (charge.MinimumSpend < 0)
            {
                Add(path, $"negative minimum spend {charge.MinimumSpend}");
            }

            if (charge.Model is null)
            {
                Add(path, "the charge has no model");
                continue;
            }

            if (!AggregationRules.Accepts(charge.Model, charge.Meter.Aggregation))
            {
                Add(path, $"a {charge.Model.Name} charge cannot price meter '{charge.Meter.Code}' ({charge.Meter.Aggregation}): {AggregationRules.Why(charge.Model)}");
            }

            CheckModel(path, charge.Model);
        }
    }

    private void CheckModel(string path, ChargeModel model)
    {
        switch (model)
        {
            case StandardModel m:
                NotNegative(path, "unit price", m.UnitPrice);
                break;
            case GraduatedModel m:
                CheckTiers(path, m.Tiers, "unit price");
                break;
            case VolumeModel m:
                CheckTiers(path, m.Tiers, "unit price");
                break;
            case GraduatedPercentageModel m:
                CheckTiers(path, m.Tiers, "rate");
                break;
            case PackageModel m:
                if (m.PackageSize <= 0)
                {
                    Add(path, $"package size must be greater than 0; got {m.PackageSize}");
                }

                NotNegative(path, "package price", m.PackagePrice);
                break;
            case PercentageModel m:
                NotNegative(path, "rate", m.Rate);
                if (m.Rate > 1)
                {
                    Add(path, $"rate {m.Rate} is above 1; rates are fractions (0.029 is 2.9%)");
                }

                if (m.FreeEvents < 0)
                {
                    Add(path, $"negative free events {m.FreeEvents}");
                }

                NotNegative(path, "fixed fee per event", m.FixedFeePerEvent);
                break;
            default:
                Add(path, $"unknown charge model {model.GetType().Name}");
                break;
        }
    }

    private void CheckTiers(string path, ImmutableArray<Tier> tiers, string priceName)
    {
        if (tiers.IsDefaultOrEmpty)
        {
            Add(path, "a tiered model needs at least one tier");
            return;
        }

        decimal previous = 0;
        for (int i = 0; i < tiers.Length; i++)
        {
            var tier = tiers[i];
            var tierPath = $"{path}.tiers[{i + 1}]";
            bool last = i == tiers.Length - 1;
            if (tier.UpTo is not { } upTo)
            {
                if (!last)
                {
                    Add(tierPath, "only the last tier may be unbounded (upTo missing on a tier that is not last)");
                }
            }
            else
            {
                if (last)
                {
                    Add(tierPath, $"the last tier must be unbounded, but it stops at upTo {upTo}");
                }

                if (upTo == previous)
                {
                    Add(tierPath, i == 0
                        ? "upTo 0 gives the first tier no units (it must be greater than 0)"
                        : $"duplicate bound: upTo {upTo} is the same as tier {i}'s");
                }
                else if (upTo < previous)
                {
                    Add(tierPath, i == 0
                        ? $"upTo {upTo} is negative"
                        : $"tiers out of order: upTo {upTo} is below tier {i}'s upTo {previous}");
                }

                previous = Math.Max(previous, upTo);
            }

            NotNegative(tierPath, priceName, tier.UnitPrice);
            NotNegative(tierPath, "flat fee", tier.FlatFee);
        }
    }

    private void CheckEntitlements()
    {
        var meters = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entitlement in plan.Entitlements)
        {
            var path = $"entitlements[{entitlement.MeterCode}]";
            if (string.IsNullOrWhiteSpace(entitlement.MeterCode))
            {
                Add(path, "the meter code is empty");
            }
            else if (!meters.Add(entitlement.MeterCode))
            {
                Add(path, "the meter has two entitlements");
            }

            if (entitlement.Limit < 0)
            {
                Add(path, $"negative limit {entitlement.Limit}");
            }
        }
    }

    private void NotNegative(string path, string what, decimal value)
    {
        if (value < 0)
        {
            Add(path, $"negative {what} {value}");
        }
    }

    private void Add(string path, string message) => _errors.Add(new PlanValidationError(path, message));
}
