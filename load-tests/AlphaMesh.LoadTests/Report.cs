using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace AlphaMesh.LoadTests;

/// <summary>Reply latency percentiles of the measured window, in milliseconds, over <see cref="Batches"/> replies.</summary>
internal sealed record LatencySummary(long Batches, double? P50, double? P90, double? P99, double? P999, double? Max);

/// <summary>The server's CPU and memory (null where not readable: an external server without --server-pid).</summary>
/// <param name="CpuSeconds">Server CPU over the measured window (every process of the run, for restart).</param>
/// <param name="CpuCores">The same per second of the window.</param>
/// <param name="ClientCpuSeconds">The harness's own CPU over the measured window (it shares the machine).</param>
/// <param name="PeakRssMiB">Highest VmHWM of the server's processes.</param>
/// <param name="DataDirectoryMiBStart">Data directory size at the first sample.</param>
/// <param name="DataDirectoryMiBEnd">Data directory size at the last sample.</param>
/// <param name="ExitCode">Exit code after the final SIGTERM (owned server).</param>
/// <param name="LoggedErrors">Lines the server logged at Error or Critical level.</param>
internal sealed record ServerFigures(double? CpuSeconds, double? CpuCores, double ClientCpuSeconds, double? PeakRssMiB,
    double? DataDirectoryMiBStart, double? DataDirectoryMiBEnd, int? ExitCode, IReadOnlyList<string> LoggedErrors);

/// <summary>The exactness check and how long the usage query waited for aggregation after the last reply.
/// <see cref="AggregatedPerSecond"/> is every event acknowledged in the run divided by the time from the load's start
/// to the usage query's answer, which counted all of them: the rate at which events were both durable and aggregated
/// (ingest alone may run ahead while the aggregators fall behind).</summary>
internal sealed record ExactnessFigures(long Lost, long Doubled, long Mismatched, int Series, long Events, double UsageQueryMs, IReadOnlyList<string> Examples,
    double AggregatedPerSecond = 0);

/// <summary>How far the open-model producers were behind their schedule: events, and seconds of the rate then.</summary>
internal sealed record ScheduleLagFigures(long Events, double Seconds);

/// <summary>Everything a run reports (the JSON file is this record).</summary>
internal sealed record RunReport
{
    public required string Scenario { get; init; }
    public required string Command { get; init; }
    public string? Commit { get; init; }
    public required DateTimeOffset StartedAt { get; init; }
    public required DateTimeOffset EndedAt { get; init; }
    public required int Cores { get; init; }
    public required string LoadAverageStart { get; init; }
    public required string LoadAverageEnd { get; init; }
    public required IReadOnlyDictionary<string, string> Settings { get; init; }
    public required double MeasuredSeconds { get; init; }
    public required LoadCounters Counters { get; init; }
    public required double OfferedPerSecond { get; init; }
    public required double AcceptedPerSecond { get; init; }
    public required LatencySummary Latency { get; init; }
    /// <summary>Events not acknowledged over the whole run, by reason (<c>not_offered</c>, <c>rejected:code</c>, <c>failed:status</c>).</summary>
    public required IReadOnlyDictionary<string, long> ErrorsByCode { get; init; }
    public required ServerFigures Server { get; init; }
    public ExactnessFigures? Exactness { get; init; }
    public IReadOnlyList<PhaseStats> Phases { get; init; } = [];
    public RampOutcome? Ramp { get; init; }
    public IReadOnlyList<RestartRecord> Restarts { get; init; } = [];
    public IReadOnlyList<Growth> Growth { get; init; } = [];
    public required IReadOnlyList<Mark> Marks { get; init; }
    public required IReadOnlyList<TimelinePoint> Timeline { get; init; }
    public required IReadOnlyList<string> Failures { get; init; }
    public bool Passed => Failures.Count == 0;

    /// <summary>Open model: the most events the producers were behind their schedule at the end of a measured second,
    /// and that as seconds of the rate then (see <see cref="TimelinePoint.ScheduleLag"/>).</summary>
    public ScheduleLagFigures? MaxScheduleLag
    {
        get
        {
            var lagging = Timeline.Where(p => p.Measuring && p.ScheduleLag is not null).ToList();
            if (lagging.Count == 0)
                return null;
            var worst = lagging.MaxBy(p => p.ScheduleLag!.Value)!;
            return new ScheduleLagFigures(worst.ScheduleLag!.Value, worst.TargetRate > 0 ? Math.Round(worst.ScheduleLag.Value / worst.TargetRate, 2) : 0);
        }
    }
}

