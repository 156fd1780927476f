using System.Collections.Immutable;
using AlphaMesh.Rating.Internal;

namespace AlphaMesh.Rating;

/// <summary>One problem with a plan version: where it is (for example <c>charges[api_calls].tiers[2]</c>) and what is wrong.</summary>
public readonly record struct PlanValidationError(string Path, string Message)
{
    /// <inheritdoc />
    public override string ToString() => $"{Path}: {Message}";
}

/// <summary>A plan version was rejected; <see cref="Errors"/> lists every problem found.</summary>
public sealed class PlanValidationException(IReadOnlyList<PlanValidationError> errors)
    : Exception("The plan is not valid: " + string.Join("; ", errors))
{
    public IReadOnlyList<PlanValidationError> Errors { get; } = errors;
}

/// <summary>Checks a plan version before it is accepted. Rating assumes a valid plan.</summary>
public static class PlanValidator
{
    /// <summary>Every problem with <paramref name="plan"/>; empty when it is valid.</summary>
    public static ImmutableArray<PlanValidationError> Validate(PlanVersion plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        return new PlanChecks(plan).Run();
    }

    /// <summary>Throws <see cref="PlanValidationException"/> when <paramref name="plan"/> is not valid.</summary>
    public static void EnsureValid(PlanVersion plan)
    {
        var errors = Validate(plan);
        if (errors.Length > 0)
        {
            throw new PlanValidationException(errors);
        }
    }

    /// <summary>
    /// Whether a charge model can price a meter with this aggregation:
    /// <list type="bullet">
    /// <item>standard, graduated, volume: any aggregation (a price per unit of a consumed total, a level or a statistic);</item>
    /// <item>package: SUM, COUNT, UNIQUE_COUNT, TIME_WEIGHTED_SUM, MAX, LATEST (countable things); not MIN or AVG,
    /// which are statistics, not quantities to bundle;</item>
    /// <item>percentage, graduated percentage: SUM only (a rate applies to a summed amount; the meter's event
    /// count gives the per-event fee and the free events).</item>
    /// </list>
    /// </summary>
    public static bool Accepts(ChargeModel model, MeterAggregation aggregation) => AggregationRules.Accepts(model, aggregation);
}
