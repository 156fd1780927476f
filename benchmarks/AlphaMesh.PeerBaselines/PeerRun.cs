using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace AlphaMesh.PeerBaselines;

/// <summary>
/// The <c>run</c> command: generates the events (not timed), sets the system up (not timed), then times ingest and
/// the usage query together while reading the server's CPU and this process's own, and holds the usage against
/// the oracle.
/// </summary>
internal static class PeerRun
{
    public static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public static async Task<int> RunAsync(PeerOptions options, TextWriter output, CancellationToken cancellationToken)
    {
        var events = EventSet.Generate(options.Events, options.Customers, options.DuplicateRate, options.Seed, options.BaseTime);
        int lanes = options.LanesOrDefault, batch = options.BatchOrDefault;
        var laneIndexes = events.Lanes(lanes);
        await using var target = CreateTarget(options, lanes, batch);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{options.System}: {events.Events.Length:N0} events ({events.Duplicates:N0} duplicates, {events.Distinct:N0} distinct ids), {options.Customers:N0} customers, seed {options.Seed}, {lanes} lane(s), batch {batch:N0}"));

        await target.SetupAsync(events, cancellationToken).ConfigureAwait(false);
        var meter = new ProcessMeter(options.ServerPids);
        var self = Process.GetCurrentProcess();
        // Start from a clean heap so a collection of the generator's garbage is not charged to the run.
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);

        string loadBefore = LoadAverage();
        var startedAt = DateTimeOffset.UtcNow;
        double serverCpuStart = meter.CpuSeconds();
        var clientCpuStart = self.TotalProcessorTime;
        long start = Stopwatch.GetTimestamp();

        await target.IngestAsync(events, laneIndexes, cancellationToken).ConfigureAwait(false);
        long ingested = Stopwatch.GetTimestamp();
        var usage = await target.ReadUsageAsync(events, cancellationToken).ConfigureAwait(false);
        long answered = Stopwatch.GetTimestamp();

        double serverCpu = meter.CpuSeconds() - serverCpuStart;
        self.Refresh();
        double clientCpu = (self.TotalProcessorTime - clientCpuStart).TotalSeconds;
        string loadAfter = LoadAverage();
        var comparison = UsageComparison.Compare(events.Oracle, usage);
        string recheck = "";
        if (!comparison.Exact)
        {
            // Not timed: tells a late answer (right a moment later) from a wrong one.
            await Task.Delay(TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
            recheck = "read again 5 s later: " + UsageComparison.Compare(events.Oracle, await target.ReadUsageAsync(events, cancellationToken).ConfigureAwait(false)).Describe();
        }

        var result = new RunResult
        {
            System = options.System,
            Name = target.Name,
            Version = target.Version,
            Method = target.Method,
            Durability = target.Durability,
            Events = events.Events.Length,
            Distinct = events.Distinct,
            Duplicates = events.Duplicates,
            Customers = options.Customers,
            Seed = options.Seed,
            BaseTime = events.BaseTime,
            Lanes = lanes,
            Batch = batch,
            IngestSeconds = Stopwatch.GetElapsedTime(start, ingested).TotalSeconds,
            UsageSeconds = Stopwatch.GetElapsedTime(ingested, answered).TotalSeconds,
            ServerCpuSeconds = serverCpu,
            ClientCpuSeconds = clientCpu,
            ServerPeakBytes = meter.PeakResidentBytes(),
            ServerProcesses = meter.ProcessCount(),
            Exact = comparison.Exact,
            ExactDetail = comparison.Describe(),
            Recheck = recheck,
            StartedAt = startedAt,
            LoadAverageBefore = loadBefore,
            LoadAverageAfter = loadAfter,
        };
        await File.WriteAllTextAsync(options.Out, JsonSerializer.Serialize(result, Json), cancellationToken).ConfigureAwait(false);

        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{options.System}: ingest {result.IngestSeconds:0.00} s ({result.IngestEventsPerSecond:N0} events/s), usage query {result.UsageSeconds:0.00} s, " +
            $"end to end {result.EndToEndEventsPerSecond:N0} events/s; server CPU {serverCpu:0.00} s ({result.ServerCpuPerMillion:0.00} s per million), client CPU {clientCpu:0.00} s; " +
            $"server peak RSS {result.ServerPeakBytes / 1048576.0:N0} MiB; exact: {result.ExactDetail}{(recheck.Length > 0 ? $" ({recheck})" : "")}; load average {loadBefore} -> {loadAfter}"));
        return 0;
    }

    /// <summary>The first three fields of /proc/loadavg (1, 5 and 15 minutes).</summary>
    public static string LoadAverage()
    {
        try
        {
            return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "?";
        }
    }

    private static PeerTarget CreateTarget(PeerOptions options, int lanes, int batch) => options.System switch
    {
        "alphamesh" => new AlphaMeshTarget(options.Grpc!, options.Rest!, options.Key!, lanes, batch),
        "postgres-insert" => new PostgresTarget(options.Postgres!, PostgresLoad.Insert, lanes, batch),
        "postgres-copy" => new PostgresTarget(options.Postgres!, PostgresLoad.Copy, lanes, batch),
        "redis-event" => new RedisTarget(options.Redis!, RedisCall.PerEvent, lanes, batch),
        "redis-batch" => new RedisTarget(options.Redis!, RedisCall.PerBatch, lanes, batch),
        "clickhouse" => new ClickHouseTarget(options.ClickHouse!, lanes, batch),
        _ => throw new ArgumentException($"unknown system {options.System}", nameof(options)),
    };
}
