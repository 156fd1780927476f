using System.Globalization;
using HdrHistogram;

namespace AlphaMesh.LoadTests;

/// <summary>
/// One run: the server (started here, or a running one), the tenants and meters, warm-up, the scenario, the flush,
/// the exactness check, the report. Returns 0 when the run passed, 1 when it did not (lost, doubled or mismatched
/// events, errors, a server that stopped or exited uncleanly), so that scripts and CI can rely on it.
/// </summary>
internal static class Harness
{
    private static readonly TimeSpan FlushTimeout = TimeSpan.FromSeconds(120);

    /// <param name="options">The parsed options.</param>
    /// <param name="output">Where lines go (the live table, when <paramref name="live"/>, goes to the terminal).</param>
    /// <param name="live">Show a live table (stdout is a terminal) instead of a line per second.</param>
    /// <param name="command">The command line to record in the report.</param>
    /// <param name="commit">The git commit to record, when known.</param>
    public static async Task<(int ExitCode, string? ReportDirectory)> RunAsync(LoadOptions options, TextWriter output, bool live, string command, string? commit)
    {
        var startedAt = DateTimeOffset.UtcNow;
        string loadAverageStart = ProcFs.LoadAverage();
        output.WriteLine($"load {LoadOptions.Name(options.Scenario)}: {command}");
        output.WriteLine(Inv($"  {(options.ClosedModel ? "closed model (as fast as acknowledged)" : $"{options.Rate:N0} events/s offered")} | {options.Streams} stream(s) | batch {options.Batch} | in flight {options.InFlight} | buffer {options.BufferPerStream:N0}/stream | {options.Tenants} tenant(s) x {options.Customers:N0} customers | warm-up {options.WarmupSeconds:0.#} s, measured {options.DurationSeconds:0.#} s | load average {loadAverageStart}"));

        await using var server = options.ServerDll is not null
            ? await ServerHost.StartOwnedAsync(options.ServerDll, options.ServerArgs, options.KeepData).ConfigureAwait(false)
            : ServerHost.External(options.Endpoint!, options.Rest, options.Key!, options.ServerPid);
        output.WriteLine(server.Owned
            ? $"  server: pid {server.Pid}, gRPC {server.Grpc}, REST {server.Rest}, data {server.DataDirectory}{(options.KeepData ? " (kept)" : " (removed at the end)")}"
            : $"  server: running at {server.Grpc} (REST {server.Rest}){(server.Pid is { } pid ? $", pid {pid}" : "")}");

        using var api = new UsageApi(server.Rest);
        // Tenant ids of this run: unique on a server that keeps tenants of earlier runs.
        string runId = "load-" + startedAt.UtcDateTime.ToString("yyyyMMdd't'HHmmss", CultureInfo.InvariantCulture) + "-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(2));
        var tenants = await api.PrepareTenantsAsync(server.AdminKey, "default", options.Tenants, runId).ConfigureAwait(false);
        foreach (var tenant in tenants)
            await api.CreateMetersAsync(tenant).ConfigureAwait(false);
        output.WriteLine($"  tenants: {string.Join(", ", tenants.Select(t => t.Id))}{(options.Tenants > 1 ? " (made through the tenants API)" : "")}; meters on {LoadMeters.EventType}: {string.Join(", ", LoadMeters.All.Select(m => m.Key))}");

        // The usage read covers whole calendar months around the run; on a server with earlier usage in them, what
        // was there before is subtracted.
        var usageFrom = startedAt.AddDays(-1);
        var usageTo = startedAt.AddDays(2);
        var baseline = server.Owned ? [] : (await api.ReadUsageAsync(tenants, usageFrom, usageTo).ConfigureAwait(false)).Series;

        var customers = Enumerable.Range(0, options.Customers).Select(i => "customer-" + i.ToString("D6", CultureInfo.InvariantCulture)).ToArray();
        var failures = new List<string>();
        IProgressView view = live ? new LiveProgress($"{LoadOptions.Name(options.Scenario)}: {command}") : new PlainProgress(output);
        await using var load = new LoadGenerator(options, server.Grpc, tenants, customers);
        var sampler = new Sampler(load, server, options, view);
        var runner = new ScenarioRunner(options, load, server, sampler);
        bool flushed = false;
        ExactnessFigures? exactness = null;
        Tick? measureStart = null, measureEnd = null;
        long loadStarted = 0;
        try
        {
            async Task DriveAsync()
            {
                loadStarted = System.Diagnostics.Stopwatch.GetTimestamp();
                load.Start();
                sampler.Start();
                for (int i = 0; i < (int)Math.Ceiling(options.WarmupSeconds); i++)
                    await sampler.NextTickAsync().ConfigureAwait(false);
                sampler.BeginMeasure();
                if (options.WarmupSeconds > 0)
                    sampler.AddMark("measure");
                try
                {
                    await runner.RunAsync().ConfigureAwait(false);
                }
                catch (Exception e) when (e is InvalidOperationException or TimeoutException)
                {
                    failures.Add($"the scenario stopped early: {e.Message}");
                }
                measureStart = sampler.MeasureStart;
                measureEnd = sampler.Last;
                if (!server.Running && failures.Count == 0)
                    failures.Add("the server stopped during the run");
            }
            if (view is LiveProgress liveView)
                await liveView.RunAsync(DriveAsync).ConfigureAwait(false);
            else
                await DriveAsync().ConfigureAwait(false);
        }
        finally
        {
            await sampler.DisposeAsync().ConfigureAwait(false);
            output.WriteLine("  load stopped; waiting until every event handed to the SDK is acknowledged");
            flushed = await load.StopAsync(FlushTimeout).ConfigureAwait(false);
        }
        if (!flushed)
            failures.Add($"not every event was acknowledged within {FlushTimeout.TotalSeconds:0} s after the load stopped");

        if (server.Running)
        {
            var (after, took) = await api.ReadUsageAsync(tenants, usageFrom, usageTo).ConfigureAwait(false);
            double sinceLoadStart = System.Diagnostics.Stopwatch.GetElapsedTime(loadStarted).TotalSeconds;
            var result = ExactnessResult.Compare(load.ExpectedSeries(), ExactnessResult.Subtract(after, baseline));
            exactness = new ExactnessFigures(result.Lost, result.Doubled, result.Mismatched, result.Series, result.Events, Math.Round(took.TotalMilliseconds), result.Examples,
                Math.Round(result.Events / sinceLoadStart));
            output.WriteLine($"EXACTNESS {result.Summary}; the usage query answered {took.TotalMilliseconds:N0} ms after the last reply, {sinceLoadStart:N1} s after the load started");
            foreach (string example in result.Examples)
                output.WriteLine("  " + example);
            if (!result.Exact)
                failures.Add($"the server's usage differs from the ledger: {result.Summary}");
        }
        else
        {
            failures.Add("the server is not running, so its usage could not be checked");
        }

        int? exitCode = null;
        if (server.Owned)
        {
            exitCode = await server.StopAsync().ConfigureAwait(false);
            if (exitCode != 0)
                failures.Add($"the server exited with {exitCode?.ToString(CultureInfo.InvariantCulture) ?? "nothing (killed after 60 s)"} after the final SIGTERM (a clean stop exits 0)");
        }
        var loggedErrors = server.LoggedErrors();
        if (loggedErrors.Count > 0)
            failures.Add($"the server logged {loggedErrors.Count} error(s)");

        var report = BuildReport(options, command, commit, startedAt, loadAverageStart, sampler, runner.Outcome, load, measureStart, measureEnd,
            exactness, exitCode, loggedErrors, server, failures);
        string directory = ReportWriter.Write(report, options.ResultsDirectory, server.LogPath);
        PrintSummary(report, output);
        output.WriteLine($"report: {Path.Combine(directory, "report.md")} (and report.json, latency.svg, command.txt{(server.LogPath is null ? "" : ", server.log")})");
        return (report.Passed ? 0 : 1, directory);
    }

