using System.Globalization;
using System.Text;

namespace AlphaMesh.LoadTests;

/// <summary>
/// The run as a hand-written SVG: reply latency p50 and p99 per second (log scale, top), offered and accepted
/// events per second (middle), and the server's RSS and data directory size (bottom), on one time axis, with the
/// warm-up shaded and the run's marks (phase changes, signals, restarts) as dashed lines.
/// </summary>
internal static class SvgChart
{
    public const int Width = 1000;
    public const int Height = 770;
    public const double Left = 80, Right = 970;
    public const double LatencyTop = 80, LatencyBottom = 310;
    public const double RateTop = 360, RateBottom = 530;
    public const double MemoryTop = 580, MemoryBottom = 720;

    public const string P50Color = "#1f77b4";
    public const string P99Color = "#d62728";
    public const string OfferedColor = "#7f7f7f";
    public const string AcceptedColor = "#2ca02c";
    public const string RssColor = "#9467bd";
    public const string DataColor = "#8c564b";

    private static readonly (double Top, double Bottom)[] Panels = [(LatencyTop, LatencyBottom), (RateTop, RateBottom), (MemoryTop, MemoryBottom)];

    public static string Render(IReadOnlyList<TimelinePoint> points, IReadOnlyList<Mark> marks, string title, string subtitle)
    {
        var svg = new StringBuilder();
        svg.AppendLine(Inv($"""<svg xmlns="http://www.w3.org/2000/svg" width="{Width}" height="{Height}" viewBox="0 0 {Width} {Height}" font-family="sans-serif" font-size="12">"""));
        svg.AppendLine(Inv($"""<rect width="{Width}" height="{Height}" fill="white"/>"""));
        svg.AppendLine(Inv($"""<text x="{Left}" y="24" font-size="15" font-weight="bold">{Escape(Shorten(title, 100))}</text>"""));
        svg.AppendLine(Inv($"""<text x="{Left}" y="44" fill="#555">{Escape(subtitle)}</text>"""));

        double maxSecond = Math.Max(1, points.Count == 0 ? 1 : points.Max(p => p.Second));
        double X(double second) => Left + ((Right - Left) * Math.Clamp(second, 0, maxSecond) / maxSecond);

        // Warm-up: the seconds before the first measured one.
        int warmup = points.TakeWhile(p => !p.Measuring).Count();
        if (warmup > 0 && warmup < points.Count)
        {
            foreach (var (top, bottom) in Panels)
                svg.AppendLine(Inv($"""<rect x="{X(0):0.#}" y="{top}" width="{X(warmup) - X(0):0.#}" height="{bottom - top}" fill="#eeeeee"/>"""));
            if (X(warmup) - X(0) >= 60) // the label only where it fits
                svg.AppendLine(Inv($"""<text x="{X(warmup / 2.0):0.#}" y="{LatencyBottom - 6}" text-anchor="middle" fill="#888">warm-up</text>"""));
        }

        // Latency panel, log scale.
        var (low, high) = LatencyRange(points);
        double YLatency(double ms) => LatencyBottom - ((LatencyBottom - LatencyTop) * (Math.Log10(Math.Max(ms, low)) - Math.Log10(low)) / (Math.Log10(high) - Math.Log10(low)));
        foreach (double tick in LogTicks(low, high))
            HorizontalGridLine(svg, YLatency(tick), FormatMs(tick));
        svg.AppendLine(Inv($"""<text x="20" y="{(LatencyTop + LatencyBottom) / 2:0.#}" transform="rotate(-90 20 {(LatencyTop + LatencyBottom) / 2:0.#})" text-anchor="middle">reply latency (ms, log)</text>"""));
        Line(svg, points.Select(p => (p.Second - 0.5, p.P50Ms)), X, YLatency, P50Color, dashed: false);
        Line(svg, points.Select(p => (p.Second - 0.5, p.P99Ms)), X, YLatency, P99Color, dashed: false);
        Legend(svg, LatencyTop - 10, [("p50", P50Color, false), ("p99", P99Color, false)]);

        // Rate panel, linear.
        double rateMax = NiceCeiling(points.Count == 0 ? 1 : points.Max(p => Math.Max(p.OfferedPerSecond, p.AcceptedPerSecond)));
        double YRate(double rate) => RateBottom - ((RateBottom - RateTop) * rate / rateMax);
        double step = NiceStep(rateMax / 4);
        for (double tick = 0; tick <= rateMax + (step / 2); tick += step)
            HorizontalGridLine(svg, YRate(tick), FormatRate(tick));
        svg.AppendLine(Inv($"""<text x="20" y="{(RateTop + RateBottom) / 2:0.#}" transform="rotate(-90 20 {(RateTop + RateBottom) / 2:0.#})" text-anchor="middle">events/s</text>"""));
        Line(svg, points.Select(p => (p.Second - 0.5, (double?)p.OfferedPerSecond)), X, YRate, OfferedColor, dashed: true);
        Line(svg, points.Select(p => (p.Second - 0.5, (double?)p.AcceptedPerSecond)), X, YRate, AcceptedColor, dashed: false);
        Legend(svg, RateTop - 10, [("offered", OfferedColor, true), ("accepted", AcceptedColor, false)]);

        // Memory and disk panel, linear.
        double memoryMax = NiceCeiling(points.Count == 0 ? 1 : points.Max(p => Math.Max(p.ServerRssMiB ?? 0, p.DataDirectoryMiB ?? 0)));
        double YMemory(double mib) => MemoryBottom - ((MemoryBottom - MemoryTop) * mib / memoryMax);
        double memoryStep = NiceStep(memoryMax / 3);
        for (double tick = 0; tick <= memoryMax + (memoryStep / 2); tick += memoryStep)
            HorizontalGridLine(svg, YMemory(tick), Inv($"{tick:0}"));
        svg.AppendLine(Inv($"""<text x="20" y="{(MemoryTop + MemoryBottom) / 2:0.#}" transform="rotate(-90 20 {(MemoryTop + MemoryBottom) / 2:0.#})" text-anchor="middle">server MiB</text>"""));
        Line(svg, points.Select(p => (p.Second - 0.5, p.ServerRssMiB)), X, YMemory, RssColor, dashed: false);
        Line(svg, points.Select(p => (p.Second - 0.5, p.DataDirectoryMiB)), X, YMemory, DataColor, dashed: true);
        Legend(svg, MemoryTop - 10, [("RSS", RssColor, false), ("data directory", DataColor, true)]);

        // Time axis under every panel.
        double timeStep = NiceStep(maxSecond / 10);
        for (double t = 0; t <= maxSecond + 1e-9; t += timeStep)
        {
            foreach (var (_, bottom) in Panels)
                svg.AppendLine(Inv($"""<text x="{X(t):0.#}" y="{bottom + 16}" text-anchor="middle" fill="#555">{t:0.#}</text>"""));
        }
        svg.AppendLine(Inv($"""<text x="{(Left + Right) / 2}" y="{MemoryBottom + 36}" text-anchor="middle">seconds since the load started</text>"""));
        foreach (var (top, bottom) in Panels)
            svg.AppendLine(Inv($"""<rect x="{Left}" y="{top}" width="{Right - Left}" height="{bottom - top}" fill="none" stroke="#333"/>"""));

        // Marks: a dashed line through both panels, the label above the latency panel (staggered when close).
        double lastLabelX = double.NegativeInfinity;
        int row = 0;
        foreach (var mark in marks)
        {
            double x = X(mark.Second);
            row = x - lastLabelX < 90 ? (row + 1) % 3 : 0;
            lastLabelX = x;
            svg.AppendLine(Inv($"""<line x1="{x:0.#}" y1="{LatencyTop}" x2="{x:0.#}" y2="{MemoryBottom}" stroke="#e377c2" stroke-dasharray="4 3"/>"""));
            // Near the right edge the label goes to the left of its line.
            bool left = x > Right - 80;
            svg.AppendLine(Inv($"""<text x="{(left ? x - 3 : x + 3):0.#}" y="{LatencyTop + 12 + (row * 13)}" fill="#e377c2" font-size="11"{(left ? " text-anchor=\"end\"" : "")}>{Escape(mark.Label)}</text>"""));
        }
        svg.AppendLine("</svg>");
        return svg.ToString();
    }

