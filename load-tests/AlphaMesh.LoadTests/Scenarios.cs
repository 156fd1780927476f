using System.Globalization;
using HdrHistogram;

namespace AlphaMesh.LoadTests;

/// <summary>Figures of a run of consecutive seconds (a ramp step, a spike phase).</summary>
internal sealed record PhaseStats(string Name, double TargetRate, int Seconds, long Offered, long Accepted, long NotOffered, long Errors,
    long Batches, double? P50Ms, double? P99Ms, double? P999Ms, double? MaxMs)
{
    public double OfferedPerSecond => Seconds == 0 ? 0 : Offered / (double)Seconds;
    public double AcceptedPerSecond => Seconds == 0 ? 0 : Accepted / (double)Seconds;

    /// <summary>Sums the ticks' counters and merges their latency histograms (percentiles of the whole phase,
    /// not averages of per-second percentiles).</summary>
    public static PhaseStats From(string name, double targetRate, IReadOnlyList<Tick> ticks, LoadCounters before)
    {
        var histogram = LatencyRecorder.NewHistogram();
        foreach (var tick in ticks)
            histogram.Add(tick.Latencies);
        var after = ticks.Count > 0 ? ticks[^1].Counters : before;
        bool any = histogram.TotalCount > 0;
        return new PhaseStats(name, targetRate, ticks.Count, after.Offered - before.Offered, after.Acknowledged - before.Acknowledged,
            after.NotOffered - before.NotOffered, after.Rejected + after.Failed - before.Rejected - before.Failed, histogram.TotalCount,
            any ? Ms(histogram, 50) : null, any ? Ms(histogram, 99) : null, any ? Ms(histogram, 99.9) : null,
            any ? Math.Round(histogram.GetMaxValue() / 1000.0, 3) : null);
    }

    private static double Ms(HistogramBase histogram, double percentile) => Math.Round(histogram.GetValueAtPercentile(percentile) / 1000.0, 3);
}

/// <summary>The ramp's rule for one step.</summary>
internal static class RampDecision
{
    /// <summary>Share of the offered events a sustained step must see acknowledged within the step.</summary>
    public const double MinAcceptedFraction = 0.95;

    /// <summary>
    /// A step is sustained when nothing was rejected or failed, every event the schedule asked for found room in
    /// the stream buffers, at least <see cref="MinAcceptedFraction"/> of the offered events were acknowledged
    /// within the step, and the reply p99 of the step stayed within the bound.
    /// </summary>
    public static (bool Sustained, string Reason) Evaluate(PhaseStats step, double p99BoundMs)
    {
        if (step.Errors > 0)
            return (false, $"{step.Errors} events rejected or failed");
        if (step.Batches == 0 || step.P99Ms is not { } p99)
            return (false, "no reply in the step");
        if (step.NotOffered > 0)
            return (false, string.Create(CultureInfo.InvariantCulture, $"{step.NotOffered:N0} events found the stream buffers full"));
        double accepted = step.Offered == 0 ? 1 : step.Accepted / (double)step.Offered;
        if (accepted < MinAcceptedFraction)
            return (false, string.Create(CultureInfo.InvariantCulture, $"{accepted:P1} of the offered events acknowledged within the step (under {MinAcceptedFraction:P0})"));
        if (p99 > p99BoundMs)
            return (false, string.Create(CultureInfo.InvariantCulture, $"reply p99 {p99:0.0} ms over the bound of {p99BoundMs:0.#} ms"));
        return (true, string.Create(CultureInfo.InvariantCulture, $"reply p99 {p99:0.0} ms within {p99BoundMs:0.#} ms, {accepted:P1} acknowledged"));
    }
}

/// <summary>One ramp step and the rule's verdict.</summary>
internal sealed record RampStep(PhaseStats Stats, bool Sustained, string Reason);

/// <summary>The ramp's answer: the highest sustained rate (0 when not even the first step was) and why it stopped.</summary>
internal sealed record RampOutcome(double HighestSustainedRate, double HighestSustainedAccepted, string StoppedBecause, IReadOnlyList<RampStep> Steps)
{
    /// <summary>Reads the steps in order: the answer is the last step before the first one that was not sustained.</summary>
    public static RampOutcome From(IReadOnlyList<RampStep> steps, string stoppedBecause)
    {
        var sustained = steps.TakeWhile(s => s.Sustained).LastOrDefault();
        return new RampOutcome(sustained?.Stats.TargetRate ?? 0, sustained is null ? 0 : Math.Round(sustained.Stats.AcceptedPerSecond), stoppedBecause, steps);
    }
}

/// <summary>One stop and start of the server in the restart scenario.</summary>
/// <param name="Signal">SIGTERM or SIGKILL.</param>
/// <param name="SignalledAt">Seconds since the load started.</param>
/// <param name="ExitCode">The process's exit code (137 after SIGKILL).</param>
/// <param name="ExitedAfterSeconds">From the signal to the process's exit.</param>
/// <param name="ReadyAfterSeconds">From the signal until the new process answered its health check.</param>
/// <param name="Error">Why the restart failed, if it did.</param>
/// <param name="ResumedAfterSeconds">From the signal to the end of the first second with acknowledgements again (1 s resolution).</param>
/// <param name="DrainedAfterSeconds">From the signal to the end of the first second after which at most a second of the
/// rate was unacknowledged (the buffered backlog resent and answered; 1 s resolution).</param>
internal sealed record RestartRecord(string Signal, double SignalledAt, int? ExitCode, double? ExitedAfterSeconds, double? ReadyAfterSeconds, string? Error,
    double? ResumedAfterSeconds = null, double? DrainedAfterSeconds = null);

