namespace AlphaMesh.LoadTests.Tests;

public sealed class ScenarioTests
{
    private const double Bound = 50;

    [Fact]
    public void Evaluate_WithinBoundAndAllAccepted_Sustained()
    {
        var (sustained, reason) = RampDecision.Evaluate(Step(offered: 500_000, accepted: 499_000, p99: 49.9), Bound);

        Assert.True(sustained, reason);
    }

    [Fact]
    public void Evaluate_P99OverTheBound_NotSustained()
    {
        var (sustained, reason) = RampDecision.Evaluate(Step(offered: 500_000, accepted: 500_000, p99: 50.5), Bound);

        Assert.False(sustained);
        Assert.Contains("p99 50.5 ms over the bound of 50 ms", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Evaluate_LessThan95PercentAcknowledged_NotSustained()
    {
        var (sustained, reason) = RampDecision.Evaluate(Step(offered: 1_000_000, accepted: 940_000, p99: 10), Bound);

        Assert.False(sustained);
        Assert.Contains("94.0", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Evaluate_StreamBuffersFull_NotSustained()
    {
        var (sustained, reason) = RampDecision.Evaluate(Step(offered: 1_000_000, accepted: 1_000_000, p99: 10, notOffered: 1), Bound);

        Assert.False(sustained);
        Assert.Contains("buffers full", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Evaluate_ErrorsOrNoReplies_NotSustained()
    {
        Assert.False(RampDecision.Evaluate(Step(offered: 1000, accepted: 1000, p99: 1, errors: 1), Bound).Sustained);
        Assert.False(RampDecision.Evaluate(Step(offered: 1000, accepted: 0, p99: null), Bound).Sustained);
    }

    [Fact]
    public void From_StepsUpToTheFirstFailure_HighestSustainedIsTheLastBeforeIt()
    {
        var steps = new[]
        {
            new RampStep(Step(100_000, 100_000, 5, rate: 100_000), true, "ok"),
            new RampStep(Step(200_000, 199_000, 8, rate: 200_000), true, "ok"),
            new RampStep(Step(300_000, 250_000, 90, rate: 300_000), false, "p99"),
            // Never happens in a ramp (it stops at the first failure), but a later pass must not count.
            new RampStep(Step(400_000, 400_000, 5, rate: 400_000), true, "ok"),
        };

        var outcome = RampOutcome.From(steps, "stopped");

        Assert.Equal(200_000, outcome.HighestSustainedRate);
        Assert.Equal(199_000, outcome.HighestSustainedAccepted);
    }

    [Fact]
    public void From_FirstStepNotSustained_Zero()
    {
        var outcome = RampOutcome.From([new RampStep(Step(100_000, 10, 900, rate: 100_000), false, "p99")], "stopped");

        Assert.Equal(0, outcome.HighestSustainedRate);
    }

    [Fact]
    public void PhaseStatsFrom_Ticks_SumsCountersAndTakesPercentilesOfAllReplies()
    {
        // Second 1: 99 fast replies; second 2: one slow one. The phase's p99 is fast and its max slow; an average of
        // the per-second p99s (1 ms and 500 ms) would say 250 ms.
        var start = new LoadCounters(Offered: 1000, NotOffered: 0, Acknowledged: 900, Rejected: 0, Failed: 0, BatchesSent: 9, BatchesResent: 0, Reconnects: 0);
        var first = Tick(1, start with { Offered = 2000, Acknowledged = 1900 }, Enumerable.Repeat(1_000L, 99));
        var second = Tick(2, start with { Offered = 3000, Acknowledged = 2950, NotOffered = 5, Failed = 2 }, [500_000L]);

        var stats = PhaseStats.From("phase", 1000, [first, second], start);

        Assert.Equal(2, stats.Seconds);
        Assert.Equal(2000, stats.Offered);
        Assert.Equal(2050, stats.Accepted);
        Assert.Equal(5, stats.NotOffered);
        Assert.Equal(2, stats.Errors);
        Assert.Equal(100, stats.Batches);
        Assert.Equal(1.0, stats.P99Ms!.Value, 2);
        Assert.Equal(500.0, stats.MaxMs!.Value, 0);
        Assert.Equal(1025, stats.AcceptedPerSecond);
    }

    [Fact]
    public void GrowthFrom_LinearSamples_SlopePerMinute()
    {
        // 2 MiB per second for a minute: 120 MiB per minute.
        var samples = Enumerable.Range(0, 61).Select(s => ((double)s, 100 + (2.0 * s))).ToList();

        var growth = Growth.From("rss", samples)!;

        Assert.Equal(100, growth.First);
        Assert.Equal(220, growth.Last);
        Assert.Equal(220, growth.Peak);
        Assert.Equal(120, growth.SlopePerMinute, 3);
    }

    [Fact]
    public void GrowthFrom_FlatWithANoisyPeak_NoSlope()
    {
        var samples = new List<(double, double)> { (0, 50), (1, 80), (2, 50), (3, 50), (4, 80), (5, 50) };

        var growth = Growth.From("rss", samples)!;

        Assert.Equal(80, growth.Peak);
        Assert.Equal(0, growth.SlopePerMinute, 3);
        Assert.Null(Growth.From("rss", []));
    }

    private static PhaseStats Step(long offered, long accepted, double? p99, long notOffered = 0, long errors = 0, double rate = 100_000)
        => new("step", rate, 1, offered, accepted, notOffered, errors, p99 is null ? 0 : 100, p99 / 2, p99, p99, p99);

    private static Tick Tick(int second, LoadCounters counters, IEnumerable<long> latenciesMicros)
    {
        var histogram = LatencyRecorder.NewHistogram();
        foreach (long micros in latenciesMicros)
            histogram.RecordValue(micros);
        var point = new TimelinePoint(second, true, 1000, 1000, 1000, 0, 0, histogram.TotalCount, 0, null, null, null, null, null, null);
        return new Tick(point, histogram, counters, null, 0, 0);
    }
}
