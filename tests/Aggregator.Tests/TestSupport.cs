using System.Text;
using AlphaMesh.Aggregator.Internal;
using AlphaMesh.Core;

namespace AlphaMesh.Aggregator.Tests;

/// <summary>One usage event as a test writes it.</summary>
internal sealed record TestEvent(string Tenant, string Id, string Type, string Customer, DateTime Time, params (string Key, string Value)[] Data)
{
    public long TimeNanos => Windows.FromDateTime(Time);

    public string? Get(string key)
    {
        foreach (var (k, v) in Data)
        {
            if (k == key)
                return v;
        }
        return null;
    }

    public byte[] Encode(long ingestTimeNanos)
    {
        int dataBytes = 0;
        foreach (var (key, value) in Data)
            dataBytes += Encoding.UTF8.GetByteCount(key) + Encoding.UTF8.GetByteCount(value);
        var buffer = new byte[EventRecord.MaxEncodedSize(Encoding.UTF8.GetByteCount(Tenant), Encoding.UTF8.GetByteCount(Id),
            Encoding.UTF8.GetByteCount(Type), Encoding.UTF8.GetByteCount(Customer), dataBytes, Data.Length)];
        int length = EventRecord.WriteHead(buffer, TimeNanos, ingestTimeNanos, Encoding.UTF8.GetBytes(Tenant), Encoding.UTF8.GetBytes(Id),
            Encoding.UTF8.GetBytes(Type), Encoding.UTF8.GetBytes(Customer));
        foreach (var (key, value) in Data)
            length += EventRecord.WriteDataEntry(buffer.AsSpan(length), Encoding.UTF8.GetBytes(key), Encoding.UTF8.GetBytes(value));
        EventRecord.SetDataCount(buffer, Data.Length);
        return buffer.AsSpan(0, length).ToArray();
    }
}

/// <summary>A reusable batch over a list of records.</summary>
internal sealed class TestBatch : IRecordBatch
{
    private readonly List<byte[]> _records = [];

    public int Count => _records.Count;

    public ReadOnlySpan<byte> GetRecord(int index) => _records[index];

    public void Add(byte[] record) => _records.Add(record);

    public void Clear() => _records.Clear();
}

internal sealed class FixedTime(DateTimeOffset now) : TimeProvider
{
    public override DateTimeOffset GetUtcNow() => now;
}