    /// <summary>Decades around the latencies seen: from the one below the lowest p50 to the one above the highest p99.</summary>
    public static (double Low, double High) LatencyRange(IReadOnlyList<TimelinePoint> points)
    {
        var values = points.SelectMany(p => new[] { p.P50Ms, p.P99Ms }).OfType<double>().Where(v => v > 0).ToList();
        if (values.Count == 0)
            return (1, 10);
        double low = Math.Pow(10, Math.Floor(Math.Log10(Math.Max(0.01, values.Min()))));
        double high = Math.Pow(10, Math.Ceiling(Math.Log10(values.Max())));
        return (low, high > low ? high : low * 10);
    }

    /// <summary>1, 2 and 5 times each power of ten within [low, high].</summary>
    public static IEnumerable<double> LogTicks(double low, double high)
    {
        for (double decade = low; decade <= high * 1.0001; decade *= 10)
        {
            foreach (double m in new[] { 1.0, 2, 5 })
            {
                if (decade * m <= high * 1.0001)
                    yield return decade * m;
            }
        }
    }

    /// <summary>The smallest of 1, 2, 5 times a power of ten that is at least <paramref name="rough"/>.</summary>
    public static double NiceStep(double rough)
    {
        if (!(rough > 0))
            return 1;
        double power = Math.Pow(10, Math.Floor(Math.Log10(rough)));
        foreach (double m in new[] { 1.0, 2, 5, 10 })
        {
            if (m * power >= rough * 0.9999)
                return m * power;
        }
        return 10 * power;
    }

