using System.Diagnostics.CodeAnalysis;

namespace AlphaMesh.Aggregator.Internal;

/// <summary>
/// One series of a meter: the aggregates of one customer and one combination of group values. The aggregates
/// store is keyed by the series' 128-bit hash; this entry keeps the names behind the hash (for query rows) and
/// the range of base windows that hold data (so that a query reads only windows that can exist).
/// </summary>
internal sealed class Series
{
    public required UInt128 Id { get; init; }
    public required string Tenant { get; init; }
    public required string MeterKey { get; init; }
    public required string Customer { get; init; }
    /// <summary>The values of the meter's group-by keys, in the meter's order; empty for a customer-wide series.</summary>
    public required string[] GroupValues { get; init; }
    /// <summary>A UNIQUE_COUNT meter's customer-wide series (distinct values over all group values).</summary>
    public required bool CustomerTotal { get; init; }
    public long FirstWindow { get; set; } = long.MaxValue;
    public long LastWindow { get; set; } = long.MinValue;

    /// <summary>The current-period total of (tenant, meter, customer) this series feeds; looked up once, on first use.</summary>
    public PeriodTotal? Total;

    /// <summary>The write-back cache of the series' newest window; null when the series has none (see <see cref="HotWindow"/>).</summary>
    public HotWindow? Hot;

    /// <summary>The series of the same (tenant, customer) added before this one, of any meter: the directory's
    /// per-customer chain (see <see cref="SeriesDirectory.ForCustomer"/>).</summary>
    public Series? PreviousOfCustomer;

    /// <summary>Set while the series has changes (it is new, or its window range grew) that the partition's state
    /// chain does not hold yet.</summary>
    public bool StateChanged;

    /// <summary>Widens the range of windows to <paramref name="windowStart"/>; true when it grew.</summary>
    public bool Touch(long windowStart)
    {
        bool grew = false;
        if (windowStart < FirstWindow)
        {
            FirstWindow = windowStart;
            grew = true;
        }
        if (windowStart > LastWindow)
        {
            LastWindow = windowStart;
            grew = true;
        }
        return grew;
    }
}

/// <summary>
/// Write-back cache of a series' newest window (all aggregations but UNIQUE_COUNT): events of that window, nearly all
/// of them, update it here instead of through the aggregates store, which saves the store's random memory accesses.
/// It is the authoritative state of that window (the store's copy is stale while <see cref="Dirty"/>) and is written
/// to the store when a newer window starts and before every checkpoint. At most <c>CachedWindows</c> series of a
/// partition hold one (see <c>PartitionAggregator.MoveHotWindow</c>), so that the idle customers of a large tenant,
/// most of them, do not each keep a window's state in memory.
/// </summary>
internal sealed class HotWindow
{
    /// <summary>The series holding it (the clock passes over caches, and reaches a series only to take one back).</summary>
    public Series Owner = null!;
    public long Start;
    public WindowSize Level;
    public bool Dirty;
    /// <summary>Set by every event applied to it, cleared by the clock that looks for a cache to take back.</summary>
    public bool Used;
    public AggregateState State;
}

/// <summary>
/// The series of one partition, owned by its loop (not thread-safe: only the loop reads and writes it; queries
/// run on the loop). It is part of every checkpoint. It holds one small entry per series in memory; the
/// per-window aggregates, which outnumber the series by far, live in FASTER and spill to disk.
/// </summary>
internal sealed class SeriesDirectory
{
    private readonly SeriesTable _byId = new();
    private readonly Dictionary<(string Tenant, string MeterKey), List<Series>> _byMeter = [];
    // Each customer's newest series; the older ones hang off it (Series.PreviousOfCustomer). A query of one customer
    // reads only that customer's series instead of every series of the meter.
    private readonly CustomerTable _byCustomer = new();

    public int Count => _byId.Count;

    public IEnumerable<Series> All => _byId.Values;

    public bool TryGet(UInt128 id, [NotNullWhen(true)] out Series? series) => _byId.TryGet(id, out series);

    /// <summary>Loads the memory where <paramref name="id"/>'s entry is looked for (see <see cref="SeriesTable.Load"/>).</summary>
    public long Load(UInt128 id) => _byId.Load(id);

    /// <summary>See <see cref="SeriesTable.EnsureCapacity"/>.</summary>
    public void EnsureCapacity(int count) => _byId.EnsureCapacity(count);

    /// <summary>See <see cref="SeriesTable.InsertProbes"/>.</summary>
    public long InsertProbes => _byId.InsertProbes;

    public void Add(Series series)
    {
        _byId.Add(series);
        var key = (series.Tenant, series.MeterKey);
        if (!_byMeter.TryGetValue(key, out var list))
            _byMeter[key] = list = [];
        list.Add(series);
        series.PreviousOfCustomer = _byCustomer.Find(series.Tenant, series.Customer);
        _byCustomer.SetNewest(series);
    }

    public IReadOnlyList<Series> ForMeter(string tenant, string meterKey)
        => _byMeter.TryGetValue((tenant, meterKey), out var list) ? list : [];

    /// <summary>Every series of the customer, of every meter, newest first.</summary>
    public IEnumerable<Series> ForCustomer(string tenant, string customer)
    {
        for (var series = _byCustomer.Find(tenant, customer); series is not null; series = series.PreviousOfCustomer)
            yield return series;
    }

    public bool HasCustomer(string tenant, string customer) => _byCustomer.Find(tenant, customer) is not null;

    /// <summary>The customer's name as its series already hold it, or <paramref name="customer"/> for a new customer:
    /// the series of one customer (one per meter and group values) share one string.</summary>
    public string CustomerName(string tenant, string customer) => _byCustomer.Find(tenant, customer)?.Customer ?? customer;
}

