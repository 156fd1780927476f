using System.Diagnostics;
using HdrHistogram;

namespace AlphaMesh.LoadTests;

/// <summary>One second of the run, as the report and the chart show it.</summary>
/// <param name="Second">Seconds since the load started, at the end of this interval (whole ticks: 1, 2, ...).</param>
/// <param name="Measuring">False during the warm-up.</param>
/// <param name="TargetRate">The rate the schedule offered at the end of the second (0: closed model).</param>
/// <param name="OfferedPerSecond">Events offered in the second (open model: what the schedule asked for).</param>
/// <param name="AcceptedPerSecond">Events acknowledged in the second.</param>
/// <param name="NotOffered">Events refused by a full stream buffer in the second.</param>
/// <param name="Errors">Events rejected or failed in the second.</param>
/// <param name="Batches">Replies received in the second.</param>
/// <param name="Reconnects">Streams reopened in the second.</param>
/// <param name="P50Ms">Reply latency median of the second (null without replies).</param>
/// <param name="P99Ms">Reply latency 99th percentile of the second.</param>
/// <param name="MaxMs">Longest reply of the second.</param>
/// <param name="ServerCpuCores">Server CPU in the second, in cores (null when not readable).</param>
/// <param name="ServerRssMiB">Server resident memory at the end of the second.</param>
/// <param name="DataDirectoryMiB">Size of the server's data directory (sampled every --sample-seconds).</param>
/// <param name="ScheduleLag">Open model: events the schedule had made due that the producers had not yet handed over
/// at the end of the second (the harness itself running late); null for the closed model.</param>
internal sealed record TimelinePoint(int Second, bool Measuring, double TargetRate, double OfferedPerSecond, double AcceptedPerSecond,
    long NotOffered, long Errors, long Batches, long Reconnects, double? P50Ms, double? P99Ms, double? MaxMs,
    double? ServerCpuCores, double? ServerRssMiB, double? DataDirectoryMiB, long? ScheduleLag = null);

/// <summary>Something that happened at a moment of the run (a phase change, a signal, a restart), for the chart.</summary>
internal sealed record Mark(double Second, string Label);

/// <summary>What the sampler saw at the end of one second: the point, that second's latencies, the cumulative counters.</summary>
internal sealed record Tick(TimelinePoint Point, LongHistogram Latencies, LoadCounters Counters, double? ServerCpuSeconds, double ClientCpuSeconds, long Timestamp);

/// <summary>Receives each second's figures and the run's messages (a live table on a terminal, lines otherwise).</summary>
internal interface IProgressView
{
    void Show(TimelinePoint point, LoadCounters totals);

    void Say(string message);
}

/// <summary>
/// Samples the load and the server once a second: rates, reply latencies, errors, server CPU and memory, and the
/// data directory's size every <see cref="LoadOptions.SampleSeconds"/>. Scenarios step on its ticks
/// (<see cref="NextTickAsync"/>), so that a phase is a whole number of sampled seconds.
/// </summary>
internal sealed class Sampler(LoadGenerator load, ServerHost server, LoadOptions options, IProgressView view) : IAsyncDisposable
{
    private readonly List<TimelinePoint> _timeline = [];
    private readonly List<Mark> _marks = [];
    private readonly LongHistogram _measured = LatencyRecorder.NewHistogram();
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stop = new();
    private TaskCompletionSource<Tick> _next = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _loop = Task.CompletedTask;
    private long _started;
    private bool _measuring;
    private Tick? _last;

    public IReadOnlyList<TimelinePoint> Timeline
    {
        get
        {
            lock (_gate)
                return [.. _timeline];
        }
    }

    public IReadOnlyList<Mark> Marks
    {
        get
        {
            lock (_gate)
                return [.. _marks];
        }
    }

    /// <summary>The tick that began the measured window (the last warm-up tick, or the start).</summary>
    public Tick? MeasureStart { get; private set; }

    /// <summary>The last tick sampled.</summary>
    public Tick? Last
    {
        get
        {
            lock (_gate)
                return _last;
        }
    }

    /// <summary>Seconds since the load started.</summary>
    public double Elapsed => Stopwatch.GetElapsedTime(_started).TotalSeconds;

    /// <summary>Reply latencies of every measured second.</summary>
    public LongHistogram MeasuredLatencies
    {
        get
        {
            lock (_gate)
                return (LongHistogram)_measured.Copy();
        }
    }

    public void Start()
    {
        _started = Stopwatch.GetTimestamp();
        _loop = Task.Run(LoopAsync);
    }

    /// <summary>The next tick (fails if sampling failed).</summary>
    public Task<Tick> NextTickAsync()
    {
        lock (_gate)
            return _next.Task;
    }