    /// <summary>A round upper bound for an axis: the next multiple of a nice step above the maximum (1 when nothing).</summary>
    public static double NiceCeiling(double max)
    {
        if (!(max > 0))
            return 1;
        double step = NiceStep(max / 4);
        return Math.Ceiling(max * 1.05 / step) * step;
    }

    /// <summary>A polyline per run of seconds with a value (a second without replies has no latency: a gap).</summary>
    private static void Line(StringBuilder svg, IEnumerable<(double Second, double? Value)> values, Func<double, double> x, Func<double, double> y, string color, bool dashed)
    {
        var run = new List<(double X, double Y)>();
        void Flush()
        {
            if (run.Count == 1)
                svg.AppendLine(Inv($"""<circle cx="{run[0].X:0.#}" cy="{run[0].Y:0.#}" r="2" fill="{color}"/>"""));
            else if (run.Count > 1)
                svg.AppendLine($"""<polyline fill="none" stroke="{color}" stroke-width="1.6"{(dashed ? " stroke-dasharray=\"6 3\"" : "")} points="{string.Join(' ', run.Select(p => Inv($"{p.X:0.#},{p.Y:0.#}")))}"/>""");
            run.Clear();
        }
        foreach (var (second, value) in values)
        {
            if (value is { } v)
                run.Add((x(second), y(v)));
            else
                Flush();
        }
        Flush();
    }

    private static void HorizontalGridLine(StringBuilder svg, double y, string label)
    {
        svg.AppendLine(Inv($"""<line x1="{Left}" y1="{y:0.#}" x2="{Right}" y2="{y:0.#}" stroke="#dddddd"/>"""));
        svg.AppendLine(Inv($"""<text x="{Left - 6}" y="{y + 4:0.#}" text-anchor="end" fill="#555">{label}</text>"""));
    }

    private static void Legend(StringBuilder svg, double y, (string Name, string Color, bool Dashed)[] entries)
    {
        // About 7 px per character at font-size 12, after a 30 px sample line.
        double x = Right - entries.Sum(e => 50 + (7 * e.Name.Length));
        foreach (var (name, color, dashed) in entries)
        {
            svg.AppendLine(Inv($"""<line x1="{x}" y1="{y - 4}" x2="{x + 24}" y2="{y - 4}" stroke="{color}" stroke-width="2"{(dashed ? " stroke-dasharray=\"6 3\"" : "")}/>"""));
            svg.AppendLine(Inv($"""<text x="{x + 30}" y="{y}">{name}</text>"""));
            x += 50 + (7 * name.Length);
        }
    }

    private static string FormatMs(double ms) => ms >= 1 ? Inv($"{ms:0}") : Inv($"{ms:0.###}");

    private static string FormatRate(double rate) => rate >= 1_000_000 ? Inv($"{rate / 1_000_000:0.##}M") : rate >= 1_000 ? Inv($"{rate / 1_000:0.##}k") : Inv($"{rate:0}");

    private static string Shorten(string text, int max) => text.Length <= max ? text : text[..(max - 1)] + "…";

    private static string Escape(string text) => text.Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal)
        .Replace(">", "&gt;", StringComparison.Ordinal).Replace("\"", "&quot;", StringComparison.Ordinal);

    private static string Inv(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