/// <summary>
/// A real event log (FasterLog) and real aggregators (FASTER KV) in a temporary directory, with small memory so
/// that the stores spill to disk. Reopening keeps the directory, as a process restart would.
/// </summary>
internal sealed class Harness : IAsyncDisposable
{
    public static readonly DateTimeOffset MetersCreatedAt = new(2000, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private readonly string _root = Path.Combine(Path.GetTempPath(), "alphamesh-aggregator-tests", Guid.NewGuid().ToString("N"));
    private readonly int _partitions;

    private readonly Action<EventLogOptions>? _configureLog;

    public Harness(int partitions = 2, Action<AggregatorOptions>? configure = null, Action<EventLogOptions>? configureLog = null)
    {
        _partitions = partitions;
        Configure = configure;
        _configureLog = configureLog;
        Catalog = FileMeterCatalog.Open(Path.Combine(_root, "meters.json"), new FixedTime(MetersCreatedAt));
        Log = OpenLog();
    }

    public Action<AggregatorOptions>? Configure { get; }
    public IMeterCatalog Catalog { get; private set; }

    /// <summary>The file the catalog is kept in (reopened at every restart).</summary>
    public string CatalogPath => Path.Combine(_root, "meters.json");
    public IEventLog Log { get; private set; }
    public IAggregator Aggregator { get; private set; } = null!;
    public AggregatorHost Host => (AggregatorHost)Aggregator;

    /// <summary>Every event appended, in log order per partition (duplicates included).</summary>
    public List<TestEvent> Appended { get; } = [];

    private IEventLog OpenLog()
    {
        var options = new EventLogOptions
        {
            Directory = Path.Combine(_root, "log"),
            Partitions = _partitions,
            PageSizeBytes = 64 << 10,
            MemoryBytesPerPartition = 256 << 10,
            SegmentSizeBytes = 1 << 20,
        };
        _configureLog?.Invoke(options);
        return EventLogFactory.OpenFasterLog(options);
    }

    public AggregatorOptions Options()
    {
        var options = new AggregatorOptions
        {
            Directory = Path.Combine(_root, "aggregator"),
            CheckpointInterval = TimeSpan.FromHours(1), // tests checkpoint explicitly
            PageSizeBytes = 4096,
            AggregatesMemoryBytes = 16 << 10,
            DedupeMemoryBytes = 16 << 10,
            AggregatesIndexBytes = 1 << 12,
            DedupeIndexBytes = 1 << 12,
            SegmentSizeBytes = 1 << 20,
            BatchSize = 64,
        };
        Configure?.Invoke(options);
        return options;
    }

    public async Task<Harness> StartAsync()
    {
        Aggregator = await AggregatorFactory.StartAsync(Log, Catalog, Options());
        return this;
    }

    public async Task<MeterDefinition> MeterAsync(string tenant, string key, Aggregation aggregation, string? valueProperty = "tokens",
        WindowSize window = WindowSize.Hour, string type = "api_call", params string[] groupBy)
        => await Catalog.CreateAsync(new MeterDefinition
        {
            Tenant = tenant,
            Key = key,
            EventType = type,
            Aggregation = aggregation,
            ValueProperty = aggregation == Aggregation.Count ? null : valueProperty,
            GroupBy = groupBy,
            WindowSize = window,
        });

    /// <summary>Appends the events (routed as ingest routes them; ingested now, or at <c>ingestTime</c>), waits for the
    /// commit, then for the aggregators.</summary>
    public async Task AppendAsync(IEnumerable<TestEvent> events, bool waitForAggregators = true, DateTimeOffset? ingestTime = null)
    {
        var batches = new TestBatch[_partitions];
        for (int i = 0; i < batches.Length; i++)
            batches[i] = new TestBatch();
        long ingest = Windows.FromDateTimeOffset(ingestTime ?? DateTimeOffset.UtcNow);
        long end = 0;
        foreach (var e in events)
        {
            int p = Partitioning.PartitionOf(Encoding.UTF8.GetBytes(e.Tenant), Encoding.UTF8.GetBytes(e.Customer), _partitions);
            batches[p].Add(e.Encode(ingest));
            Appended.Add(e);
            if (batches[p].Count == 50)
                end = await FlushAsync(p, batches[p]);
        }
        for (int p = 0; p < _partitions; p++)
        {
            if (batches[p].Count > 0)
                await FlushAsync(p, batches[p]);
        }
        await Log.CommitAllAsync();
        if (waitForAggregators)
            await Aggregator.WaitForCommittedAsync();
        _ = end;
    }

    private async Task<long> FlushAsync(int p, TestBatch batch)
    {
        var partition = Log.GetPartition(p);
        long end;
        while (!partition.TryAppend(batch, out end))
            await partition.WaitForRoomAsync();
        batch.Clear();
        return end;
    }

    /// <summary>Stops the aggregators without a checkpoint (as kill -9 would), closes the log, reopens both.</summary>
    public async Task CrashAndRestartAsync()
    {
        await Host.CrashAsync();
        await Log.DisposeAsync();
        Log = OpenLog();
        Catalog = FileMeterCatalog.Open(Path.Combine(_root, "meters.json"), new FixedTime(MetersCreatedAt));
        await StartAsync();
    }

    /// <summary>A graceful restart: final checkpoint, then reopen.</summary>
    public async Task RestartAsync()
    {
        await Aggregator.DisposeAsync();
        await Log.DisposeAsync();
        Log = OpenLog();
        Catalog = FileMeterCatalog.Open(Path.Combine(_root, "meters.json"), new FixedTime(MetersCreatedAt));
        await StartAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (Aggregator is not null)
            await Aggregator.DisposeAsync();
        await Log.DisposeAsync();
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
            // best effort
        }
    }
}