/// <summary>How a sampled figure moved over the measured window (soak).</summary>
internal sealed record Growth(string Figure, double First, double Last, double Peak, double SlopePerMinute)
{
    /// <summary>First, last and peak of the samples (seconds, value), and the least-squares slope per minute.</summary>
    public static Growth? From(string figure, IReadOnlyList<(double Second, double Value)> samples)
    {
        if (samples.Count == 0)
            return null;
        double slope = 0;
        if (samples.Count > 1)
        {
            double meanX = samples.Average(s => s.Second), meanY = samples.Average(s => s.Value);
            double sxx = samples.Sum(s => (s.Second - meanX) * (s.Second - meanX));
            double sxy = samples.Sum(s => (s.Second - meanX) * (s.Value - meanY));
            slope = sxx == 0 ? 0 : sxy / sxx * 60;
        }
        return new Growth(figure, samples[0].Value, samples[^1].Value, samples.Max(s => s.Value), Math.Round(slope, 3));
    }
}

/// <summary>What a scenario found, beyond the figures every run has.</summary>
internal sealed class ScenarioOutcome
{
    public List<PhaseStats> Phases { get; } = [];
    public RampOutcome? Ramp { get; set; }
    public List<RestartRecord> Restarts { get; } = [];
    public List<string> Failures { get; } = [];
    /// <summary>Whether stream buffers filling up is a failure (it is how the ramp finds its limit).</summary>
    public bool NotOfferedIsFailure { get; set; } = true;
}

/// <summary>
/// The scenarios. Each runs after the warm-up, steps on the sampler's ticks (so a phase is a whole number of
/// sampled seconds), sets the offered rate and, for <c>restart</c>, stops and starts the server.
/// </summary>
internal sealed class ScenarioRunner(LoadOptions options, LoadGenerator load, ServerHost server, Sampler sampler)
{
    public ScenarioOutcome Outcome { get; } = new();

    public Task RunAsync() => options.Scenario switch
    {
        Scenario.Steady or Scenario.Soak => SteadyAsync(),
        Scenario.Ramp => RampAsync(),
        Scenario.Spike => SpikeAsync(),
        Scenario.Restart => RestartAsync(),
        _ => throw new ArgumentOutOfRangeException(nameof(options), options.Scenario, null),
    };

    private LoadCounters CurrentCounters => sampler.Last?.Counters ?? default;

    private int DurationTicks => Math.Max(1, (int)Math.Ceiling(options.DurationSeconds));

    private async Task SteadyAsync() => await CollectAsync(DurationTicks).ConfigureAwait(false);

    private async Task RampAsync()
    {
        Outcome.NotOfferedIsFailure = false;
        int stepTicks = Math.Max(1, (int)Math.Ceiling(options.StepSeconds));
        var steps = new List<RampStep>();
        double rate = options.Rate;
        int used = 0;
        string stopped;
        while (true)
        {
            load.Rate = rate;
            sampler.AddMark(Rate(rate));
            var before = CurrentCounters;
            var ticks = await CollectAsync(stepTicks).ConfigureAwait(false);
            used += stepTicks;
            var stats = PhaseStats.From(Rate(rate), rate, ticks, before);
            var (sustained, reason) = RampDecision.Evaluate(stats, options.P99BoundMs);
            steps.Add(new RampStep(stats, sustained, reason));
            sampler.Say($"ramp step {Rate(rate)}: {(sustained ? "sustained" : "NOT sustained")}: {reason}");
            if (!sustained)
            {
                stopped = $"the step at {Rate(rate)} was not sustained: {reason}";
                break;
            }
            if (rate + options.StepRate > options.MaxRate)
            {
                stopped = $"the next step would pass --max-rate {options.MaxRate:N0}";
                break;
            }
            if (used + stepTicks > DurationTicks)
            {
                stopped = $"the next step would pass --duration {options.DurationSeconds:0.#} s";
                break;
            }
            rate += options.StepRate;
        }
        Outcome.Ramp = RampOutcome.From(steps, stopped);
        Outcome.Phases.AddRange(steps.Select(s => s.Stats));
    }

    private async Task SpikeAsync()
    {
        int spike = Math.Max(1, (int)Math.Round(options.SpikeSeconds));
        int before = Math.Max(1, (DurationTicks - spike) / 2);
        int after = Math.Max(1, DurationTicks - spike - before);
        double normal = options.Rate, high = options.Rate * options.SpikeFactor;
        await PhaseAsync("before the spike", normal, before).ConfigureAwait(false);
        sampler.AddMark($"spike x{options.SpikeFactor:0.#}");
        await PhaseAsync($"spike x{options.SpikeFactor:0.#}", high, spike).ConfigureAwait(false);
        sampler.AddMark("spike over");
        await PhaseAsync("after the spike", normal, after).ConfigureAwait(false);
    }

