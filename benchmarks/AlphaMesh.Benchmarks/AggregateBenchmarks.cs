using System.Buffers.Text;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using AlphaMesh.Aggregator;
using AlphaMesh.Aggregator.Internal;
using AlphaMesh.Core;
using AlphaMesh.Core.Internal;
using BenchmarkDotNet.Attributes;

namespace AlphaMesh.Benchmarks;

/// <summary>
/// Dedupe and aggregation of one event by a partition's aggregator (what its loop does per record), over real
/// FASTER KV stores in a temporary directory with the default sizes (64 MiB of log memory per store) but a 256 MiB
/// dedupe index (<see cref="DedupeIndexBytes"/>). Every invocation stages and applies the next 1,000 events, as the
/// loop does, of a stream of new event ids (the id's last 16 characters are a running counter written into the
/// record), so every event goes through a dedupe miss and an insert, as in production; the dedupe store outgrows
/// its memory during the run and spills to disk.
/// Events: 1,000 customers, the times of one hour, data as the ingest benchmarks' (tokens, model, region).
/// </summary>
// A fixed 512 invocations per iteration (512,000 events) keep the ids of a whole run (about 6.5 million with the
// warm-up) within the dedupe index, whatever the machine's speed: BenchmarkDotNet's own choice grows with the speed
// (2 million events per iteration at 450 ns), and ids beyond what the index holds make FASTER allocate overflow
// buckets (4 MiB for 65,536 of them), which is the index growing, not an allocation per event.
[BenchmarkCategory(Categories.Aggregate)]
[InvocationCount(512)]
public class AggregateBenchmarks
{
    private const int Customers = 1_000;
    private static readonly DateTimeOffset Hour = new(2026, 3, 10, 12, 0, 0, TimeSpan.Zero);

    private readonly byte[][] _records = new byte[Batch.Events][];
    private readonly int[] _counterOffsets = new int[Batch.Events];
    private string _directory = "";
    private IEventLog _log = null!;
    private PartitionAggregator _partition = null!;
    private long _counter;

    /// <summary>The meters of the event's type: one SUM grouped by region (1), or also a COUNT of the same events
    /// and a SUM grouped by model (3: one event feeding several meters).</summary>
    [Params(1, 3)]
    public int Meters { get; set; }

    /// <summary>The dedupe store's hash index (256 MiB unless a run says otherwise).</summary>
    public long DedupeIndexBytes { get; set; } = 256L << 20;

    [GlobalSetup]
    public void Setup()
    {
        _directory = Path.Combine(Path.GetTempPath(), "alphamesh-bench-" + Guid.NewGuid().ToString("N"));
        var catalog = MeterCatalogs.OpenFile(Path.Combine(_directory, "meters.json"), new FixedClock(Hour.AddYears(-1)));
        Create(catalog, "tokens_by_region", Aggregation.Sum, "tokens", "region");
        if (Meters > 1)
        {
            Create(catalog, "calls", Aggregation.Count, null);
            Create(catalog, "tokens_by_model", Aggregation.Sum, "tokens", "model");
        }
        _log = FasterEventLog.Open(new EventLogOptions { Directory = Path.Combine(_directory, "log"), Partitions = 1 }, backgroundCommit: false);
        // The dedupe index sized for the ids this benchmark keeps, as the option's documentation asks: 256 MiB hold
        // 29 million ids without overflow buckets, and --aggregate-rate 10 keeps 12.5 million (the 64 MiB default
        // holds 7.3 million: beyond that every new id walks an overflow chain, and FASTER allocates overflow buckets).
        _partition = PartitionAggregator.OpenDetached(_log.GetPartition(0), catalog,
            new AggregatorOptions { Directory = Path.Combine(_directory, "aggregator"), DedupeIndexBytes = DedupeIndexBytes });

        long ingest = (DateTimeOffset.UtcNow.UtcTicks - DateTime.UnixEpoch.Ticks) * 100;
        var events = Batch.Create(Hour.AddMinutes(30));
        var buffer = new byte[4096];
        for (int i = 0; i < Batch.Events; i++)
        {
            var e = events[i];
            var id = Encoding.UTF8.GetBytes($"evt-{i:D4}-0000000000000000");
            long time = (e.Time.UtcTicks - DateTime.UnixEpoch.Ticks) * 100;
            int length = EventRecord.WriteHead(buffer, time, ingest, Batch.Tenant, id, "api_call"u8, Encoding.UTF8.GetBytes($"customer-{i % Customers:D4}"));
            foreach (var (key, value) in e.Data)
                length += EventRecord.WriteDataEntry(buffer.AsSpan(length), Encoding.UTF8.GetBytes(key), Encoding.UTF8.GetBytes(value));
            EventRecord.SetDataCount(buffer, e.Data.Length);
            _records[i] = buffer.AsSpan(0, length).ToArray();
            EventRecord.TryRead(_records[i], out var view);
            _counterOffsets[i] = (int)Unsafe.ByteOffset(ref MemoryMarshal.GetArrayDataReference(_records[i]), ref MemoryMarshal.GetReference(view.Id))
                + id.Length - 16;
        }
        // Warm-up outside the measurement: every series exists and FASTER has allocated the pages of both stores'
        // memory rings (a page buffer is allocated the first time the log's tail reaches it, then reused): the
        // dedupe log's 64 MiB hold about 2 million ids of 32 bytes, so 2.5 million events go round it once.
        for (int i = 0; i < 2_500; i++)
            ApplyNext();
    }

