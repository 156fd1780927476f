using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;

namespace AlphaMesh.Aggregator.Internal;

/// <summary>
/// The current period's total of one (tenant, meter, customer), written by the loop of the partition that owns
/// the customer and read by entitlement checks on any thread. A sequence lock makes the reads consistent without
/// ever blocking the reader behind the writer (or the writer behind readers): the writer makes the version odd,
/// writes, and makes it even again; a reader retries when it saw an odd version or the version changed.
/// There is one per customer and meter, so it keeps only what its meter's aggregation uses of an
/// <see cref="AggregateState"/> (one value and the count; LATEST also the reading's time and id): about half the bytes.
/// </summary>
internal class PeriodTotal
{
    private int _version;
    private long _periodStart;
    /// <summary>The sum (SUM, AVG, TIME_WEIGHTED_SUM), minimum, maximum or latest value; nothing for COUNT and UNIQUE_COUNT.</summary>
    private decimal _value;
    private long _count;

    private protected PeriodTotal(UInt128 key, Aggregation aggregation)
    {
        Key = key;
        Aggregation = aggregation;
    }

    public static PeriodTotal Create(UInt128 key, Aggregation aggregation)
        => aggregation == Aggregation.Latest ? new LatestPeriodTotal(key) : new PeriodTotal(key, aggregation);

    public UInt128 Key { get; }

    public Aggregation Aggregation { get; }

    /// <summary>Set (by the owning partition's loop) while the total has changes its state chain does not hold yet.</summary>
    public bool StateChanged;

    /// <summary>Adds an event of the period starting at <paramref name="periodStart"/>. An event of an earlier
    /// period than the current one changes nothing here (it is in the window aggregates); a later one starts a new period.
    /// <paramref name="apply"/> is the event as applied to a window; for TIME_WEIGHTED_SUM, <paramref name="delta"/>
    /// is the change of its window's value, and for UNIQUE_COUNT the caller calls only for a new distinct value.
    /// Only the owning loop writes, so it reads its own fields without the sequence lock.</summary>
    public void Add(long periodStart, in AggregateInput apply, decimal delta)
    {
        if (periodStart < _periodStart)
            return;
        bool newPeriod = periodStart > _periodStart;
        decimal value = newPeriod ? 0 : _value;
        long count = newPeriod ? 0 : _count;
        // As AggregateState.Apply would change the fields this total keeps (once per event and meter: no whole state).
        switch (apply.Aggregation)
        {
            case Aggregation.Count or Aggregation.UniqueCount:
                break;
            case Aggregation.Sum or Aggregation.Avg:
                value += apply.Value;
                break;
            case Aggregation.TimeWeightedSum:
                value += delta;
                break;
            case Aggregation.Min:
                if (count == 0 || apply.Value < value)
                    value = apply.Value;
                break;
            case Aggregation.Max:
                if (count == 0 || apply.Value > value)
                    value = apply.Value;
                break;
            default:
                var state = newPeriod ? default : Expand();
                state.Apply(apply, out _);
                Write(periodStart, state);
                return;
        }
        Publish(periodStart, value, count + 1, NoReading);
    }

    /// <summary>Reads one field, to bring the total into the cache before it is written (the partition loop's
    /// staged loads); the result means nothing.</summary>
    public long Load() => _periodStart;

    /// <summary>Replaces the total; of <paramref name="state"/> it keeps what the meter's aggregation uses.</summary>
    public void Write(long periodStart, in AggregateState state)
    {
        decimal value = Aggregation switch
        {
            Aggregation.Min => state.Min,
            Aggregation.Max => state.Max,
            Aggregation.Latest => state.Latest,
            Aggregation.Count or Aggregation.UniqueCount => 0,
            _ => state.Sum,
        };
        Publish(periodStart, value, state.Count, state);
    }

    private static readonly AggregateState NoReading;

    /// <summary>Writes the fields under the sequence lock; a LATEST total also <paramref name="reading"/>'s time and id.</summary>
    private void Publish(long periodStart, decimal value, long count, in AggregateState reading)
    {
        int version = _version;
        Volatile.Write(ref _version, version + 1);
        Interlocked.MemoryBarrier();
        _periodStart = periodStart;
        _value = value;
        _count = count;
        if (Aggregation == Aggregation.Latest)
            ((LatestPeriodTotal)this).WriteReading(reading);
        Volatile.Write(ref _version, version + 2);
    }