    /// <summary>Starts the measured window at the last tick: the seconds sampled from now on are measured.</summary>
    public void BeginMeasure()
    {
        lock (_gate)
        {
            _measuring = true;
            MeasureStart = _last ?? new Tick(new TimelinePoint(0, false, load.Rate, 0, 0, 0, 0, 0, 0, null, null, null, null, null, null),
                LatencyRecorder.NewHistogram(), default, server.CpuSeconds(), Environment.CpuUsage.TotalTime.TotalSeconds, _started);
        }
    }

    public void AddMark(string label)
    {
        lock (_gate)
            _marks.Add(new Mark(Math.Round(Elapsed, 2), label));
    }

    public void Say(string message) => view.Say(message);

    /// <summary>Stops sampling (after the current tick).</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _loop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        _stop.Dispose();
    }

    private async Task LoopAsync()
    {
        var interval = LatencyRecorder.NewHistogram();
        long previousTimestamp = _started;
        var previous = load.Snapshot();
        double? previousCpu = server.CpuSeconds();
        long nextTick = _started;
        int second = 0;
        double? dataMiB = null;
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                nextTick += Stopwatch.Frequency;
                // Timers may fire a little early: wait until the clock has really passed the tick.
                long now;
                while ((now = Stopwatch.GetTimestamp()) < nextTick)
                    await Task.Delay(TimeSpan.FromTicks(Math.Max(TimeSpan.TicksPerMillisecond, (nextTick - now) * TimeSpan.TicksPerSecond / Stopwatch.Frequency)), _stop.Token).ConfigureAwait(false);
                second++;

                double? scheduled = load.ScheduledEvents();
                var counters = load.Snapshot();
                interval.Reset();
                load.DrainLatencies(interval);
                double? cpu = server.CpuSeconds();
                long? rss = server.SampleRss();
                if (server.DataDirectory is not null && (second == 1 || second % Math.Max(1, (int)Math.Round(options.SampleSeconds)) == 0))
                    dataMiB = ProcFs.DirectoryBytes(server.DataDirectory) / 1048576.0;
                double seconds = (now - previousTimestamp) / (double)Stopwatch.Frequency;
                bool any = interval.TotalCount > 0;
                var point = new TimelinePoint(
                    Second: second,
                    Measuring: _measuring,
                    TargetRate: load.Rate,
                    OfferedPerSecond: Math.Round((counters.Offered - previous.Offered) / seconds, 1),
                    AcceptedPerSecond: Math.Round((counters.Acknowledged - previous.Acknowledged) / seconds, 1),
                    NotOffered: counters.NotOffered - previous.NotOffered,
                    Errors: counters.Rejected + counters.Failed - previous.Rejected - previous.Failed,
                    Batches: interval.TotalCount,
                    Reconnects: counters.Reconnects - previous.Reconnects,
                    P50Ms: any ? Ms(interval.GetValueAtPercentile(50)) : null,
                    P99Ms: any ? Ms(interval.GetValueAtPercentile(99)) : null,
                    MaxMs: any ? Ms(interval.GetMaxValue()) : null,
                    ServerCpuCores: cpu - previousCpu is { } used ? Math.Round(used / seconds, 2) : null,
                    ServerRssMiB: rss is { } r ? Math.Round(r / 1048576.0, 1) : null,
                    DataDirectoryMiB: dataMiB is { } d ? Math.Round(d, 1) : null,
                    ScheduleLag: scheduled is { } due ? Math.Max(0, (long)due - counters.Offered) : null);
                var tick = new Tick(point, (LongHistogram)interval.Copy(), counters, cpu, Environment.CpuUsage.TotalTime.TotalSeconds, now);
                TaskCompletionSource<Tick> completed;
                lock (_gate)
                {
                    _timeline.Add(point);
                    if (_measuring)
                        _measured.Add(interval);
                    _last = tick;
                    completed = _next;
                    _next = new TaskCompletionSource<Tick>(TaskCreationOptions.RunContinuationsAsynchronously);
                }
                view.Show(point, counters);
                completed.SetResult(tick);
                previous = counters;
                previousTimestamp = now;
                previousCpu = cpu;
                // Fell behind by more than a tick (a stalled machine): start counting from now.
                if (Stopwatch.GetTimestamp() - nextTick > Stopwatch.Frequency)
                    nextTick = Stopwatch.GetTimestamp();
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            lock (_gate)
                _next.TrySetException(e);
            throw;
        }
        lock (_gate)
            _next.TrySetCanceled();
    }

    private static double Ms(long micros) => Math.Round(micros / 1000.0, 3);
}
