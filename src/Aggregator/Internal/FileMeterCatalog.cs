namespace AlphaMesh.Aggregator.Internal;

/// <summary>
/// The meter catalog in one JSON file. Reads are lock-free on an immutable snapshot; creations are serialised,
/// written to the file, and only then published (so a meter the aggregator sees is always persisted).
/// </summary>
internal sealed class FileMeterCatalog : IMeterCatalog
{
    private readonly string _path;
    private readonly TimeProvider _time;
    private readonly SemaphoreSlim _write = new(1, 1);
    private Snapshot _snapshot;
    private long _version;

    private sealed class Snapshot
    {
        public Snapshot(List<MeterDefinition> all)
        {
            all.Sort(static (a, b) => string.CompareOrdinal(a.Tenant, b.Tenant) is int c && c != 0 ? c : string.CompareOrdinal(a.Key, b.Key));
            All = all;
            foreach (var meter in all)
            {
                ByKey[(meter.Tenant, meter.Key)] = meter;
                if (!ByTenant.TryGetValue(meter.Tenant, out var list))
                    ByTenant[meter.Tenant] = list = [];
                list.Add(meter);
            }
        }

        public List<MeterDefinition> All { get; }
        public Dictionary<(string, string), MeterDefinition> ByKey { get; } = [];
        public Dictionary<string, List<MeterDefinition>> ByTenant { get; } = new(StringComparer.Ordinal);
    }

    private FileMeterCatalog(string path, TimeProvider time, List<MeterDefinition> meters)
    {
        _path = path;
        _time = time;
        _snapshot = new Snapshot(meters);
        _version = 1;
    }

    public static FileMeterCatalog Open(string path, TimeProvider time)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var meters = JsonFiles.Read<List<MeterDefinition>>(path) ?? [];
        foreach (var meter in meters)
        {
            var errors = meter.Validate();
            if (errors.Count > 0)
                throw new InvalidOperationException($"The meter catalog '{path}' holds an invalid meter '{meter.Key}': {string.Join(" ", errors)}");
        }
        return new FileMeterCatalog(path, time, meters);
    }

    public long Version => Volatile.Read(ref _version);

    public MeterDefinition? Find(string tenant, string key) => Volatile.Read(ref _snapshot).ByKey.GetValueOrDefault((tenant, key));

    public IReadOnlyList<MeterDefinition> List(string tenant)
        => Volatile.Read(ref _snapshot).ByTenant.TryGetValue(tenant, out var list) ? list : [];

    public IReadOnlyList<MeterDefinition> ListAll() => Volatile.Read(ref _snapshot).All;

    public async ValueTask<MeterDefinition> CreateAsync(MeterDefinition definition, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(definition);
        var errors = definition.Validate();
        if (errors.Count > 0)
            throw new MeterValidationException(errors);
        await _write.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var snapshot = _snapshot;
            if (snapshot.ByKey.TryGetValue((definition.Tenant, definition.Key), out var existing))
                return existing.SameDefinitionAs(definition) ? existing : throw new MeterConflictException(existing);
            var created = definition with { GroupBy = [.. definition.GroupBy], CreatedAt = _time.GetUtcNow() };
            var all = new List<MeterDefinition>(snapshot.All) { created };
            JsonFiles.Write(_path, all);
            Volatile.Write(ref _snapshot, new Snapshot(all));
            // After the snapshot: whoever sees the new version finds the new meter.
            Interlocked.Increment(ref _version);
            return created;
        }
        finally
        {
            _write.Release();
        }
    }
}
