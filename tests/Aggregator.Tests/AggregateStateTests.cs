using AlphaMesh.Aggregator.Internal;
using CsCheck;

namespace AlphaMesh.Aggregator.Tests;

/// <summary>Properties of the per-window state: rolling up windows equals aggregating all their events at once.</summary>
public sealed class AggregateStateTests
{
    private static readonly Gen<decimal> Values = Gen.Int[-1_000_000, 1_000_000].SelectMany(n => Gen.Int[0, 6].Select(scale => n / (decimal)Math.Pow(10, scale)));

    private static readonly Gen<(decimal Value, long Time, ulong Id)[]> Events =
        Gen.Select(Values, Gen.Long[0, 1000], Gen.ULong).Array[1, 40];

    [Theory]
    [InlineData(Aggregation.Count)]
    [InlineData(Aggregation.Sum)]
    [InlineData(Aggregation.Min)]
    [InlineData(Aggregation.Max)]
    [InlineData(Aggregation.Avg)]
    [InlineData(Aggregation.Latest)]
    public void Merge_SplitIntoWindows_EqualsApplyingAll(Aggregation aggregation)
    {
        Events.Select(Gen.Int[0, 40]).Sample((events, cut) =>
        {
            cut = Math.Min(cut, events.Length);
            AggregateState all = default, left = default, right = default;
            for (int i = 0; i < events.Length; i++)
            {
                var input = new AggregateInput { Aggregation = aggregation, Value = events[i].Value, Time = events[i].Time, IdLow = events[i].Id };
                all.Apply(input, out _);
                if (i < cut)
                    left.Apply(input, out _);
                else
                    right.Apply(input, out _);
            }
            var merged = default(AggregateState);
            merged.Merge(right, aggregation);
            merged.Merge(left, aggregation);
            return merged.Value(aggregation) == all.Value(aggregation) && merged.Count == all.Count;
        });
    }

    [Fact]
    public void Apply_TimeWeightedReadings_DeltasAddUpToTheWindowValue()
    {
        Gen.Select(Values, Gen.Long[0, 3_600_000_000_000]).Array[1, 30].Sample(readings =>
        {
            Array.Sort(readings, (a, b) => a.Item2.CompareTo(b.Item2));
            const long end = 3_600_000_000_000;
            AggregateState state = default;
            decimal deltas = 0;
            foreach (var (value, time) in readings)
            {
                state.Apply(new AggregateInput { Aggregation = Aggregation.TimeWeightedSum, Value = value, Time = time, WindowEnd = end }, out decimal delta);
                deltas += delta;
            }
            return deltas == state.CloseReading(end).Sum;
        });
    }
}
