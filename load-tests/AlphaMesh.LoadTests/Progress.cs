using System.Globalization;
using Spectre.Console;

namespace AlphaMesh.LoadTests;

/// <summary>One line per second and one per message: for logs and pipes (stdout not a terminal).</summary>
internal sealed class PlainProgress(TextWriter output) : IProgressView
{
    private readonly Lock _gate = new();

    public void Show(TimelinePoint p, LoadCounters totals)
    {
        lock (_gate)
            output.WriteLine(Line(p, totals));
    }

    public void Say(string message)
    {
        lock (_gate)
            output.WriteLine("  " + message);
    }

    /// <summary>The progress line of one second.</summary>
    public static string Line(TimelinePoint p, LoadCounters totals) => string.Create(CultureInfo.InvariantCulture,
        $"[{(p.Measuring ? "measure" : "warmup ")} {p.Second,4} s] offered {p.OfferedPerSecond,10:N0}/s | accepted {p.AcceptedPerSecond,10:N0}/s | replies {p.Batches,5} | " +
        $"p50 {Ms(p.P50Ms),8} p99 {Ms(p.P99Ms),8} ms | errors {totals.Rejected + totals.Failed} not offered {totals.NotOffered} | reconnects {totals.Reconnects} | " +
        $"server {(p.ServerCpuCores is { } c ? c.ToString("0.00", CultureInfo.InvariantCulture) : "-")} cores {(p.ServerRssMiB is { } m ? m.ToString("N0", CultureInfo.InvariantCulture) : "-")} MiB");

    private static string Ms(double? ms) => ms is { } v ? v.ToString("0.00", CultureInfo.InvariantCulture) : "-";
}

/// <summary>A live table on a terminal (Spectre.Console), redrawn every second, with the last messages under it;
/// errors are the run's rejected, failed and not offered events so far.</summary>
internal sealed class LiveProgress : IProgressView
{
    private readonly Table _table = new();
    private readonly List<string> _messages = [];
    private readonly Lock _gate = new();
    private LiveDisplayContext? _context;

    public LiveProgress(string title)
    {
        _table.Title = new TableTitle(Markup.Escape(title) + " (w: warm-up)");
        // Nine narrow columns without side borders: fits an 80-column terminal.
        _table.Border(TableBorder.Simple);
        foreach (string column in (string[])["second", "offered/s", "accepted/s", "p50 ms", "p99 ms", "errors", "reconn.", "cores", "MiB"])
            _table.AddColumn(new TableColumn(column).RightAligned());
    }

    /// <summary>Runs <paramref name="body"/> with the table on screen; it stays there, with its last figures, afterwards.</summary>
    public Task RunAsync(Func<Task> body)
        => AnsiConsole.Live(_table).AutoClear(false).StartAsync(async context =>
        {
            lock (_gate)
                _context = context;
            await body().ConfigureAwait(false);
            lock (_gate)
                _context = null;
        });

    public void Show(TimelinePoint p, LoadCounters totals)
    {
        lock (_gate)
        {
            // The last 10 seconds, newest at the bottom.
            if (_table.Rows.Count >= 10)
                _table.Rows.RemoveAt(0);
            _table.AddRow(
                $"{(p.Measuring ? "" : "w")}{p.Second}",
                N(p.OfferedPerSecond), N(p.AcceptedPerSecond), F(p.P50Ms), F(p.P99Ms),
                N(totals.Rejected + totals.Failed + totals.NotOffered), N(totals.Reconnects),
                F(p.ServerCpuCores), p.ServerRssMiB is { } m ? N(m) : "-");
            _context?.Refresh();
        }
    }

    public void Say(string message)
    {
        lock (_gate)
        {
            _messages.Add($"{DateTime.UtcNow:HH:mm:ss} {message}");
            _table.Caption = new TableTitle(Markup.Escape(string.Join('\n', _messages.TakeLast(5))));
            _context?.Refresh();
        }
    }

    private static string N(double value) => value.ToString("N0", CultureInfo.InvariantCulture);

    private static string F(double? value) => value is { } v ? v.ToString("0.00", CultureInfo.InvariantCulture) : "-";
}
