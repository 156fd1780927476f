namespace AlphaMesh.Rating.Internal;

internal static class AggregationRules
{
    public static bool Accepts(ChargeModel model, MeterAggregation aggregation) => model switch
    {
        StandardModel or GraduatedModel or VolumeModel => Enum.IsDefined(aggregation),
        PackageModel => aggregation is MeterAggregation.Sum or MeterAggregation.Count or MeterAggregation.UniqueCount
            or MeterAggregation.TimeWeightedSum or MeterAggregation.Max or MeterAggregation.Latest,
        PercentageModel or GraduatedPercentageModel => aggregation == MeterAggregation.Sum,
        _ => false,
    };

    public static string Why(ChargeModel model) => model switch
    {
        PackageModel => "a package charge bundles countable units (SUM, COUNT, UNIQUE_COUNT, TIME_WEIGHTED_SUM, MAX, LATEST), not a statistic",
        PercentageModel or GraduatedPercentageModel => "a percentage applies to a summed amount and needs the event count, so the meter must be SUM",
        _ => "the aggregation is not known",
    };
}