/// <summary>
/// The newest series of each (tenant, customer): an open-addressing table (linear probing, at most three quarters full)
/// of series references, keyed by the names the series hold. 8 bytes a slot, 11 to 21 bytes per customer, where a
/// <see cref="Dictionary{TKey, TValue}"/> entry keyed by the two names costs 36 to 72: with millions of customers that
/// is a few hundred MiB. A probe compares the names of the series in the slot. Customers are never removed.
/// </summary>
internal sealed class CustomerTable
{
    private Series?[] _slots = new Series?[1024];
    private int _count;

    public Series? Find(string tenant, string customer) => _slots[SlotOf(_slots, tenant, customer)];

    /// <summary>Makes <paramref name="series"/> its customer's newest (in place of the one before, if any).</summary>
    public void SetNewest(Series series)
    {
        if (4 * ((long)_count + 1) > 3L * _slots.Length)
            Grow();
        if (Insert(_slots, series))
            _count++;
    }

    private void Grow()
    {
        var slots = new Series?[_slots.Length * 2];
        foreach (var series in _slots)
        {
            if (series is not null)
                Insert(slots, series);
        }
        _slots = slots;
    }

    /// <summary>Puts the series in its customer's slot; true when the customer was not in the table.</summary>
    private static bool Insert(Series?[] slots, Series series)
    {
        int slot = SlotOf(slots, series.Tenant, series.Customer);
        bool added = slots[slot] is null;
        slots[slot] = series;
        return added;
    }

    /// <summary>The customer's slot: the one holding its series, or the empty one where it goes.</summary>
    private static int SlotOf(Series?[] slots, string tenant, string customer)
    {
        int mask = slots.Length - 1;
        for (int slot = Hash(tenant, customer) & mask; ; slot = (slot + 1) & mask)
        {
            var series = slots[slot];
            if (series is null || (series.Customer == customer && series.Tenant == tenant))
                return slot;
        }
    }

    private static int Hash(string tenant, string customer) => HashCode.Combine(tenant, customer);
}

/// <summary>
/// The series by id: an open-addressing table (linear probing, at most three quarters full: 32 to 64 bytes per series
/// in 24-byte entries, where half full cost 48 to 96, for 1.5 to 2.5 probes on average, side by side in memory) instead of a
/// <see cref="Dictionary{TKey, TValue}"/>, because its slot for an id is known without a lookup. The partition loop
/// uses that to load the slots of a whole stage of events in one tight loop (<see cref="Load"/>), so that their cache
/// misses overlap, before it looks them up one by one. Ids are 128-bit hashes, so their low bits are the slot.
/// Series are never removed.
/// </summary>
internal sealed class SeriesTable
{
    // The id as two ulongs: a UInt128 field is 16-byte aligned, which made the entry 32 bytes instead of 24.
    private struct Entry
    {
        public ulong IdLow;
        public ulong IdHigh;
        public Series? Series;
    }

    private Entry[] _entries = new Entry[1024];
    private int _mask = 1023;

    public int Count { get; private set; }

    public IEnumerable<Series> Values
    {
        get
        {
            foreach (var entry in _entries)
            {
                if (entry.Series is not null)
                    yield return entry.Series;
            }
        }
    }

    /// <summary>Reads the id in the first slot <paramref name="id"/> can be in: brings its cache line in. The result
    /// means nothing; the caller keeps it only so that the load is not dropped.</summary>
    public long Load(UInt128 id) => (long)_entries[(int)((ulong)id & (uint)_mask)].IdLow;

    public bool TryGet(UInt128 id, [NotNullWhen(true)] out Series? series)
    {
        var entries = _entries;
        for (int slot = (int)((ulong)id & (uint)_mask); ; slot = (slot + 1) & _mask)
        {
            ref var entry = ref entries[slot];
            if (entry.Series is null)
            {
                series = null;
                return false;
            }
            if (entry.IdLow == (ulong)id && entry.IdHigh == (ulong)(id >> 64))
            {
                series = entry.Series;
                return true;
            }
        }
    }

    public void Add(Series series)
    {
        if (TryGet(series.Id, out _))
            throw new ArgumentException($"Series {series.Id} is already in the table.", nameof(series));
        if (4 * ((long)Count + 1) > 3L * _entries.Length)
            Grow(_entries.Length * 2);
        Insert(_entries, _mask, series);
        Count++;
    }

    /// <summary>Makes room for <paramref name="count"/> series at once. Recovery must call it before it adds the series
    /// of a full state file: they come in the order of the slots of the table that wrote them, and linear probing
    /// inserts ids in slot order into a smaller table in quadratic time (each new id walks the whole run that the ids
    /// before it piled up), which at three quarters full stalled a restart with 5 million series for minutes.</summary>
    public void EnsureCapacity(int count)
    {
        int length = _entries.Length;
        while (4L * count > 3L * length)
            length *= 2;
        if (length > _entries.Length)
            Grow(length);
    }

    /// <summary>Slots passed over by inserts, growth included (tests: how long the runs grow).</summary>
    internal long InsertProbes { get; private set; }

    private void Grow(int length)
    {
        var entries = new Entry[length];
        int mask = entries.Length - 1;
        foreach (var entry in _entries)
        {
            if (entry.Series is not null)
                Insert(entries, mask, entry.Series);
        }
        _entries = entries;
        _mask = mask;
    }

    private void Insert(Entry[] entries, int mask, Series series)
    {
        int slot = (int)((ulong)series.Id & (uint)mask);
        while (entries[slot].Series is not null)
        {
            slot = (slot + 1) & mask;
            InsertProbes++;
        }
        entries[slot] = new Entry { IdLow = (ulong)series.Id, IdHigh = (ulong)(series.Id >> 64), Series = series };
    }
}
