using System.Diagnostics;
using System.Globalization;
using System.Text;
using AlphaMesh.Aggregator;
using AlphaMesh.Core;
using HdrHistogram;

namespace AlphaMesh.Benchmarks;

/// <summary>
/// Whole-aggregator runs that a BenchmarkDotNet iteration is too short for, on a real event log and real
/// aggregators in a temporary directory with the server's defaults (2 partitions):
/// <list type="bullet">
/// <item><c>--recovery [millions]</c>: logs that many million events, then starts the aggregators with no
/// checkpoint and times the replay of the whole log, and the checkpoint taken at shutdown.</item>
/// <item><c>--entitlement-latency [seconds]</c>: entitlement checks from one thread while the aggregators apply a
/// steady stream of new events; prints the latency percentiles of the checks.</item>
/// <item><c>--list-reached [customers]</c>: one meter (COUNT) and two events for each of that many customers (default
/// 1,000,000), then times <see cref="IEntitlementService.ListReached"/> against a tenant default that no customer has
/// reached (the usual case: every total read, nothing listed) and one that every customer has (the worst case), and
/// the restart from the final checkpoint (the totals are named after their series there). A second number sets
/// <see cref="AggregatorOptions.CachedWindows"/>.</item>
/// <item><c>--late-events [customers]</c>: one meter (COUNT, hourly windows) and, for each of that many customers
/// (default 1,000,000), an event two hours ago, then one in the current hour, then a late one two hours ago again: times
/// each pass. The late pass updates windows that are no longer the series' newest, most of them no longer in the
/// aggregates store's memory: the backfill of a client that resends a buffer of old events after an outage.</item>
/// </list>
/// </summary>
public static class AggregatorRuns
{
    private const int Partitions = 2;
    private const int Customers = 10_000;
    private const string Tenant = "tenant-acme-corp";
    private static readonly DateTimeOffset MetersCreated = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public static async Task<int> RecoveryAsync(int millions, TextWriter output)
    {
        using var run = new Run();
        long events = millions * 1_000_000L;
        var watch = Stopwatch.StartNew();
        await using (var log = run.OpenLog())
            await AppendAsync(log, 0, events);
        output.WriteLine($"logged {events:N0} events in {watch.Elapsed.TotalSeconds:N1} s ({Partitions} partitions, {Customers:N0} customers, 3 meters)");

        await using (var log = run.OpenLog())
        {
            watch.Restart();
            var aggregator = await AggregatorFactory.StartAsync(log, run.Catalog, run.Options);
            await aggregator.WaitForCommittedAsync();
            var replay = watch.Elapsed;
            output.WriteLine($"replayed {events:N0} events in {replay.TotalSeconds:N1} s: {events / replay.TotalSeconds:N0} events/s "
                + $"({events / replay.TotalSeconds / Partitions:N0} per partition loop)");
            watch.Restart();
            await aggregator.DisposeAsync(); // takes the final checkpoint
            output.WriteLine($"final checkpoint and close: {watch.Elapsed.TotalSeconds:N1} s");
        }
        await using (var log = run.OpenLog())
        {
            watch.Restart();
            var aggregator = await AggregatorFactory.StartAsync(log, run.Catalog, run.Options);
            await aggregator.WaitForCommittedAsync();
            output.WriteLine($"restart from that checkpoint (nothing to replay): {watch.Elapsed.TotalSeconds:N1} s");
            await aggregator.DisposeAsync();
        }
        return 0;
    }

