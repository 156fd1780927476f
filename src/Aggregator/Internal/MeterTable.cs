using System.Text;

namespace AlphaMesh.Aggregator.Internal;

/// <summary>A meter as one partition's loop uses it: its names as UTF-8, so that the hot path compares bytes,
/// and its invalid-event counter (written by the loop only, read by anyone).</summary>
internal sealed class CompiledMeter
{
    public CompiledMeter(MeterDefinition definition, long invalid)
    {
        Definition = definition;
        Tenant = Encoding.UTF8.GetBytes(definition.Tenant);
        Key = Encoding.UTF8.GetBytes(definition.Key);
        EventType = Encoding.UTF8.GetBytes(definition.EventType);
        ValueProperty = definition.ValueProperty is null ? null : Encoding.UTF8.GetBytes(definition.ValueProperty);
        GroupBy = new byte[definition.GroupBy.Count][];
        for (int i = 0; i < GroupBy.Length; i++)
            GroupBy[i] = Encoding.UTF8.GetBytes(definition.GroupBy[i]);
        CreatedAt = Windows.FromDateTimeOffset(definition.CreatedAt);
        _invalid = invalid;
    }

    public MeterDefinition Definition { get; }
    public byte[] Tenant { get; }
    public byte[] Key { get; }
    public byte[] EventType { get; }
    /// <summary>Null for COUNT without a value property (nothing to read).</summary>
    public byte[]? ValueProperty { get; }
    public byte[][] GroupBy { get; }
    /// <summary>Events ingested before this (Unix nanoseconds) are not counted by the meter.</summary>
    public long CreatedAt { get; }
    public Aggregation Aggregation => Definition.Aggregation;
    public WindowSize BaseWindow => Definition.WindowSize;

    /// <summary>UNIQUE_COUNT meters with a group-by also keep a customer-wide series (see <see cref="PartitionAggregator"/>).</summary>
    public bool HasCustomerTotalSeries => Definition.Aggregation == Aggregation.UniqueCount && GroupBy.Length > 0;

    private long _invalid;

    public long Invalid => Volatile.Read(ref _invalid);

    /// <summary>Called by the owning loop only; the write is atomic on 64-bit, readers see whole values.</summary>
    public void CountInvalid() => Volatile.Write(ref _invalid, _invalid + 1);
}

/// <summary>
/// One partition's meters, looked up by (tenant, event type) from the record's bytes. Rebuilt (as a new, then
/// immutable, table apart from the loop's last lookup) whenever the catalog's version moves; invalid counts carry
/// over by (tenant, meter key).
/// </summary>
internal sealed class MeterTable
{
    private readonly Dictionary<UInt128, CompiledMeter[]> _byType = [];
    // The last meters found (the loop is the only caller of Find): most records have the tenant and type of the one
    // before, and comparing those bytes costs less than hashing them.
    private CompiledMeter[]? _last;

    private MeterTable(long version) => Version = version;

    public long Version { get; }

    public Dictionary<(string Tenant, string Key), CompiledMeter> ByKey { get; } = [];

    public static MeterTable Build(IMeterCatalog catalog, MeterTable? previous, IReadOnlyDictionary<(string, string), long>? restoredInvalid)
    {
        long version = catalog.Version; // read before the list, so that a meter added meanwhile triggers another rebuild
        var table = new MeterTable(version);
        var byType = new Dictionary<UInt128, List<CompiledMeter>>();
        Span<byte> scratch = stackalloc byte[1024];
        foreach (var definition in catalog.ListAll())
        {
            long invalid = 0;
            if (previous is not null && previous.ByKey.TryGetValue((definition.Tenant, definition.Key), out var old))
                invalid = old.Invalid;
            else if (restoredInvalid is not null && restoredInvalid.TryGetValue((definition.Tenant, definition.Key), out long restored))
                invalid = restored;
            var meter = new CompiledMeter(definition, invalid);
            table.ByKey[(definition.Tenant, definition.Key)] = meter;
            var hash = LookupKey(meter.Tenant, meter.EventType, scratch);
            if (!byType.TryGetValue(hash, out var list))
                byType[hash] = list = [];
            list.Add(meter);
        }
        foreach (var (hash, list) in byType)
            table._byType[hash] = [.. list];
        return table;
    }

    /// <summary>The meters of the event's tenant and type, or null. Called by the partition's loop only.</summary>
    public CompiledMeter[]? Find(ReadOnlySpan<byte> tenant, ReadOnlySpan<byte> type, Span<byte> scratch)
    {
        if (_last is { } last && Matches(last, tenant, type))
            return last;
        if (_byType.Count == 0 || !_byType.TryGetValue(LookupKey(tenant, type, scratch), out var meters))
            return null;
        // A 128-bit hash does not collide in practice, but comparing the bytes costs little and makes it certain.
        if (!Matches(meters, tenant, type))
            return null;
        _last = meters;
        return meters;
    }

    private static bool Matches(CompiledMeter[] meters, ReadOnlySpan<byte> tenant, ReadOnlySpan<byte> type)
        => type.SequenceEqual(meters[0].EventType) && tenant.SequenceEqual(meters[0].Tenant);

    private static UInt128 LookupKey(ReadOnlySpan<byte> tenant, ReadOnlySpan<byte> type, Span<byte> scratch)
    {
        var builder = new KeyBuilder(scratch, KeyBuilder.MeterLookup);
        builder.Field(tenant);
        builder.Field(type);
        return builder.Hash();
    }
}
