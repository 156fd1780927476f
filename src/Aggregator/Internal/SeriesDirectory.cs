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

    public void Touch(long windowStart)
    {
        if (windowStart < FirstWindow)
            FirstWindow = windowStart;
        if (windowStart > LastWindow)
            LastWindow = windowStart;
    }
}

/// <summary>
/// The series of one partition, owned by its loop (not thread-safe: only the loop reads and writes it; queries
/// run on the loop). It is part of every checkpoint. It holds one small entry per series in memory; the
/// per-window aggregates, which outnumber the series by far, live in FASTER and spill to disk.
/// </summary>
internal sealed class SeriesDirectory
{
    private readonly Dictionary<UInt128, Series> _byId = [];
    private readonly Dictionary<(string Tenant, string MeterKey), List<Series>> _byMeter = [];
    private readonly HashSet<(string Tenant, string Customer)> _customers = [];

    public int Count => _byId.Count;

    public IEnumerable<Series> All => _byId.Values;

    public bool TryGet(UInt128 id, out Series series) => _byId.TryGetValue(id, out series!);

    public void Add(Series series)
    {
        _byId.Add(series.Id, series);
        var key = (series.Tenant, series.MeterKey);
        if (!_byMeter.TryGetValue(key, out var list))
            _byMeter[key] = list = [];
        list.Add(series);
        _customers.Add((series.Tenant, series.Customer));
    }

    public IReadOnlyList<Series> ForMeter(string tenant, string meterKey)
        => _byMeter.TryGetValue((tenant, meterKey), out var list) ? list : [];

    public bool HasCustomer(string tenant, string customer) => _customers.Contains((tenant, customer));
}
