using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;

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

    // Write-back cache of the series' newest window (all aggregations but UNIQUE_COUNT): events of that window,
    // nearly all of them, update it here instead of through the aggregates store, which saves the store's random
    // memory accesses. It is the authoritative state of that window (the store's copy is stale while HotDirty)
    // and is written to the store when a newer window starts and before every checkpoint.
    public long HotWindow = long.MinValue;
    public WindowSize HotLevel;
    public bool HotDirty;
    public AggregateState HotState;

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
    private readonly Dictionary<(string Tenant, string Customer), Series> _byCustomer = [];

    public int Count => _byId.Count;

    public IEnumerable<Series> All => _byId.Values;

    public bool TryGet(UInt128 id, [NotNullWhen(true)] out Series? series) => _byId.TryGet(id, out series);

    /// <summary>Loads the memory where <paramref name="id"/>'s entry is looked for (see <see cref="SeriesTable.Load"/>).</summary>
    public long Load(UInt128 id) => _byId.Load(id);

    public void Add(Series series)
    {
        _byId.Add(series);
        var key = (series.Tenant, series.MeterKey);
        if (!_byMeter.TryGetValue(key, out var list))
            _byMeter[key] = list = [];
        list.Add(series);
        ref var newest = ref CollectionsMarshal.GetValueRefOrAddDefault(_byCustomer, (series.Tenant, series.Customer), out _);
        series.PreviousOfCustomer = newest;
        newest = series;
    }

    public IReadOnlyList<Series> ForMeter(string tenant, string meterKey)
        => _byMeter.TryGetValue((tenant, meterKey), out var list) ? list : [];

    /// <summary>Every series of the customer, of every meter, newest first.</summary>
    public IEnumerable<Series> ForCustomer(string tenant, string customer)
    {
        _byCustomer.TryGetValue((tenant, customer), out var series);
        for (; series is not null; series = series.PreviousOfCustomer)
            yield return series;
    }

    public bool HasCustomer(string tenant, string customer) => _byCustomer.ContainsKey((tenant, customer));
}

/// <summary>
/// The series by id: an open-addressing table (linear probing, at most half full) instead of a
/// <see cref="Dictionary{TKey, TValue}"/>, because its slot for an id is known without a lookup. The partition loop
/// uses that to load the slots of a whole stage of events in one tight loop (<see cref="Load"/>), so that their cache
/// misses overlap, before it looks them up one by one. Ids are 128-bit hashes, so their low bits are the slot.
/// Series are never removed.
/// </summary>
internal sealed class SeriesTable
{
    private struct Entry
    {
        public UInt128 Id;
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
    public long Load(UInt128 id) => (long)_entries[(int)((ulong)id & (uint)_mask)].Id;

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
            if (entry.Id == id)
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
        if (2 * (Count + 1) > _entries.Length)
            Grow();
        Insert(_entries, _mask, series);
        Count++;
    }

    private void Grow()
    {
        var entries = new Entry[_entries.Length * 2];
        int mask = entries.Length - 1;
        foreach (var entry in _entries)
        {
            if (entry.Series is not null)
                Insert(entries, mask, entry.Series);
        }
        _entries = entries;
        _mask = mask;
    }

    private static void Insert(Entry[] entries, int mask, Series series)
    {
        int slot = (int)((ulong)series.Id & (uint)mask);
        while (entries[slot].Series is not null)
            slot = (slot + 1) & mask;
        entries[slot] = new Entry { Id = series.Id, Series = series };
    }
}
