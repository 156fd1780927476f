namespace AlphaMesh.PeerBaselines.Tests;

/// <summary>The table's ratios and the verdicts against the issue's targets.</summary>
public sealed class PeerReportTests
{
    [Theory]
    [InlineData(1_000_000, 40_000, "25×")]
    [InlineData(300, 200, "1.5×")]
    [InlineData(1, 4, "0.25×")]
    [InlineData(10, 10, "1.0×")]
    [InlineData(0, 10, "n/a")]
    [InlineData(10, 0, "n/a")]
    [InlineData(double.NaN, 10, "n/a")]
    public void Ratio_AlphaMeshOverBaseline_TwoSignificantDigits(double alphaMesh, double baseline, string expected)
        => Assert.Equal(expected, PeerReport.Ratio(alphaMesh, baseline));

    [Fact]
    public void Markdown_Results_RatiosPerRowAndTargetVerdicts()
    {
        // Two million events each; seconds chosen so the end-to-end rates are round numbers.
        RunResult[] results =
        [
            Result("alphamesh", "AlphaMesh", seconds: 2, cpu: 2, peakMiB: 400, exact: true),       // 1,000,000/s
            Result("postgres-insert", "PG insert", seconds: 100, cpu: 40, peakMiB: 100, exact: true), // 20,000/s: 50×
            Result("postgres-copy", "PG copy", seconds: 40, cpu: 20, peakMiB: 100, exact: true),     // 50,000/s: 20×, the best
            Result("redis-event", "Redis event", seconds: 8, cpu: 4, peakMiB: 200, exact: true),    // 250,000/s: 4×
            Result("clickhouse", "ClickHouse", seconds: 1.6, cpu: 1, peakMiB: 800, exact: false),  // 1,250,000/s: 0.80×
        ];

        string md = PeerReport.Markdown(results, "benchmarks/peers/run.sh", "test machine", new DateTimeOffset(2026, 11, 25, 12, 0, 0, TimeSpan.Zero));

        Assert.Contains("Command: `benchmarks/peers/run.sh`", md);
        Assert.Matches(@"\| PG insert +\| +20,000 \| +50× \|", md);
        Assert.Matches(@"\| PG copy +\| +50,000 \| +20× \|", md);
        Assert.Matches(@"\| ClickHouse +\| +1,250,000 \| +0\.80× \|", md);
        // CPU per million: AlphaMesh 1 s, PG copy 10 s: 0.10×; memory 400 against 800 MiB: 0.50×.
        Assert.Matches(@"\| PG copy .*\| +10\.00 \| +0\.10× \|", md);
        Assert.Matches(@"\| ClickHouse .*\| +800 \| +0\.50× \|", md);
        Assert.Contains("fastest variant (PG copy): AlphaMesh 20× end to end; target at least 20×: **met**", md);
        Assert.Contains("fastest variant (Redis event): AlphaMesh 4.0× end to end; target at least 5×: **not met**", md);
        Assert.Contains("fastest variant (ClickHouse): AlphaMesh 0.80× end to end; target ahead: **not met**", md);
    }

    [Fact]
    public void Markdown_WithoutAlphaMesh_NoRatiosNoTargets()
    {
        string md = PeerReport.Markdown([Result("redis-event", "Redis event", 8, 4, 200, true)], "", "test machine", DateTimeOffset.UnixEpoch);

        Assert.Matches(@"\| Redis event +\| +250,000 \| +n/a \|", md);
        Assert.DoesNotContain("Against the issue's targets", md);
    }

    private static RunResult Result(string system, string name, double seconds, double cpu, int peakMiB, bool exact) => new()
    {
        System = system,
        Name = name,
        Events = 2_000_000,
        Distinct = 1_980_000,
        Duplicates = 20_000,
        Customers = 10_000,
        IngestSeconds = seconds * 0.75,
        UsageSeconds = seconds * 0.25,
        ServerCpuSeconds = cpu,
        ClientCpuSeconds = cpu / 2,
        ServerPeakBytes = peakMiB * 1048576L,
        ServerProcesses = 1,
        Exact = exact,
        ExactDetail = exact ? "yes" : "no",
    };
}