    private static void Create(IMeterCatalog catalog, string key, Aggregation aggregation, string? valueProperty, params string[] groupBy)
        => catalog.CreateAsync(new MeterDefinition
        {
            Tenant = Encoding.UTF8.GetString(Batch.Tenant),
            Key = key,
            EventType = "api_call",
            Aggregation = aggregation,
            ValueProperty = valueProperty,
            GroupBy = groupBy,
            WindowSize = WindowSize.Minute,
        }).AsTask().GetAwaiter().GetResult();

    [GlobalCleanup]
    public void Cleanup()
    {
        _partition.CrashAsync().AsTask().GetAwaiter().GetResult();
        _log.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Directory.Delete(_directory, recursive: true);
    }

    /// <summary>New events: a dedupe miss, then the meters' aggregates.</summary>
    [Benchmark(OperationsPerInvoke = Batch.Events)]
    public void DedupeAndAggregate() => ApplyNext();

    /// <summary>Events already seen (the last 1,000 applied): a dedupe hit, nothing else.</summary>
    [Benchmark(OperationsPerInvoke = Batch.Events)]
    public void Duplicate()
    {
        for (int i = 0; i < _records.Length; i++)
            _partition.Stage(_records[i]);
        _partition.ApplyStaged();
    }

    private void ApplyNext()
    {
        long counter = ++_counter;
        for (int i = 0; i < _records.Length; i++)
        {
            // The counter as 16 hex digits: a new id for every event of every invocation.
            Utf8Formatter.TryFormat((ulong)counter, _records[i].AsSpan(_counterOffsets[i], 16), out _, new System.Buffers.StandardFormat('X', 16));
            _partition.Stage(_records[i]);
        }
        _partition.ApplyStaged();
    }

    /// <summary>Applies <paramref name="millions"/> million new events and prints the rate of each million.</summary>
    public static int RunSustained(int millions, int meters, long dedupeIndexBytes, TextWriter output)
    {
        var benchmark = new AggregateBenchmarks { Meters = meters, DedupeIndexBytes = dedupeIndexBytes };
        benchmark.Setup();
        try
        {
            var total = System.Diagnostics.Stopwatch.StartNew();
            for (int m = 1; m <= millions; m++)
            {
                var watch = System.Diagnostics.Stopwatch.StartNew();
                for (int i = 0; i < 1_000; i++)
                    benchmark.ApplyNext();
                output.WriteLine($"million {m}: {1_000_000 / watch.Elapsed.TotalSeconds:N0} events/s ({watch.Elapsed.TotalNanoseconds / 1_000_000:N0} ns per event)");
            }
            output.WriteLine($"{millions} million events with {meters} meter(s), dedupe index {dedupeIndexBytes >> 20} MiB, in {total.Elapsed.TotalSeconds:N1} s: {millions * 1_000_000 / total.Elapsed.TotalSeconds:N0} events/s");
            return 0;
        }
        finally
        {
            benchmark.Cleanup();
        }
    }

    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }
}
