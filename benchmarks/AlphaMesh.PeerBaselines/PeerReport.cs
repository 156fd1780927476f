using System.Globalization;
using System.Text;
using System.Text.Json;

namespace AlphaMesh.PeerBaselines;

/// <summary>
/// The <c>report</c> command: one table of every system's run with the ratios AlphaMesh/baseline, printed and written
/// as Markdown, then how each system was set up, and the issue's targets against the fastest variant of each peer.
/// </summary>
internal static class PeerReport
{
    /// <summary>The issue's targets: AlphaMesh's end-to-end rate over the best variant of each peer.</summary>
    public static readonly (string Prefix, string Peer, double Factor)[] Targets =
    [
        ("postgres", "the PostgreSQL events table", 20),
        ("redis", "Redis dedupe key + counters", 5),
        ("clickhouse", "ClickHouse insert (which does not deduplicate)", 1),
    ];

    public static async Task<int> RunAsync(PeerOptions options, TextWriter output, CancellationToken cancellationToken)
    {
        var results = new List<RunResult>();
        foreach (string file in Directory.EnumerateFiles(options.Results, "*.json"))
        {
            await using var stream = File.OpenRead(file);
            results.Add(await JsonSerializer.DeserializeAsync<RunResult>(stream, PeerRun.Json, cancellationToken).ConfigureAwait(false)
                ?? throw new InvalidDataException($"{file} holds no result"));
        }
        if (results.Count == 0)
        {
            output.WriteLine($"error: no results in {options.Results}");
            return 1;
        }
        results.Sort((a, b) => Array.IndexOf(PeerOptions.Systems, a.System).CompareTo(Array.IndexOf(PeerOptions.Systems, b.System)));
        string markdown = Markdown(results, options.CommandText, Machine(), DateTimeOffset.UtcNow);
        await File.WriteAllTextAsync(options.Out, markdown, cancellationToken).ConfigureAwait(false);
        output.WriteLine();
        output.WriteLine(markdown);
        output.WriteLine($"written to {options.Out}");
        return 0;
    }

    /// <summary>AlphaMesh's figure over the baseline's, as text: "12.3×"; "n/a" without both.</summary>
    public static string Ratio(double alphaMesh, double baseline)
    {
        if (!(alphaMesh > 0) || !(baseline > 0) || double.IsInfinity(alphaMesh) || double.IsInfinity(baseline))
            return "n/a";
        double ratio = alphaMesh / baseline;
        // Two significant digits are all a shared 2-core machine can tell apart.
        string text = ratio >= 10 ? ratio.ToString("0", CultureInfo.InvariantCulture)
            : ratio >= 1 ? ratio.ToString("0.0", CultureInfo.InvariantCulture)
            : ratio.ToString("0.00", CultureInfo.InvariantCulture);
        return text + "×";
    }