    private static RunReport BuildReport(LoadOptions options, string command, string? commit, DateTimeOffset startedAt, string loadAverageStart,
        Sampler sampler, ScenarioOutcome outcome, LoadGenerator load, Tick? start, Tick? end, ExactnessFigures? exactness, int? exitCode,
        IReadOnlyList<string> loggedErrors, ServerHost server, List<string> failures)
    {
        var timeline = sampler.Timeline;
        var measured = sampler.MeasuredLatencies;
        double seconds = start is not null && end is not null ? (end.Timestamp - start.Timestamp) / (double)System.Diagnostics.Stopwatch.Frequency : 0;
        var before = start?.Counters ?? default;
        var after = end?.Counters ?? default;
        var counters = new LoadCounters(after.Offered - before.Offered, after.NotOffered - before.NotOffered, after.Acknowledged - before.Acknowledged,
            after.Rejected - before.Rejected, after.Failed - before.Failed, after.BatchesSent - before.BatchesSent,
            after.BatchesResent - before.BatchesResent, after.Reconnects - before.Reconnects);
        bool any = measured.TotalCount > 0;
        double? Percentile(double p) => any ? Math.Round(measured.GetValueAtPercentile(p) / 1000.0, 3) : null;
        double? serverCpu = end?.ServerCpuSeconds - start?.ServerCpuSeconds;

        var errors = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var (code, count) in load.Errors)
            errors[code] = count;
        long notOffered = after.NotOffered;
        if (notOffered > 0)
            errors["not_offered"] = notOffered;
        failures.InsertRange(0, outcome.Failures);
        if (after.Rejected + after.Failed > 0 || load.Errors.Count > 0)
            failures.Add($"events were rejected or failed: {string.Join(", ", load.Errors.Select(e => $"{e.Key} {e.Value}"))}");
        if (notOffered > 0 && outcome.NotOfferedIsFailure)
            failures.Add($"{notOffered:N0} events found the stream buffers full and were not offered (the server fell {options.BufferPerStream:N0} events per stream behind)");
        if (counters.Acknowledged == 0)
            failures.Add("no event was acknowledged in the measured window");