    public void Read(out long periodStart, out AggregateState state)
    {
        var spin = new SpinWait();
        while (true)
        {
            int before = Volatile.Read(ref _version);
            periodStart = _periodStart;
            state = Expand();
            Interlocked.MemoryBarrier();
            if ((before & 1) == 0 && Volatile.Read(ref _version) == before)
                return;
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    /// <summary>The total as the <see cref="AggregateState"/> of its aggregation (the other fields left empty, as
    /// applying events of that aggregation leaves them).</summary>
    private AggregateState Expand()
    {
        var state = new AggregateState { Count = _count };
        switch (Aggregation)
        {
            case Aggregation.Min:
                state.Min = _value;
                break;
            case Aggregation.Max:
                state.Max = _value;
                break;
            case Aggregation.Latest:
                state.Latest = _value;
                ((LatestPeriodTotal)this).ReadReading(ref state);
                break;
            case Aggregation.Count or Aggregation.UniqueCount:
                break;
            default:
                state.Sum = _value;
                break;
        }
        return state;
    }
}

/// <summary>A LATEST meter's total: also the time and id of the reading it holds (which later event replaces it).</summary>
internal sealed class LatestPeriodTotal(UInt128 key) : PeriodTotal(key, Aggregation.Latest)
{
    private long _time;
    private ulong _idLow;
    private ulong _idHigh;

    public void WriteReading(in AggregateState state)
    {
        _time = state.LatestTime;
        _idLow = state.LatestIdLow;
        _idHigh = state.LatestIdHigh;
    }

    public void ReadReading(ref AggregateState state)
    {
        state.LatestTime = _time;
        state.LatestIdLow = _idLow;
        state.LatestIdHigh = _idHigh;
    }
}

/// <summary>All current-period totals, shared by the partitions (each customer's totals are written by one loop),
/// by key and by (tenant, meter).</summary>
internal sealed class PeriodTotals
{
    private readonly PeriodTotalTable _totals = new();
    private readonly ConcurrentDictionary<(string Tenant, string MeterKey), PeriodTotalList> _byMeter = new();

    public bool TryGet(UInt128 key, [NotNullWhen(true)] out PeriodTotal? total) => _totals.TryGet(key, out total);

    /// <summary>Only the owning loop creates a customer's entries, so get-or-add never races with itself. Called once
    /// per new (tenant, meter, customer) and at recovery, never per event of a known one.</summary>
    public PeriodTotal GetOrAdd(UInt128 key, string tenant, string meterKey, string customer, Aggregation aggregation, out bool added)
    {
        if (_totals.TryGet(key, out var total))
        {
            added = false;
            return total;
        }
        total = PeriodTotal.Create(key, aggregation);
        _totals.Add(total);
        _byMeter.GetOrAdd((tenant, meterKey), static _ => new PeriodTotalList()).Add(new CustomerTotal(customer, total));
        added = true;
        return total;
    }

    /// <summary>The totals of every customer with usage of the meter (in this or an earlier period), as they are now:
    /// safe on any thread, while the loops add more.</summary>
    public ArraySegment<CustomerTotal> ForMeter(string tenant, string meterKey)
        => _byMeter.TryGetValue((tenant, meterKey), out var list) ? list.Snapshot() : ArraySegment<CustomerTotal>.Empty;
}

/// <summary>A customer's current-period total of one meter, named: the name is the series' own string (nothing new is
/// allocated for it), kept here rather than in the total so that the total the partition loop writes stays as it was.</summary>
internal readonly record struct CustomerTotal(string Customer, PeriodTotal Total);

/// <summary>
/// An append-only list that the loops of several partitions add to (under a lock: once per new customer) and that any
/// thread reads without a lock. The array is published before the count, so a reader that reads the count first and
/// the array second sees at least that many items.
/// </summary>
internal sealed class PeriodTotalList
{
    private readonly Lock _lock = new();
    private CustomerTotal[] _items = new CustomerTotal[4];
    private int _count;

    public void Add(CustomerTotal total)
    {
        lock (_lock)
        {
            var items = _items;
            if (_count == items.Length)
            {
                Array.Resize(ref items, items.Length * 2);
                Volatile.Write(ref _items, items);
            }
            items[_count] = total;
            Volatile.Write(ref _count, _count + 1);
        }
    }

    public ArraySegment<CustomerTotal> Snapshot()
    {
        int count = Volatile.Read(ref _count);
        return new ArraySegment<CustomerTotal>(Volatile.Read(ref _items), 0, count);
    }
}

/// <summary>
/// The totals by key: an open-addressing table (linear probing, at most half full) of references, 8 to 16 bytes per
/// total where a <see cref="ConcurrentDictionary{TKey, TValue}"/> node costs about 72; with millions of customers that
/// is most of what the index of the totals weighs. Writers (the partition loops, once per new total) take a lock;
/// readers (entitlement checks, on any thread) never do: a slot only ever goes from empty to a total, and a grown
/// table is filled before it is published, so a reader finds every total added before its read began.
/// Totals are never removed. Keys are 128-bit hashes, so their low bits are the slot.
/// </summary>
internal sealed class PeriodTotalTable
{
    private readonly Lock _lock = new();
    private PeriodTotal?[] _slots = new PeriodTotal?[1024];
    private int _count;

    public bool TryGet(UInt128 key, [NotNullWhen(true)] out PeriodTotal? total)
    {
        var slots = Volatile.Read(ref _slots);
        int mask = slots.Length - 1;
        for (int slot = (int)((ulong)key & (uint)mask); ; slot = (slot + 1) & mask)
        {
            total = Volatile.Read(ref slots[slot]);
            if (total is null)
                return false;
            if (total.Key == key)
                return true;
        }
    }

    public void Add(PeriodTotal total)
    {
        lock (_lock)
        {
            if (TryGet(total.Key, out _))
                throw new ArgumentException($"A total with key {total.Key} is already in the table.", nameof(total));
            var slots = _slots;
            if (2 * (_count + 1) > slots.Length)
            {
                var grown = new PeriodTotal?[slots.Length * 2];
                foreach (var existing in slots)
                {
                    if (existing is not null)
                        Insert(grown, existing);
                }
                Volatile.Write(ref _slots, grown);
                slots = grown;
            }
            Insert(slots, total);
            _count++;
        }
    }

    private static void Insert(PeriodTotal?[] slots, PeriodTotal total)
    {
        int mask = slots.Length - 1;
        int slot = (int)((ulong)total.Key & (uint)mask);
        while (slots[slot] is not null)
            slot = (slot + 1) & mask;
        Volatile.Write(ref slots[slot], total);
    }
}
