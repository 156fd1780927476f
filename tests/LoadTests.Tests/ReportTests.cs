using System.Globalization;
using System.Text.Json;
using System.Xml.Linq;

namespace AlphaMesh.LoadTests.Tests;

public sealed class ReportTests : IDisposable
{
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";
    private readonly string _directory = Directory.CreateTempSubdirectory("alphamesh-report-test-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void Render_Timeline_WellFormedWithSixSeriesInsideTheirPanels()
    {
        var points = Enumerable.Range(1, 30).Select(s => Point(s, measuring: s > 3, p50: 2 + (s % 5), p99: 20 + s, offered: 50_000, accepted: 49_000 + (s * 10))).ToList();

        var svg = XDocument.Parse(SvgChart.Render(points, [new Mark(3, "measure"), new Mark(15.5, "SIGTERM")], "steady <&> test", "sub"));

        var lines = svg.Descendants(Svg + "polyline").ToList();
        Assert.Equal(6, lines.Count);
        Assert.Equal([SvgChart.P50Color, SvgChart.P99Color, SvgChart.OfferedColor, SvgChart.AcceptedColor, SvgChart.RssColor, SvgChart.DataColor],
            lines.Select(l => (string)l.Attribute("stroke")!));
        foreach (var line in lines)
        {
            var coordinates = Points(line);
            Assert.Equal(30, coordinates.Count);
            var (top, bottom) = (string)line.Attribute("stroke")! switch
            {
                SvgChart.P50Color or SvgChart.P99Color => (SvgChart.LatencyTop, SvgChart.LatencyBottom),
                SvgChart.OfferedColor or SvgChart.AcceptedColor => (SvgChart.RateTop, SvgChart.RateBottom),
                _ => (SvgChart.MemoryTop, SvgChart.MemoryBottom),
            };
            Assert.All(coordinates, c => Assert.InRange(c.Y, top, bottom));
            Assert.All(coordinates, c => Assert.InRange(c.X, SvgChart.Left, SvgChart.Right));
            Assert.True(coordinates.Zip(coordinates.Skip(1)).All(pair => pair.First.X < pair.Second.X), "time runs left to right");
        }
        Assert.Contains(svg.Descendants(Svg + "text"), t => t.Value == "SIGTERM");
        Assert.Contains(svg.Descendants(Svg + "text"), t => t.Value == "steady <&> test");
        Assert.Contains(svg.Descendants(Svg + "text"), t => t.Value == "warm-up");
    }

    [Fact]
    public void Render_KnownValues_PlacedOnTheLogAndLinearScales()
    {
        // p50 1 ms and p99 100 ms: the axis runs from 1 to 100 ms, so they sit on the bottom and top edges, and 10 ms
        // (the second point's p99) exactly half way. The rate axis ends at a round figure above 100k.
        var points = new List<TimelinePoint> { Point(1, true, 1, 100, 100_000, 50_000), Point(2, true, 1, 10, 100_000, 100_000) };

        var svg = XDocument.Parse(SvgChart.Render(points, [], "t", "s"));

        var lines = svg.Descendants(Svg + "polyline").ToList();
        var p50 = Points(lines[0]);
        var p99 = Points(lines[1]);
        Assert.All(p50, c => Assert.Equal(SvgChart.LatencyBottom, c.Y, 1));
        Assert.Equal(SvgChart.LatencyTop, p99[0].Y, 1);
        Assert.Equal((SvgChart.LatencyTop + SvgChart.LatencyBottom) / 2, p99[1].Y, 1);
        double rateMax = SvgChart.NiceCeiling(100_000);
        var accepted = Points(lines[3]);
        Assert.Equal(SvgChart.RateBottom - ((SvgChart.RateBottom - SvgChart.RateTop) * 50_000 / rateMax), accepted[0].Y, 1);
        // RSS 300 MiB on an axis that ends at the next round figure (400).
        var rss = Points(lines[4]);
        Assert.Equal(SvgChart.MemoryBottom - ((SvgChart.MemoryBottom - SvgChart.MemoryTop) * 300 / SvgChart.NiceCeiling(300)), rss[0].Y, 1);
        Assert.Equal(400, SvgChart.NiceCeiling(300));
        // Points sit in the middle of their second: 0.5 and 1.5 of 2.
        Assert.Equal(SvgChart.Left + ((SvgChart.Right - SvgChart.Left) / 4), p50[0].X, 1);
    }

    [Fact]
    public void Render_SecondsWithoutReplies_GapInTheLatencyLines()
    {
        // A restart: seconds 4-6 have no replies, second 8 is a lone one.
        var points = Enumerable.Range(1, 9).Select(s => s is >= 4 and <= 6 or 7 or 9
            ? Point(s, true, null, null, 1000, 0)
            : Point(s, true, 3, 30, 1000, 1000)).ToList();

        var svg = XDocument.Parse(SvgChart.Render(points, [], "t", "s"));

        var p50Lines = svg.Descendants(Svg + "polyline").Where(l => (string)l.Attribute("stroke")! == SvgChart.P50Color).ToList();
        Assert.Single(p50Lines);
        Assert.Equal(3, Points(p50Lines[0]).Count);
        Assert.Single(svg.Descendants(Svg + "circle"), c => (string)c.Attribute("fill")! == SvgChart.P50Color);
        // The rate lines have a value every second: no gap.
        Assert.Equal(9, Points(svg.Descendants(Svg + "polyline").Single(l => (string)l.Attribute("stroke")! == SvgChart.AcceptedColor)).Count);
    }

    [Fact]
    public void Render_NoPoints_StillAChart()
    {
        var svg = XDocument.Parse(SvgChart.Render([], [], "t", "s"));

        Assert.Empty(svg.Descendants(Svg + "polyline"));
        Assert.DoesNotContain("NaN", svg.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0.7, 1)]
    [InlineData(1, 1)]
    [InlineData(1.1, 2)]
    [InlineData(3, 5)]
    [InlineData(7, 10)]
    [InlineData(12_500, 20_000)]
    [InlineData(0, 1)]
    public void NiceStep_Rough_SmallestOneTwoFiveAbove(double rough, double expected)
        => Assert.Equal(expected, SvgChart.NiceStep(rough), 9);

    [Fact]
    public void LatencyRange_ValuesAcrossDecades_WholeDecadesAround()
    {
        var points = new List<TimelinePoint> { Point(1, true, 0.35, 4, 1, 1), Point(2, true, 2, 1234, 1, 1), Point(3, true, null, null, 1, 1) };

        var (low, high) = SvgChart.LatencyRange(points);
        Assert.Equal(0.1, low, 12);
        Assert.Equal(10_000, high, 9);
        Assert.Equal([0.1, 0.2, 0.5, 1, 2, 5, 10], SvgChart.LogTicks(0.1, 10).Select(t => Math.Round(t, 9)));
    }

    [Fact]
    public void Write_PassedRun_FourFilesAndTheJsonReadsBack()
    {
        var report = Report(failures: []);

        string directory = ReportWriter.Write(report, _directory, serverLog: null);

        Assert.Equal(Path.Combine(_directory, "spike-20261125T204812Z"), directory);
        Assert.Equal(["command.txt", "latency.svg", "report.json", "report.md"], Directory.GetFiles(directory).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "report.json")));
        var root = json.RootElement;
        Assert.Equal("spike", root.GetProperty("scenario").GetString());
        Assert.True(root.GetProperty("passed").GetBoolean());
        Assert.Equal(0, root.GetProperty("exactness").GetProperty("lost").GetInt64());
        Assert.Equal(12_345, root.GetProperty("counters").GetProperty("acknowledged").GetInt64());
        Assert.Equal(2, root.GetProperty("errorsByCode").GetProperty("rejected:time_in_future").GetInt64());
        Assert.Equal(3, root.GetProperty("timeline").GetArrayLength());
        Assert.Equal(25.5, root.GetProperty("latency").GetProperty("p99").GetDouble());
        Assert.Equal(398, root.GetProperty("exactness").GetProperty("aggregatedPerSecond").GetDouble());
        string md = File.ReadAllText(Path.Combine(directory, "report.md"));
        Assert.Contains("# Load run: spike — passed", md, StringComparison.Ordinal);
        Assert.Contains("**lost 0, doubled 0, mismatched 0**", md, StringComparison.Ordinal);
        Assert.Contains("acknowledged and aggregated: 398 events/s", md, StringComparison.Ordinal);
        Assert.Contains("| spike x10 | 10 | 200,000 | 199,000 |", md, StringComparison.Ordinal);
        Assert.Contains("![reply latency and rates per second](latency.svg)", md, StringComparison.Ordinal);
        string command = File.ReadAllText(Path.Combine(directory, "command.txt"));
        Assert.StartsWith("load-tests/run.sh spike --duration 30\n", command, StringComparison.Ordinal);
        Assert.Contains("load average 0.50 0.40 0.30 (start)", command, StringComparison.Ordinal);
        Assert.Contains("# AlphaMesh__Aggregator__CheckpointInterval=00:00:05", command, StringComparison.Ordinal);
        XDocument.Load(Path.Combine(directory, "latency.svg"));
    }

    [Fact]
    public void RenderChartAgain_WrittenReport_SameChart()
    {
        var report = Report(failures: []) with { Marks = [new Mark(1.5, "SIGKILL"), new Mark(2, "healthy")] };
        string directory = ReportWriter.Write(report, _directory, serverLog: null);
        string written = File.ReadAllText(Path.Combine(directory, "latency.svg"));
        File.Delete(Path.Combine(directory, "latency.svg"));

        ReportWriter.RenderChartAgain(directory);

        Assert.Equal(written, File.ReadAllText(Path.Combine(directory, "latency.svg")));
    }

    [Fact]
    public void Markdown_FailedRun_SaysFailedAndWhy()
    {
        var report = Report(failures: ["the server's usage differs from the ledger: lost 3"]) with
        {
            Exactness = new ExactnessFigures(3, 0, 2, 10, 100, 5, ["t1/c1/load_calls: ledger 10, server 7"]),
        };

        string md = ReportWriter.Markdown(report);

        Assert.Contains("# Load run: spike — FAILED", md, StringComparison.Ordinal);
        Assert.Contains("**lost 3, doubled 0, mismatched 2**", md, StringComparison.Ordinal);
        Assert.Contains("- t1/c1/load_calls: ledger 10, server 7", md, StringComparison.Ordinal);
        Assert.Contains("- the server's usage differs from the ledger: lost 3", md, StringComparison.Ordinal);
        Assert.False(report.Passed);
    }

    [Fact]
    public void MaxScheduleLag_ProducersLate_WorstMeasuredSecondInEventsAndSeconds()
    {
        var report = Report(failures: []) with
        {
            Timeline =
            [
                Point(1, false, 1, 2, 3, 4) with { ScheduleLag = 900_000, TargetRate = 20_000 }, // warm-up: not counted
                Point(2, true, 1, 2, 3, 4) with { ScheduleLag = 1_000, TargetRate = 20_000 },
                Point(3, true, 1, 2, 3, 4) with { ScheduleLag = 150_000, TargetRate = 200_000 },
                Point(4, true, 1, 2, 3, 4) with { ScheduleLag = 0, TargetRate = 20_000 },
            ],
        };

        Assert.Equal(new ScheduleLagFigures(150_000, 0.75), report.MaxScheduleLag);
        Assert.Contains("| harness behind its schedule, at most | 150,000 events (0.75 s of the rate) |", ReportWriter.Markdown(report), StringComparison.Ordinal);
        Assert.Contains("**The harness ran late**", ReportWriter.Markdown(report), StringComparison.Ordinal);
        Assert.Null(Report(failures: []).MaxScheduleLag); // closed model: no schedule
    }

    private static RunReport Report(List<string> failures) => new()
    {
        Scenario = "spike",
        Command = "load-tests/run.sh spike --duration 30",
        Commit = "abc123",
        StartedAt = new DateTimeOffset(2026, 11, 25, 20, 48, 12, TimeSpan.Zero),
        EndedAt = new DateTimeOffset(2026, 11, 25, 20, 49, 0, TimeSpan.Zero),
        Cores = 2,
        LoadAverageStart = "0.50 0.40 0.30",
        LoadAverageEnd = "0.90 0.50 0.30",
        Settings = new SortedDictionary<string, string> { ["rate"] = "20000", ["env AlphaMesh__Aggregator__CheckpointInterval"] = "00:00:05" },
        MeasuredSeconds = 30,
        Counters = new LoadCounters(12_400, 0, 12_345, 2, 0, 20, 0, 0),
        OfferedPerSecond = 413,
        AcceptedPerSecond = 411,
        Latency = new LatencySummary(20, 3.5, 10, 25.5, 30, 31),
        ErrorsByCode = new SortedDictionary<string, long> { ["rejected:time_in_future"] = 2 },
        Server = new ServerFigures(10, 0.33, 4, 300, 190, 200, 0, []),
        Exactness = new ExactnessFigures(0, 0, 0, 10, 12_345, 20, [], AggregatedPerSecond: 398),
        Phases = [new PhaseStats("spike x10", 200_000, 10, 2_000_000, 1_990_000, 0, 0, 2000, 3, 20, 25, 30)],
        Marks = [new Mark(10, "spike x10")],
        Timeline = [Point(1, false, 1, 2, 3, 4), Point(2, true, 1, 2, 3, 4), Point(3, true, null, null, 3, 0)],
        Failures = failures,
    };

    private static TimelinePoint Point(int second, bool measuring, double? p50, double? p99, double offered, double accepted)
        => new(second, measuring, offered, offered, accepted, 0, 0, p50 is null ? 0 : 10, 0, p50, p99, p99, 0.5, 300, 200);

    private static List<(double X, double Y)> Points(XElement polyline)
        => [.. ((string)polyline.Attribute("points")!).Split(' ').Select(p => p.Split(','))
            .Select(xy => (double.Parse(xy[0], CultureInfo.InvariantCulture), double.Parse(xy[1], CultureInfo.InvariantCulture)))];
}