        var dataSamples = timeline.Where(p => p.DataDirectoryMiB is not null).ToList();
        var growth = new List<Growth>();
        if (options.Scenario == Scenario.Soak)
        {
            var measuredPoints = timeline.Where(p => p.Measuring).ToList();
            if (Growth.From("server RSS (MiB)", [.. measuredPoints.Where(p => p.ServerRssMiB is not null).Select(p => ((double)p.Second, p.ServerRssMiB!.Value))]) is { } rss)
                growth.Add(rss);
            if (Growth.From("data directory (MiB)", [.. measuredPoints.Where(p => p.DataDirectoryMiB is not null).Select(p => ((double)p.Second, p.DataDirectoryMiB!.Value))]) is { } data)
                growth.Add(data);
        }

        var settings = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["rate"] = options.ClosedModel ? "0 (closed model)" : options.Rate.ToString(CultureInfo.InvariantCulture),
            ["duration"] = Inv($"{options.DurationSeconds:0.#} s"),
            ["warmup"] = Inv($"{options.WarmupSeconds:0.#} s"),
            ["streams"] = options.Streams.ToString(CultureInfo.InvariantCulture),
            ["batch"] = options.Batch.ToString(CultureInfo.InvariantCulture),
            ["in-flight"] = options.InFlight.ToString(CultureInfo.InvariantCulture),
            ["buffer"] = options.BufferPerStream.ToString(CultureInfo.InvariantCulture),
            ["tenants"] = options.Tenants.ToString(CultureInfo.InvariantCulture),
            ["customers"] = options.Customers.ToString(CultureInfo.InvariantCulture),
        };
        if (options.Scenario == Scenario.Ramp)
        {
            settings["step-rate"] = options.StepRate.ToString(CultureInfo.InvariantCulture);
            settings["step-seconds"] = Inv($"{options.StepSeconds:0.#}");
            settings["p99-bound"] = Inv($"{options.P99BoundMs:0.#} ms");
            settings["max-rate"] = options.MaxRate.ToString(CultureInfo.InvariantCulture);
        }
        if (options.Scenario == Scenario.Spike)
        {
            settings["spike-factor"] = Inv($"{options.SpikeFactor:0.#}");
            settings["spike-seconds"] = Inv($"{options.SpikeSeconds:0.#}");
        }
        if (options.ServerArgs.Count > 0)
            settings["server args"] = string.Join(' ', options.ServerArgs);
        // Server settings given through the environment reach the owned server too: record them.
        foreach (var variable in Environment.GetEnvironmentVariables().Keys.OfType<string>().Where(k => k.StartsWith("AlphaMesh__", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
            settings["env " + variable] = Environment.GetEnvironmentVariable(variable) ?? "";

        return new RunReport
        {
            Scenario = LoadOptions.Name(options.Scenario),
            Command = command,
            Commit = commit,
            StartedAt = startedAt,
            EndedAt = DateTimeOffset.UtcNow,
            Cores = Environment.ProcessorCount,
            LoadAverageStart = loadAverageStart,
            LoadAverageEnd = ProcFs.LoadAverage(),
            Settings = settings,
            MeasuredSeconds = Math.Round(seconds, 2),
            Counters = counters,
            OfferedPerSecond = seconds > 0 ? Math.Round(counters.Offered / seconds) : 0,
            AcceptedPerSecond = seconds > 0 ? Math.Round(counters.Acknowledged / seconds) : 0,
            Latency = new LatencySummary(measured.TotalCount, Percentile(50), Percentile(90), Percentile(99), Percentile(99.9), any ? Math.Round(measured.GetMaxValue() / 1000.0, 3) : null),
            ErrorsByCode = errors,
            Server = new ServerFigures(
                serverCpu is { } cpu ? Math.Round(cpu, 2) : null,
                serverCpu is { } c && seconds > 0 ? Math.Round(c / seconds, 2) : null,
                Math.Round((end?.ClientCpuSeconds ?? 0) - (start?.ClientCpuSeconds ?? 0), 2),
                server.PeakRssBytes is { } peak ? Math.Round(peak / 1048576.0, 1) : null,
                dataSamples.FirstOrDefault()?.DataDirectoryMiB,
                dataSamples.LastOrDefault()?.DataDirectoryMiB,
                exitCode,
                loggedErrors),
            Exactness = exactness,
            Phases = outcome.Phases,
            Ramp = outcome.Ramp,
            Restarts = outcome.Restarts,
            Growth = growth,
            Marks = sampler.Marks,
            Timeline = timeline,
            Failures = failures,
        };
    }

    private static void PrintSummary(RunReport r, TextWriter output)
    {
        output.WriteLine();
        output.WriteLine(Inv($"RESULT {r.Scenario}: accepted {r.AcceptedPerSecond:N0} events/s of {r.OfferedPerSecond:N0} offered over {r.MeasuredSeconds:0.0} s ({r.Counters.Acknowledged:N0} events)"));
        output.WriteLine(Inv($"RESULT reply latency (ms, {r.Latency.Batches:N0} replies): p50 {r.Latency.P50:0.000} p90 {r.Latency.P90:0.000} p99 {r.Latency.P99:0.000} p99.9 {r.Latency.P999:0.000} max {r.Latency.Max:0.000}"));
        output.WriteLine(Inv($"RESULT server: CPU {r.Server.CpuSeconds:0.0} s ({r.Server.CpuCores:0.00} cores), peak RSS {r.Server.PeakRssMiB:N0} MiB, data directory {r.Server.DataDirectoryMiBEnd:N1} MiB; harness CPU {r.Server.ClientCpuSeconds:0.0} s"));
        output.WriteLine("RESULT errors: " + (r.ErrorsByCode.Count == 0 ? "none" : string.Join(", ", r.ErrorsByCode.Select(e => Inv($"{e.Key} {e.Value:N0}")))) +
            Inv($"; batches resent {r.Counters.BatchesResent:N0}, reconnects {r.Counters.Reconnects:N0}"));
        if (r.MaxScheduleLag is { } lag)
            output.WriteLine(Inv($"RESULT harness behind its schedule: at most {lag.Events:N0} events ({lag.Seconds:0.00} s of the rate){(lag.Seconds > 0.5 ? ": the harness ran late (CPU short), so rates per second show when events were handed over" : "")}"));
        if (r.Ramp is { } ramp)
            output.WriteLine(Inv($"RESULT ramp: highest sustained rate {ramp.HighestSustainedRate:N0} events/s ({ramp.HighestSustainedAccepted:N0}/s accepted); {ramp.StoppedBecause}"));
        foreach (var phase in r.Phases.Where(_ => r.Ramp is null))
            output.WriteLine(Inv($"RESULT phase {phase.Name}: {phase.AcceptedPerSecond:N0}/s accepted of {phase.OfferedPerSecond:N0} offered, p50 {phase.P50Ms:0.0} p99 {phase.P99Ms:0.0} max {phase.MaxMs:0.0} ms"));
        foreach (var restart in r.Restarts)
            output.WriteLine(Inv($"RESULT {restart.Signal} at {restart.SignalledAt:0.0} s: exit {restart.ExitCode}, exited after {restart.ExitedAfterSeconds:0.00} s, healthy again after {restart.ReadyAfterSeconds:0.00} s, acknowledgements resumed after {restart.ResumedAfterSeconds:0.0} s, backlog drained after {restart.DrainedAfterSeconds:0.0} s{(restart.Error is null ? "" : ": " + restart.Error)}"));
        foreach (var g in r.Growth)
            output.WriteLine(Inv($"RESULT growth of {g.Figure}: first {g.First:N1}, last {g.Last:N1}, peak {g.Peak:N1}, slope {g.SlopePerMinute:+0.00;-0.00;0} per minute"));
        if (r.Exactness is { } x)
        {
            output.WriteLine(Inv($"RESULT exactness: lost {x.Lost}, doubled {x.Doubled}, mismatched {x.Mismatched} ({x.Series:N0} series, {x.Events:N0} events)"));
            output.WriteLine(Inv($"RESULT acknowledged and aggregated: {x.AggregatedPerSecond:N0} events/s (every acknowledged event, from the load's start until the usage query counted them all)"));
        }
        output.WriteLine(r.Passed ? "PASSED" : "FAILED: " + string.Join("; ", r.Failures));
    }

    private static string Inv(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
