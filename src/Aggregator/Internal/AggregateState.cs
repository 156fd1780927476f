using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace AlphaMesh.Aggregator.Internal;

/// <summary>
/// The aggregate of one series in one window: the value of the FASTER aggregates store, blittable (96 bytes),
/// the same shape for every aggregation so that one store and one set of functions serve them all.
/// <list type="bullet">
/// <item>COUNT: <see cref="Count"/>. SUM: <see cref="Sum"/>. AVG: <see cref="Sum"/> / <see cref="Count"/>,
/// divided only when read, so that roll-ups add sums and counts and stay exact.</item>
/// <item>MIN / MAX: <see cref="Min"/> / <see cref="Max"/>, valid when <see cref="Count"/> &gt; 0.</item>
/// <item>LATEST: <see cref="Latest"/> of the event with the greatest (<see cref="LatestTime"/>, id hash).</item>
/// <item>UNIQUE_COUNT: <see cref="Count"/> = distinct values first seen in this window (see <see cref="PartitionAggregator"/>).</item>
/// <item>TIME_WEIGHTED_SUM: <see cref="Sum"/> = unit-seconds of the closed segments; the last reading
/// (<see cref="Latest"/> at <see cref="LatestTime"/>) holds until the window's end, added when read.</item>
/// </list>
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct AggregateState
{
    public decimal Sum;
    public decimal Min;
    public decimal Max;
    public decimal Latest;
    public long Count;
    public long LatestTime;
    public ulong LatestIdLow;
    public ulong LatestIdHigh;

    public readonly bool IsEmpty => Count == 0;

    /// <summary>Applies one event. Returns false only for a gauge reading older than the window's latest
    /// reading (TIME_WEIGHTED_SUM), which leaves the state unchanged; <paramref name="delta"/> is the change of
    /// the window's time-weighted value (for the current-period totals).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Apply(in AggregateInput input, out decimal delta)
    {
        delta = 0;
        switch (input.Aggregation)
        {
            case Aggregation.Count:
            case Aggregation.UniqueCount:
                Count++;
                return true;
            case Aggregation.Sum:
            case Aggregation.Avg:
                Sum += input.Value;
                Count++;
                return true;
            case Aggregation.Min:
                if (Count == 0 || input.Value < Min)
                    Min = input.Value;
                Count++;
                return true;
            case Aggregation.Max:
                if (Count == 0 || input.Value > Max)
                    Max = input.Value;
                Count++;
                return true;
            case Aggregation.Latest:
                if (Count == 0 || IsLater(input.Time, input.IdLow, input.IdHigh))
                    SetLatest(input);
                Count++;
                return true;
            case Aggregation.TimeWeightedSum:
                return ApplyReading(input, out delta);
            default:
                return false;
        }
    }

    private bool ApplyReading(in AggregateInput input, out decimal delta)
    {
        delta = 0;
        if (Count > 0 && input.Time < LatestTime)
            return false; // out of order inside the window: the segment it would split is already integrated
        decimal before = Count == 0 ? 0 : Sum + UnitSeconds(Latest, input.WindowEnd - LatestTime);
        if (Count == 0)
        {
            SetLatest(input);
        }
        else if (input.Time > LatestTime)
        {
            Sum += UnitSeconds(Latest, input.Time - LatestTime);
            SetLatest(input);
        }
        else if (IsLater(input.Time, input.IdLow, input.IdHigh))
        {
            // Same instant: the earlier reading's segment has no length; the greater id holds the value.
            SetLatest(input);
        }
        Count++;
        delta = Sum + UnitSeconds(Latest, input.WindowEnd - LatestTime) - before;
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private readonly bool IsLater(long time, ulong idLow, ulong idHigh)
        => time > LatestTime || (time == LatestTime && new UInt128(idHigh, idLow) > new UInt128(LatestIdHigh, LatestIdLow));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void SetLatest(in AggregateInput input)
    {
        Latest = input.Value;
        LatestTime = input.Time;
        LatestIdLow = input.IdLow;
        LatestIdHigh = input.IdHigh;
    }

    /// <summary>value × nanoseconds / 10^9: exact in decimal (a division by a power of ten only moves the scale).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static decimal UnitSeconds(decimal value, long nanos) => value * nanos / Windows.NanosPerSecond;

    /// <summary>Adds another window's state of the same aggregation (roll-ups and merging series).
    /// TIME_WEIGHTED_SUM states must be closed first (<see cref="CloseReading"/>).</summary>
    public void Merge(in AggregateState other, Aggregation aggregation)
    {
        if (other.Count == 0)
            return;
        switch (aggregation)
        {
            case Aggregation.Min:
                if (Count == 0 || other.Min < Min)
                    Min = other.Min;
                break;
            case Aggregation.Max:
                if (Count == 0 || other.Max > Max)
                    Max = other.Max;
                break;
            case Aggregation.Latest:
                if (Count == 0 || IsLater(other.LatestTime, other.LatestIdLow, other.LatestIdHigh))
                {
                    Latest = other.Latest;
                    LatestTime = other.LatestTime;
                    LatestIdLow = other.LatestIdLow;
                    LatestIdHigh = other.LatestIdHigh;
                }
                break;
            default:
                Sum += other.Sum;
                break;
        }
        Count += other.Count;
    }

    /// <summary>A TIME_WEIGHTED_SUM window's total: the closed segments plus the last reading until the window's end.</summary>
    public readonly AggregateState CloseReading(long windowEnd)
    {
        var closed = this;
        if (Count > 0)
            closed.Sum = Sum + UnitSeconds(Latest, windowEnd - LatestTime);
        return closed;
    }

    /// <summary>The value a query or a check reports. TIME_WEIGHTED_SUM states must be closed.</summary>
    public readonly decimal Value(Aggregation aggregation) => aggregation switch
    {
        Aggregation.Count or Aggregation.UniqueCount => Count,
        Aggregation.Sum or Aggregation.TimeWeightedSum => Sum,
        Aggregation.Min => Min,
        Aggregation.Max => Max,
        Aggregation.Avg => Count == 0 ? 0 : Sum / Count,
        Aggregation.Latest => Latest,
        _ => 0,
    };
}

/// <summary>One event's contribution to one aggregate (the RMW input of the aggregates store).</summary>
internal struct AggregateInput
{
    public Aggregation Aggregation;
    public decimal Value;
    public long Time;
    public ulong IdLow;
    public ulong IdHigh;
    /// <summary>End of the window being updated (TIME_WEIGHTED_SUM integrates up to it).</summary>
    public long WindowEnd;
}