    public static string Markdown(IReadOnlyList<RunResult> results, string command, string machine, DateTimeOffset now)
    {
        var reference = results.FirstOrDefault(r => r.System == "alphamesh");
        var first = results[0];
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"# Peer baselines, {now:yyyy-MM-dd HH:mm} UTC");
        md.AppendLine();
        if (command.Length > 0)
            md.AppendLine(CultureInfo.InvariantCulture, $"Command: `{command}`").AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"Machine: {machine}. Client and server on the same machine over loopback; the systems ran one after another, each on a fresh server.").AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture,
            $"Events: {first.Events:N0} sent ({first.Duplicates:N0} duplicates by event id, {first.Distinct:N0} distinct), {first.Customers:N0} customers, seed {first.Seed}, times in the hour from {first.BaseTime:yyyy-MM-ddTHH:mm}Z; amounts 0.01-100.00. Usage: COUNT and SUM(amount) per customer, held against the generator's oracle.").AppendLine();

        string[] header =
        [
            "system", "events/s end to end", "AlphaMesh/baseline", "ingest events/s", "usage query s", "server CPU s per M events",
            "AlphaMesh/baseline", "client CPU s per M events", "server peak RSS MiB", "AlphaMesh/baseline", "exact",
        ];
        var rows = new List<string[]>();
        foreach (var r in results)
        {
            string[] row =
            [
                r.Name,
                Number(r.EndToEndEventsPerSecond, "N0"),
                reference is null ? "n/a" : Ratio(reference.EndToEndEventsPerSecond, r.EndToEndEventsPerSecond),
                Number(r.IngestEventsPerSecond, "N0"),
                Number(r.UsageSeconds, "0.00"),
                Number(r.ServerCpuPerMillion, "0.00"),
                reference is null ? "n/a" : Ratio(reference.ServerCpuPerMillion, r.ServerCpuPerMillion),
                Number(r.ClientCpuPerMillion, "0.00"),
                Number(r.ServerPeakBytes / 1048576.0, "N0"),
                reference is null ? "n/a" : Ratio(reference.ServerPeakBytes, r.ServerPeakBytes),
                r.ExactDetail,
            ];
            rows.Add(row);
        }
        AppendTable(md, header, rows);
        md.AppendLine();
        md.AppendLine("AlphaMesh/baseline is AlphaMesh's figure divided by the row's: above 1 for events/s means AlphaMesh is faster; below 1 for CPU and memory means "
            + "AlphaMesh uses less. End to end is events sent (duplicates included) over the time from the first send to the answer of the usage query; ingest "
            + "stops at the last acknowledgement. Server CPU is the server's processes (utime + stime, children included) over ingest and the query; client CPU is "
            + "this tool's own (generating the events is not timed). Peak RSS is VmHWM of the server's largest process.");
        md.AppendLine();

        if (reference is not null)
        {
            md.AppendLine("## Against the issue's targets").AppendLine();
            foreach (var (prefix, peer, factor) in Targets)
            {
                var best = results.Where(r => r.System.StartsWith(prefix, StringComparison.Ordinal)).MaxBy(r => r.EndToEndEventsPerSecond);
                if (best is null)
                    continue;
                double ratio = reference.EndToEndEventsPerSecond / best.EndToEndEventsPerSecond;
                string goal = factor > 1 ? $"at least {factor:0}×" : "ahead";
                bool met = factor > 1 ? ratio >= factor : ratio > 1;
                md.AppendLine(CultureInfo.InvariantCulture,
                    $"- {peer}, fastest variant ({best.Name}): AlphaMesh {Ratio(reference.EndToEndEventsPerSecond, best.EndToEndEventsPerSecond)} end to end; target {goal}: **{(met ? "met" : "not met")}**.");
            }
            md.AppendLine();
        }

        md.AppendLine("## How each system ran").AppendLine();
        foreach (var r in results)
        {
            md.AppendLine(CultureInfo.InvariantCulture, $"**{r.Name}** — {r.Version}").AppendLine();
            md.AppendLine(CultureInfo.InvariantCulture, $"- method: {r.Method}");
            md.AppendLine(CultureInfo.InvariantCulture, $"- durability: {r.Durability}");
            if (r.Recheck.Length > 0)
                md.AppendLine(CultureInfo.InvariantCulture, $"- usage not exact: {r.ExactDetail}; {r.Recheck}");
            md.AppendLine(CultureInfo.InvariantCulture,
                $"- ingest {r.IngestSeconds:0.00} s, usage query {r.UsageSeconds:0.00} s, server CPU {r.ServerCpuSeconds:0.00} s, client CPU {r.ClientCpuSeconds:0.00} s, memory over {r.ServerProcesses} process(es); started {r.StartedAt:HH:mm:ss} UTC, load average {r.LoadAverageBefore} before, {r.LoadAverageAfter} after");
            md.AppendLine();
        }
        return md.ToString();
    }

    private static string Number(double value, string format)
        => double.IsFinite(value) ? value.ToString(format, CultureInfo.InvariantCulture) : "n/a";

    /// <summary>A Markdown table with its columns padded, so it reads as well in a terminal as rendered.</summary>
    private static void AppendTable(StringBuilder md, string[] header, List<string[]> rows)
    {
        // The first and last columns are text (left-aligned), the others figures (right-aligned).
        bool Text(int column) => column == 0 || column == header.Length - 1;
        var widths = header.Select((h, c) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[c].Length))).ToArray();
        md.AppendLine("| " + string.Join(" | ", header.Select((h, c) => h.PadRight(widths[c]))) + " |");
        md.AppendLine("|" + string.Join("|", widths.Select((w, c) => Text(c) ? new string('-', w + 2) : new string('-', w + 1) + ":")) + "|");
        foreach (var row in rows)
            md.AppendLine("| " + string.Join(" | ", row.Select((cell, c) => Text(c) ? cell.PadRight(widths[c]) : cell.PadLeft(widths[c]))) + " |");
    }

    /// <summary>CPU model, cores, memory and kernel, from /proc.</summary>
    private static string Machine()
    {
        string model = "unknown CPU";
        try
        {
            model = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? model;
            string? memory = File.ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemTotal:", StringComparison.Ordinal));
            double gib = memory is null ? 0 : long.Parse(memory.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1048576.0;
            string kernel = File.ReadAllText("/proc/sys/kernel/osrelease").Trim();
            return string.Create(CultureInfo.InvariantCulture, $"{Environment.ProcessorCount} cores ({model}), {gib:0} GiB, Linux {kernel}, .NET {Environment.Version}");
        }
        catch (IOException)
        {
            return $"{Environment.ProcessorCount} cores ({model})";
        }
    }
}