/// <summary>Writes a run's report directory: report.md, report.json, latency.svg and command.txt.</summary>
internal static class ReportWriter
{
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>The report directory's name: <c>&lt;scenario&gt;-&lt;UTC time&gt;</c>, e.g. <c>steady-20261125T204812Z</c>.</summary>
    public static string DirectoryName(RunReport report)
        => $"{report.Scenario}-{report.StartedAt.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture)}";

    /// <summary>Writes the four files under <paramref name="resultsDirectory"/> and returns the directory made.</summary>
    public static string Write(RunReport report, string resultsDirectory, string? serverLog)
    {
        string directory = Path.Combine(resultsDirectory, DirectoryName(report));
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "report.json"), JsonSerializer.Serialize(report, Json) + "\n");
        File.WriteAllText(Path.Combine(directory, "report.md"), Markdown(report));
        File.WriteAllText(Path.Combine(directory, "latency.svg"), Chart(report.Scenario, report.Command, report.StartedAt, report.LoadAverageStart, report.Timeline, report.Marks));
        File.WriteAllText(Path.Combine(directory, "command.txt"), CommandText(report));
        if (serverLog is not null && File.Exists(serverLog))
            File.Copy(serverLog, Path.Combine(directory, "server.log"), overwrite: true);
        return directory;
    }

    /// <summary>Draws latency.svg again from a report directory's report.json (after a change to the chart).</summary>
    public static void RenderChartAgain(string directory)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "report.json")));
        var root = json.RootElement;
        var timeline = root.GetProperty("timeline").Deserialize<List<TimelinePoint>>(Json)!;
        var marks = root.GetProperty("marks").Deserialize<List<Mark>>(Json)!;
        File.WriteAllText(Path.Combine(directory, "latency.svg"), Chart(root.GetProperty("scenario").GetString()!, root.GetProperty("command").GetString()!,
            root.GetProperty("startedAt").GetDateTimeOffset(), root.GetProperty("loadAverageStart").GetString()!, timeline, marks));
    }

    private static string Chart(string scenario, string command, DateTimeOffset startedAt, string loadAverage, IReadOnlyList<TimelinePoint> timeline, IReadOnlyList<Mark> marks)
        => SvgChart.Render(timeline, marks, $"{scenario}: {command}", $"{startedAt.UtcDateTime:yyyy-MM-dd HH:mm:ss} UTC, load average {loadAverage} at the start");

    public static string CommandText(RunReport report)
    {
        var text = new StringBuilder();
        text.AppendLine(report.Command);
        text.AppendLine(Inv($"# {report.StartedAt.UtcDateTime:yyyy-MM-dd'T'HH:mm:ss'Z'} to {report.EndedAt.UtcDateTime:HH:mm:ss'Z'}, commit {report.Commit ?? "unknown"}, {report.Cores} cores, load average {report.LoadAverageStart} (start) / {report.LoadAverageEnd} (end)"));
        foreach (var (name, value) in report.Settings.Where(s => s.Key.StartsWith("env ", StringComparison.Ordinal)))
            text.AppendLine($"# {name[4..]}={value}");
        return text.ToString();
    }

    public static string Markdown(RunReport r)
    {
        var md = new StringBuilder();
        md.AppendLine($"# Load run: {r.Scenario} — {(r.Passed ? "passed" : "FAILED")}");
        md.AppendLine();
        md.AppendLine("```sh");
        md.AppendLine(r.Command);
        md.AppendLine("```");
        md.AppendLine();
        md.AppendLine(Inv($"{r.StartedAt.UtcDateTime:yyyy-MM-dd HH:mm:ss} to {r.EndedAt.UtcDateTime:HH:mm:ss} UTC, commit `{r.Commit ?? "unknown"}`, {r.Cores} cores shared by the harness and the server (and anything else running), load average {r.LoadAverageStart} at the start and {r.LoadAverageEnd} at the end."));
        md.AppendLine();
        md.AppendLine("Settings: " + string.Join(", ", r.Settings.Where(s => !s.Key.StartsWith("env ", StringComparison.Ordinal)).Select(s => $"{s.Key} {s.Value}")) + ".");
        md.AppendLine();
        md.AppendLine("![reply latency and rates per second](latency.svg)");
        md.AppendLine();

        md.AppendLine(Inv($"## Measured window ({r.MeasuredSeconds:0.#} s)"));
        md.AppendLine();
        md.AppendLine("| figure | value |");
        md.AppendLine("|---|---:|");
        md.AppendLine(Inv($"| offered | {r.Counters.Offered:N0} events, {r.OfferedPerSecond:N0}/s |"));
        md.AppendLine(Inv($"| accepted (acknowledged) | {r.Counters.Acknowledged:N0} events, **{r.AcceptedPerSecond:N0}/s** |"));
        md.AppendLine(Inv($"| reply latency p50 / p90 / p99 / p99.9 / max | {Ms(r.Latency.P50)} / {Ms(r.Latency.P90)} / **{Ms(r.Latency.P99)}** / {Ms(r.Latency.P999)} / {Ms(r.Latency.Max)} ({r.Latency.Batches:N0} replies) |"));
        md.AppendLine(Inv($"| not offered (stream buffer full) / rejected / failed | {r.Counters.NotOffered:N0} / {r.Counters.Rejected:N0} / {r.Counters.Failed:N0} |"));
        if (r.MaxScheduleLag is { } lag)
            md.AppendLine(Inv($"| harness behind its schedule, at most | {lag.Events:N0} events ({lag.Seconds:0.00} s of the rate) |"));
        md.AppendLine(Inv($"| batches sent / resent, reconnects | {r.Counters.BatchesSent:N0} / {r.Counters.BatchesResent:N0}, {r.Counters.Reconnects:N0} |"));
        md.AppendLine(Inv($"| server CPU | {Opt(r.Server.CpuSeconds, "0.0")} s ({Opt(r.Server.CpuCores, "0.00")} cores) |"));
        md.AppendLine(Inv($"| harness CPU | {r.Server.ClientCpuSeconds:0.0} s |"));
        md.AppendLine(Inv($"| server peak RSS | {Opt(r.Server.PeakRssMiB, "N0")} MiB |"));
        md.AppendLine(Inv($"| data directory, first / last sample | {Opt(r.Server.DataDirectoryMiBStart, "N1")} / {Opt(r.Server.DataDirectoryMiBEnd, "N1")} MiB |"));
        md.AppendLine(Inv($"| server exit code after the final SIGTERM | {(r.Server.ExitCode is { } code ? code.ToString(CultureInfo.InvariantCulture) : "n/a")} |"));
        md.AppendLine();
        if (r.MaxScheduleLag is { Seconds: > 0.5 } late)
        {
            md.AppendLine(Inv($"**The harness ran late**: its producers were up to {late.Seconds:0.0} s behind the open-model schedule (the machine's CPU was short), and handed the due events over in bursts when they ran; offered and accepted rates per second show when events were handed over, not when they were due."));
            md.AppendLine();
        }
        md.AppendLine("Errors by code (whole run): " + (r.ErrorsByCode.Count == 0 ? "none." : string.Join(", ", r.ErrorsByCode.Select(e => Inv($"`{e.Key}` {e.Value:N0}"))) + "."));
        md.AppendLine();

        md.AppendLine("## Exactness");
        md.AppendLine();
        if (r.Exactness is { } x)
        {
            md.AppendLine(Inv($"**lost {x.Lost}, doubled {x.Doubled}, mismatched {x.Mismatched}** over {x.Series:N0} series ({x.Events:N0} events acknowledged, per tenant, customer and meter: `{LoadMeters.Calls}` COUNT, `{LoadMeters.Tokens}` SUM, `{LoadMeters.TokensByModel}` SUM by model). The usage query answered {x.UsageQueryMs:N0} ms after the last reply (it waits for aggregation to catch up); acknowledged and aggregated: {x.AggregatedPerSecond:N0} events/s from the load's start to that answer."));
            foreach (var example in x.Examples)
                md.AppendLine($"- {example}");
        }
        else
        {
            md.AppendLine("Not checked (the run failed before the check).");
        }
        md.AppendLine();

        if (r.Ramp is { } ramp)
        {
            md.AppendLine("## Ramp");
            md.AppendLine();
            md.AppendLine(Inv($"Highest sustained rate: **{ramp.HighestSustainedRate:N0} events/s offered** ({ramp.HighestSustainedAccepted:N0}/s accepted). Stopped because {ramp.StoppedBecause}."));
            md.AppendLine();
        }
        if (r.Phases.Count > 0)
        {
            md.AppendLine(r.Ramp is null ? "## Phases" : "Steps:");
            md.AppendLine();
            md.AppendLine("| phase | seconds | offered/s | accepted/s | p50 | p99 | p99.9 | max | not offered | errors |" + (r.Ramp is null ? "" : " verdict |"));
            md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + (r.Ramp is null ? "" : "---|"));
            for (int i = 0; i < r.Phases.Count; i++)
            {
                var p = r.Phases[i];
                string verdict = r.Ramp is { } rr && i < rr.Steps.Count ? $" {(rr.Steps[i].Sustained ? "sustained" : "not sustained")}: {rr.Steps[i].Reason} |" : "";
                md.AppendLine(Inv($"| {p.Name} | {p.Seconds} | {p.OfferedPerSecond:N0} | {p.AcceptedPerSecond:N0} | {Ms(p.P50Ms)} | {Ms(p.P99Ms)} | {Ms(p.P999Ms)} | {Ms(p.MaxMs)} | {p.NotOffered:N0} | {p.Errors:N0} |{verdict}"));
            }
            md.AppendLine();
        }
        if (r.Restarts.Count > 0)
        {
            md.AppendLine("## Restarts");
            md.AppendLine();
            md.AppendLine("Seconds after the signal. Acknowledgements resumed: the end of the first second with replies again; backlog drained: the end of the first second after which at most a second of the rate was unacknowledged (both at 1 s resolution).");
            md.AppendLine();
            md.AppendLine("| signal | at (s since the load started) | exit code | exited after | healthy again after | acknowledgements resumed after | backlog drained after | error |");
            md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---|");
            foreach (var s in r.Restarts)
                md.AppendLine(Inv($"| {s.Signal} | {s.SignalledAt:0.0} | {(s.ExitCode is { } c ? c.ToString(CultureInfo.InvariantCulture) : "")} | {Opt(s.ExitedAfterSeconds, "0.00")} s | {Opt(s.ReadyAfterSeconds, "0.00")} s | {Opt(s.ResumedAfterSeconds, "0.0")} s | {Opt(s.DrainedAfterSeconds, "0.0")} s | {s.Error} |"));
            md.AppendLine();
        }
        if (r.Growth.Count > 0)
        {
            md.AppendLine("## Growth over the measured window");
            md.AppendLine();
            md.AppendLine("| figure | first | last | peak | least-squares slope per minute |");
            md.AppendLine("|---|---:|---:|---:|---:|");
            foreach (var g in r.Growth)
                md.AppendLine(Inv($"| {g.Figure} | {g.First:N1} | {g.Last:N1} | {g.Peak:N1} | {g.SlopePerMinute:+0.00;-0.00;0} |"));
            md.AppendLine();
        }
        if (r.Marks.Count > 0)
            md.AppendLine("Marks (seconds since the load started): " + string.Join(", ", r.Marks.Select(m => Inv($"{m.Second:0.0} {m.Label}"))) + ".");
        md.AppendLine();
        md.AppendLine(r.Passed ? "Result: **passed**." : "Result: **FAILED**:");
        foreach (var failure in r.Failures)
            md.AppendLine($"- {failure}");
        if (r.Server.LoggedErrors.Count > 0)
        {
            md.AppendLine();
            md.AppendLine("Server errors logged (first 5):");
            md.AppendLine("```");
            foreach (var line in r.Server.LoggedErrors.Take(5))
                md.AppendLine(line);
            md.AppendLine("```");
        }
        md.AppendLine();
        md.AppendLine("Per-second figures: `timeline` in report.json.");
        return md.ToString();
    }

    private static string Ms(double? value) => value is { } v ? Inv($"{v:0.0##} ms") : "–";

    private static string Opt(double? value, string format) => value is { } v ? v.ToString(format, CultureInfo.InvariantCulture) : "n/a";

    private static string Inv(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
