using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;

namespace AlphaMesh.Aggregator.Internal;

/// <summary>
/// The current period's total of one (tenant, meter, customer), written by the loop of the partition that owns
/// the customer and read by entitlement checks on any thread. A sequence lock makes the reads consistent without
/// ever blocking the reader behind the writer (or the writer behind readers): the writer makes the version odd,
/// writes, and makes it even again; a reader retries when it saw an odd version or the version changed.
/// </summary>
internal sealed class PeriodTotal
{
    private int _version;
    private long _periodStart;
    private AggregateState _state;

    public PeriodTotal(UInt128 key) => Key = key;

    public UInt128 Key { get; }

    /// <summary>Set (by the owning partition's loop) while the total has changes its state chain does not hold yet.</summary>
    public bool StateChanged;

    /// <summary>Adds an event of the period starting at <paramref name="periodStart"/>. An event of an earlier
    /// period than the current one changes nothing here (it is in the window aggregates); a later one starts a new period.
    /// <paramref name="apply"/> is the event as applied to a window; for TIME_WEIGHTED_SUM, <paramref name="delta"/>
    /// is the change of its window's value, and for UNIQUE_COUNT the caller calls only for a new distinct value.</summary>
    public void Add(long periodStart, in AggregateInput apply, decimal delta)
    {
        var state = _state;
        if (periodStart < _periodStart)
            return;
        if (periodStart > _periodStart)
            state = default;
        if (apply.Aggregation == Aggregation.TimeWeightedSum)
        {
            state.Sum += delta;
            state.Count++;
        }
        else
        {
            state.Apply(apply, out _);
        }
        Write(periodStart, state);
    }

    /// <summary>Reads one field, to bring the total into the cache before it is written (the partition loop's
    /// staged loads); the result means nothing.</summary>
    public long Load() => _periodStart;

    public void Write(long periodStart, in AggregateState state)
    {
        int version = _version;
        Volatile.Write(ref _version, version + 1);
        Interlocked.MemoryBarrier();
        _periodStart = periodStart;
        _state = state;
        Volatile.Write(ref _version, version + 2);
    }

    public void Read(out long periodStart, out AggregateState state)
    {
        var spin = new SpinWait();
        while (true)
        {
            int before = Volatile.Read(ref _version);
            periodStart = _periodStart;
            state = _state;
            Interlocked.MemoryBarrier();
            if ((before & 1) == 0 && Volatile.Read(ref _version) == before)
                return;
            spin.SpinOnce(sleep1Threshold: -1);
        }
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
    public PeriodTotal GetOrAdd(UInt128 key, string tenant, string meterKey, string customer, out bool added)
    {
        if (_totals.TryGet(key, out var total))
        {
            added = false;
            return total;
        }
        total = new PeriodTotal(key);
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