    /// <summary>
    /// SIGTERM at a third of the run, then a start on the same data; SIGKILL at two thirds, then a start again. The
    /// load goes on throughout, and the SDK buffers and resends. After each start the scenario waits until
    /// acknowledgements resume and then until the backlog has drained (at most a second of the rate unacknowledged),
    /// so that each stop meets steady load and the buffer only has to hold one outage; the SIGKILL comes 2 s after
    /// the first backlog drained at the earliest, and the run lasts at least --duration.
    /// </summary>
    private async Task RestartAsync()
    {
        int total = DurationTicks;
        int tick = 0, steadySince = 0;
        async Task<Tick> NextAsync()
        {
            var next = await sampler.NextTickAsync().ConfigureAwait(false);
            if (++tick > total + 600)
                throw new TimeoutException("the load did not recover within 10 minutes of the run's planned end");
            return next;
        }
        foreach (var (signal, name, plannedAt) in new[] { (ServerHost.Sigterm, "SIGTERM", Math.Max(1, total / 3)), (ServerHost.Sigkill, "SIGKILL", Math.Max(2, 2 * total / 3)) })
        {
            while (tick < Math.Max(plannedAt, steadySince + 2))
                await NextAsync().ConfigureAwait(false);
            var restart = StopAndStartAsync(signal, name);
            while (!restart.IsCompleted)
                await NextAsync().ConfigureAwait(false);
            await restart.ConfigureAwait(false); // throws if the server did not come back
            int index = Outcome.Restarts.Count - 1;
            var record = Outcome.Restarts[index];
            Tick sample;
            do
            {
                sample = await NextAsync().ConfigureAwait(false);
            }
            while (sample.Point.AcceptedPerSecond == 0);
            record = record with { ResumedAfterSeconds = Math.Round(sampler.Elapsed - record.SignalledAt, 1) };
            sampler.Say($"acknowledgements resumed {record.ResumedAfterSeconds:0.0} s after {name}");
            while (!Drained(sample.Counters))
                sample = await NextAsync().ConfigureAwait(false);
            steadySince = tick;
            Outcome.Restarts[index] = record with { DrainedAfterSeconds = Math.Round(sampler.Elapsed - record.SignalledAt, 1) };
            sampler.Say($"backlog drained {Outcome.Restarts[index].DrainedAfterSeconds:0.0} s after {name}");
        }
        while (tick < Math.Max(total, steadySince + 2))
            await NextAsync().ConfigureAwait(false);
    }

    /// <summary>Open model: no more than a second of the rate handed over and not yet answered. The closed model keeps
    /// its buffer full by design: drained as soon as it is answered again.</summary>
    private bool Drained(LoadCounters c)
        => options.ClosedModel || c.Offered - c.NotOffered - c.Acknowledged - c.Rejected - c.Failed <= Math.Max(load.Rate, options.Batch * options.Streams);

    private async Task StopAndStartAsync(int signal, string name)
    {
        double at = Math.Round(sampler.Elapsed, 2);
        double? exited = null, ready = null;
        int? code = null;
        try
        {
            sampler.AddMark(name);
            sampler.Say($"{name} to the server (pid {server.Pid})");
            server.Signal(signal);
            code = await server.WaitForExitAsync(TimeSpan.FromSeconds(60)).ConfigureAwait(false);
            exited = Math.Round(sampler.Elapsed - at, 2);
            if (code is null)
                throw new TimeoutException($"the server did not exit within 60 s of {name}");
            sampler.Say($"server exited with {code} after {exited:0.00} s; starting it again");
            await server.StartAsync().ConfigureAwait(false);
            ready = Math.Round(sampler.Elapsed - at, 2);
            sampler.AddMark("healthy");
            sampler.Say($"server ready again (pid {server.Pid}), {ready:0.00} s after {name}");
            if (signal == ServerHost.Sigterm && code != 0)
                Outcome.Failures.Add($"the server exited with {code} after SIGTERM (a clean stop exits 0)");
            Outcome.Restarts.Add(new RestartRecord(name, at, code, exited, ready, null));
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
            Outcome.Restarts.Add(new RestartRecord(name, at, code, exited, ready, e.Message));
            Outcome.Failures.Add($"{name} restart: {e.Message}");
            throw;
        }
    }

    private async Task PhaseAsync(string name, double rate, int ticks)
    {
        load.Rate = rate;
        var before = CurrentCounters;
        var collected = await CollectAsync(ticks).ConfigureAwait(false);
        Outcome.Phases.Add(PhaseStats.From(name, rate, collected, before));
    }

    private async Task<List<Tick>> CollectAsync(int ticks)
    {
        var collected = new List<Tick>(ticks);
        for (int i = 0; i < ticks; i++)
            collected.Add(await sampler.NextTickAsync().ConfigureAwait(false));
        return collected;
    }

    private static string Rate(double rate) => string.Create(CultureInfo.InvariantCulture, $"{rate:N0}/s");
}