    public static async Task<int> EntitlementLatencyAsync(int seconds, TextWriter output)
    {
        using var run = new Run();
        await using var log = run.OpenLog();
        await using var aggregator = await AggregatorFactory.StartAsync(log, run.Catalog, run.Options);
        await aggregator.Entitlements.SetLimitAsync(new EntitlementLimit(Tenant, "calls", null, 1_000_000));
        await AppendAsync(log, 0, 200_000);
        await aggregator.WaitForCommittedAsync();

        // Keeps the partition loops busy with new events for the whole measurement.
        using var stop = new CancellationTokenSource();
        long appended = 200_000;
        var load = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await AppendAsync(log, appended, 100_000);
                appended += 100_000;
            }
        });

        var histogram = new LongHistogram(TimeStamp.Seconds(1), 3);
        var random = new Random(7);
        var customers = Enumerable.Range(0, Customers).Select(Customer).ToArray();
        var end = DateTime.UtcNow.AddSeconds(seconds);
        long checks = 0, allocated = 0, denied = 0;
        while (DateTime.UtcNow < end)
        {
            for (int i = 0; i < 1_000; i++)
            {
                string customer = customers[random.Next(customers.Length)];
                long before = GC.GetAllocatedBytesForCurrentThread();
                long start = Stopwatch.GetTimestamp();
                var check = aggregator.Entitlements.Check(Tenant, customer, "calls", DateTimeOffset.UtcNow);
                histogram.RecordValue(Stopwatch.GetTimestamp() - start);
                allocated += GC.GetAllocatedBytesForCurrentThread() - before;
                if (!check.HasAccess)
                    denied++;
            }
            checks += 1_000;
        }
        await stop.CancelAsync();
        await load;
        await aggregator.WaitForCommittedAsync();

        double Micros(double percentile) => histogram.GetValueAtPercentile(percentile) * 1e6 / Stopwatch.Frequency;
        output.WriteLine($"{checks:N0} entitlement checks in {seconds} s while the aggregators applied {appended - 200_000:N0} new events");
        output.WriteLine($"check latency: p50 {Micros(50):N2} µs, p99 {Micros(99):N2} µs, p99.9 {Micros(99.9):N2} µs, p99.99 {Micros(99.99):N2} µs, "
            + $"max {histogram.GetMaxValue() * 1e6 / Stopwatch.Frequency:N0} µs; {(double)allocated / checks:N1} bytes allocated per check; {denied:N0} denied");
        return 0;
    }

    public static async Task<int> ListReachedAsync(int customers, int? cachedWindows, TextWriter output)
    {
        using var run = new Run(oneMeter: true);
        if (cachedWindows is { } cached)
            run.Options.CachedWindows = cached;
        output.WriteLine($"cached windows per partition: {run.Options.CachedWindows:N0}");
        var watch = Stopwatch.StartNew();
        await using (var log = run.OpenLog())
        {
            await using (var aggregator = await AggregatorFactory.StartAsync(log, run.Catalog, run.Options))
            {
                long heapBefore = GC.GetTotalMemory(forceFullCollection: true);
                await AppendAsync(log, 0, 2L * customers, customers);
                await aggregator.WaitForCommittedAsync();
                output.WriteLine($"applied {2L * customers:N0} events of {customers:N0} customers in {watch.Elapsed.TotalSeconds:N1} s");
                // What stays in memory for the customers (series directory, current-period totals, cached windows). The
                // heap also holds FASTER's buffers (pinned arrays): its indexes from the start, its log pages as the logs
                // fill (up to the stores' memory sizes), so the growth per customer is an upper bound.
                long heapAfter = GC.GetTotalMemory(forceFullCollection: true);
                output.WriteLine($"managed heap after a full collection: {heapBefore / 1048576.0:N0} MiB before the events, {heapAfter / 1048576.0:N0} MiB "
                    + $"after ({(double)(heapAfter - heapBefore) / customers:N0} bytes more per customer)");
                await TimeCustomerQueriesAsync(aggregator, customers, output);
                foreach (decimal limit in new[] { 1_000m, 2m })
                {
                    await aggregator.Entitlements.SetLimitAsync(new EntitlementLimit(Tenant, "calls", null, limit));
                    aggregator.Entitlements.ListReached(Tenant, 80, DateTimeOffset.UtcNow).Count(); // warm-up
                    const int Runs = 5;
                    long before = GC.GetAllocatedBytesForCurrentThread();
                    watch.Restart();
                    int listed = 0;
                    for (int i = 0; i < Runs; i++)
                        listed = aggregator.Entitlements.ListReached(Tenant, 80, DateTimeOffset.UtcNow).Count();
                    double ms = watch.Elapsed.TotalMilliseconds / Runs;
                    long bytes = (GC.GetAllocatedBytesForCurrentThread() - before) / Runs;
                    output.WriteLine($"ListReached, default limit {limit}: {listed:N0} customers listed in {ms:N1} ms "
                        + $"({ms * 1e6 / customers:N1} ns per customer), {bytes:N0} bytes allocated per call");
                }
                watch.Restart();
            } // final checkpoint
            output.WriteLine($"final checkpoint and close: {watch.Elapsed.TotalSeconds:N1} s");
        }
        await using (var log = run.OpenLog())
        {
            watch.Restart();
            await using var aggregator = await AggregatorFactory.StartAsync(log, run.Catalog, run.Options);
            await aggregator.WaitForCommittedAsync();
            output.WriteLine($"restart from that checkpoint: {watch.Elapsed.TotalSeconds:N1} s; "
                + $"{aggregator.Entitlements.ListReached(Tenant, 80, DateTimeOffset.UtcNow).Count():N0} customers listed after it");
            // After a restart no window is cached: a query of every customer reads each one back from the store's
            // files. (Its answer holds a row per customer: not at ten million, where the rows alone need gigabytes.)
            if (customers <= 1_000_000)
            {
                watch.Restart();
                var all = await aggregator.Usage.QueryAsync(new UsageQuery
                {
                    Tenant = Tenant,
                    MeterKey = "calls",
                    From = DateTimeOffset.UtcNow.AddDays(-1),
                    To = DateTimeOffset.UtcNow.AddDays(1),
                });
                output.WriteLine($"usage query of every customer after the restart: {all.Rows.Count:N0} rows in {watch.Elapsed.TotalSeconds:N2} s");
            }
        }
        return 0;
    }

    public static async Task<int> LateEventsAsync(int customers, TextWriter output)
    {
        using var run = new Run(oneMeter: true);
        // One hour for the whole run: a run that crossed the hour would send its late pass to a window of its own.
        long hour = CurrentHour((DateTimeOffset.UtcNow.UtcTicks - DateTime.UnixEpoch.Ticks) * 100);
        long twoHoursAgo = hour - (2 * 3_600_000_000_000L);
        await using var log = run.OpenLog();
        await using var aggregator = await AggregatorFactory.StartAsync(log, run.Catalog, run.Options);
        foreach (var (pass, first, start) in new[] { ("first events, two hours ago", 0L, twoHoursAgo), ("events of the current hour", 1L, hour),
            ("late events, two hours ago", 2L, twoHoursAgo) })
        {
            var watch = Stopwatch.StartNew();
            await AppendAsync(log, first * customers, customers, customers, start);
            await aggregator.WaitForCommittedAsync();
            output.WriteLine($"{pass}: {customers:N0} events applied in {watch.Elapsed.TotalSeconds:N1} s ({customers / watch.Elapsed.TotalSeconds:N0} events/s)");
        }
        // The late pass must have counted: every customer's two events of two hours ago.
        var check = await aggregator.Usage.QueryAsync(new UsageQuery
        {
            Tenant = Tenant,
            MeterKey = "calls",
            Customer = Customer(customers / 2),
            From = DateTimeOffset.UtcNow.AddHours(-3),
            To = DateTimeOffset.UtcNow.AddHours(1),
        });
        output.WriteLine($"customer {Customer(customers / 2)}: {string.Join(", ", check.Rows.Select(r => $"{r.WindowStart:HH:mm} {r.Value}"))}");
        return 0;
    }

    private static string Customer(int i) => $"customer-{i:D5}";

    /// <summary>Times usage queries of one customer each (what a customer's dashboard or invoice asks), on a loop
    /// that holds every customer of the run.</summary>
    private static async Task TimeCustomerQueriesAsync(IAggregator aggregator, int customers, TextWriter output)
    {
        const int Queries = 200;
        var random = new Random(7);
        var from = DateTimeOffset.UtcNow.AddDays(-1);
        var to = DateTimeOffset.UtcNow.AddDays(1);
        var latencies = new double[Queries];
        long rows = 0;
        for (int i = 0; i < Queries; i++)
        {
            var watch = Stopwatch.StartNew();
            var result = await aggregator.Usage.QueryAsync(new UsageQuery
            {
                Tenant = Tenant,
                MeterKey = "calls",
                Customer = Customer(random.Next(customers)),
                From = from,
                To = to,
            });
            latencies[i] = watch.Elapsed.TotalMilliseconds;
            rows += result.Rows.Count;
        }
        Array.Sort(latencies);
        output.WriteLine($"usage query of one customer ({Queries} customers, {rows:N0} rows): median {latencies[Queries / 2]:N3} ms, "
            + $"p99 {latencies[Queries * 99 / 100]:N3} ms, max {latencies[^1]:N3} ms");
    }

    /// <summary>Appends <paramref name="count"/> new events (ids from <paramref name="first"/>), routed as ingest
    /// routes them, in batches of 1,000 per partition, and commits.</summary>
    private static async Task AppendAsync(IEventLog log, long first, long count, int customers = Customers, long? hourStart = null)
    {
        var tenant = Encoding.UTF8.GetBytes(Tenant);
        long seed = Partitioning.TenantSeed(tenant);
        var batches = new RecordBatch[Partitions];
        for (int p = 0; p < Partitions; p++)
            batches[p] = new RecordBatch();
        long ingest = (DateTimeOffset.UtcNow.UtcTicks - DateTime.UnixEpoch.Ticks) * 100;
        long hour = hourStart ?? CurrentHour(ingest);
        string[] regions = ["eu-west-1", "us-east-1", "ap-south-1"];
        string[] models = ["gpt-4o", "claude-3-5-sonnet", "llama-3.1-70b"];
        for (long i = first; i < first + count; i++)
        {
            var customer = Encoding.UTF8.GetBytes(Customer((int)(i % customers)));
            int p = Partitioning.PartitionOf(seed, customer, Partitions);
            var batch = batches[p];
            batch.Add(tenant, Encoding.UTF8.GetBytes($"evt-{i:x16}"), customer, hour + ((i * 7919) % 3_600_000_000_000L), ingest,
                ("tokens", (1 + (i % 997) / 100m).ToString(CultureInfo.InvariantCulture)), ("model", models[i % 3]), ("region", regions[i / 3 % 3]));
            if (batch.Count == 1_000)
                await FlushAsync(log.GetPartition(p), batch);
        }
        for (int p = 0; p < Partitions; p++)
        {
            if (batches[p].Count > 0)
                await FlushAsync(log.GetPartition(p), batches[p]);
        }
        await log.CommitAllAsync();
    }

    private static long CurrentHour(long unixNanos) => unixNanos - (unixNanos % 3_600_000_000_000L);

    private static async Task FlushAsync(IPartitionLog partition, RecordBatch batch)
    {
        while (!partition.TryAppend(batch, out _))
            await partition.WaitForRoomAsync();
        batch.Clear();
    }

    private sealed class RecordBatch : IRecordBatch
    {
        private readonly List<byte[]> _records = [];
        private readonly byte[] _buffer = new byte[4096];

        public int Count => _records.Count;

        public ReadOnlySpan<byte> GetRecord(int index) => _records[index];

        public void Add(byte[] tenant, byte[] id, byte[] customer, long time, long ingest, params (string Key, string Value)[] data)
        {
            int length = EventRecord.WriteHead(_buffer, time, ingest, tenant, id, "api_call"u8, customer);
            foreach (var (key, value) in data)
                length += EventRecord.WriteDataEntry(_buffer.AsSpan(length), Encoding.UTF8.GetBytes(key), Encoding.UTF8.GetBytes(value));
            EventRecord.SetDataCount(_buffer, data.Length);
            _records.Add(_buffer.AsSpan(0, length).ToArray());
        }

        public void Clear() => _records.Clear();
    }

    /// <summary>A temporary directory with a meter catalog (3 meters over <c>api_call</c>, or only <c>calls</c>) and
    /// aggregator options.</summary>
    private sealed class Run : IDisposable
    {
        private readonly string _directory = Path.Combine(Path.GetTempPath(), "alphamesh-run-" + Guid.NewGuid().ToString("N"));

        public Run(bool oneMeter = false)
        {
            Catalog = MeterCatalogs.OpenFile(Path.Combine(_directory, "meters.json"), new FixedClock(MetersCreated));
            Create("calls", Aggregation.Count, null);
            if (!oneMeter)
            {
                Create("tokens_by_region", Aggregation.Sum, "tokens", "region");
                Create("tokens_by_model", Aggregation.Sum, "tokens", "model");
            }
            Options = new AggregatorOptions { Directory = Path.Combine(_directory, "aggregator") };
        }

        public IMeterCatalog Catalog { get; }

        public AggregatorOptions Options { get; }

        public IEventLog OpenLog() => EventLogFactory.OpenFasterLog(new EventLogOptions { Directory = Path.Combine(_directory, "log"), Partitions = Partitions });

        private void Create(string key, Aggregation aggregation, string? valueProperty, params string[] groupBy)
            => Catalog.CreateAsync(new MeterDefinition
            {
                Tenant = Tenant,
                Key = key,
                EventType = "api_call",
                Aggregation = aggregation,
                ValueProperty = valueProperty,
                GroupBy = groupBy,
            }).AsTask().GetAwaiter().GetResult();

        public void Dispose() => Directory.Delete(_directory, recursive: true);
    }

    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }
}
