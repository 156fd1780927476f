namespace AlphaMesh.Rating;

/// <summary>How a meter aggregates its events into the quantity that a charge prices.</summary>
public enum MeterAggregation
{
    Sum = 0,
    Count = 1,
    Min = 2,
    Max = 3,
    Avg = 4,
    Latest = 5,
    UniqueCount = 6,
    TimeWeightedSum = 7,
}

/// <summary>The meter a charge prices: its code and its aggregation (which decides the charge models it accepts).</summary>
public readonly record struct Meter(string Code, MeterAggregation Aggregation);
