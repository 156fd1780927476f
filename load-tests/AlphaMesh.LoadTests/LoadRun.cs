using System.Diagnostics;
using System.Globalization;
using AlphaMesh.Client;
using HdrHistogram;

namespace AlphaMesh.LoadTests;

/// <summary>
/// One load run: <see cref="LoadOptions.Clients"/> SDK clients, each with its own producer, either as fast as
/// the server acknowledges (closed model: <c>EnqueueAsync</c> waits while the client's buffer is full) or on a
/// fixed schedule (open model: <c>TryEnqueue</c> at the offered rate, never waiting for replies; an event that
/// finds the buffer full is counted as not offered). Reply latency is the SDK's
/// <see cref="UsageClientOptions.OnBatchAcknowledged"/>: from a batch's write to the stream to its reply.
/// </summary>
internal static class LoadRun
{
    private const long MaxLatencyMicros = 60_000_000;
    private static readonly KeyValuePair<string, string>[][] s_data = MakeData();

    public static async Task<int> RunAsync(LoadOptions options, TextWriter output)
    {
        string model = options.Rate == 0 ? "closed model, as fast as acknowledged" : $"open model, {options.Rate:N0} events/s offered";
        output.WriteLine($"load: {options.Endpoint} | {model} | {options.Clients} client(s) | batch {options.Batch} | in flight {options.InFlight} | {options.Customers} customers | warmup {options.WarmupSeconds} s, measured {options.DurationSeconds} s");

        using var usage = new UsageCheck(options.Rest, options.Key!);
        // One fixed range for both usage reads; the server widens it to whole months, so the first read, before any
        // event of this run, is the baseline left by earlier runs against the same server.
        var usageFrom = DateTimeOffset.UtcNow.AddDays(-1);
        var usageTo = DateTimeOffset.UtcNow.AddDays(2);
        decimal baseline = 0;
        if (options.Meters > 0)
        {
            await usage.CreateMetersAsync(options.Meters, output).ConfigureAwait(false);
            baseline = (await usage.CountAllAsync(usageFrom, usageTo).ConfigureAwait(false)).Total;
        }

        var customers = new string[options.Customers];
        for (int i = 0; i < customers.Length; i++)
            customers[i] = "customer-" + i.ToString("D6", CultureInfo.InvariantCulture);

        var latencies = new LatencyRecorder[options.Clients];
        var clients = new UsageClient[options.Clients];
        for (int c = 0; c < clients.Length; c++)
        {
            var recorder = latencies[c] = new LatencyRecorder();
            clients[c] = new UsageClient(new UsageClientOptions
            {
                Endpoint = options.Endpoint,
                ApiKey = options.Key,
                MaxBatchEvents = options.Batch,
                MaxBatchesInFlight = options.InFlight,
                MaxBufferedEvents = Math.Max(100_000, options.Batch * (options.InFlight + 2)),
                OnBatchAcknowledged = recorder.Record,
            });
        }

        using var stop = new CancellationTokenSource();
        var notOffered = new long[options.Clients];
        var producers = new Task[options.Clients];
        for (int c = 0; c < clients.Length; c++)
        {
            int index = c;
            producers[c] = options.Rate == 0
                ? Task.Run(() => ProduceClosedAsync(clients[index], customers, index, stop.Token))
                : Task.Run(() => ProduceOpenAsync(clients[index], customers, index, (double)options.Rate / options.Clients, notOffered, stop.Token));
        }

        var process = Process.GetCurrentProcess();
        var started = Stopwatch.GetTimestamp();
        var warmupEnd = started + (long)(options.WarmupSeconds * Stopwatch.Frequency);
        var end = warmupEnd + (long)(options.DurationSeconds * Stopwatch.Frequency);
        bool measuring = options.WarmupSeconds == 0;
        long measureStart = started, acknowledgedAtStart = 0, batchesAtStart = 0;
        TimeSpan clientCpuAtStart = process.TotalProcessorTime;
        double? serverCpuAtStart = ServerCpuSeconds(options.ServerPid);

        long previousAcknowledged = 0;
        long previousTick = started;
        var interval = NewHistogram();
        int second = 0;
        while (true)
        {
            long nextTick = Math.Min(previousTick + Stopwatch.Frequency, measuring ? end : warmupEnd);
            // Timers may fire a little early: wait until the clock has really passed the tick.
            long now;
            while ((now = Stopwatch.GetTimestamp()) < nextTick)
                await Task.Delay(TimeSpan.FromTicks(Math.Max(TimeSpan.TicksPerMillisecond, (nextTick - now) * TimeSpan.TicksPerSecond / Stopwatch.Frequency))).ConfigureAwait(false);

            var totals = Sum(clients);
            interval.Reset();
            foreach (var recorder in latencies)
                recorder.DrainInterval(interval);
            double seconds = (now - previousTick) / (double)Stopwatch.Frequency;
            second++;
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"[{(measuring ? "measure" : "warmup ")} {second,3}] {(totals.EventsAcknowledged - previousAcknowledged) / seconds,12:N0} events/s acked | batches {interval.TotalCount,5} | reply p50 {Ms(interval, 50),7:0.00} p99 {Ms(interval, 99),7:0.00} max {MaxMs(interval),7:0.00} ms | rejected {totals.EventsRejected} failed {totals.EventsFailed} not offered {notOffered.Sum()} | reconnects {totals.Reconnects}"));
            previousAcknowledged = totals.EventsAcknowledged;
            previousTick = now;

            if (!measuring && now >= warmupEnd)
            {
                measuring = true;
                measureStart = now;
                acknowledgedAtStart = totals.EventsAcknowledged;
                batchesAtStart = totals.BatchesSent;
                clientCpuAtStart = process.TotalProcessorTime;
                serverCpuAtStart = ServerCpuSeconds(options.ServerPid);
                foreach (var recorder in latencies)
                    recorder.ResetTotal();
                Array.Clear(notOffered);
            }
            else if (now >= end)
            {
                break;
            }
        }

        // The measured window ends here; what is still buffered is flushed (and checked) but not counted.
        long measureEnd = Stopwatch.GetTimestamp();
        var final = Sum(clients);
        var clientCpu = process.TotalProcessorTime - clientCpuAtStart;
        double? serverCpu = ServerCpuSeconds(options.ServerPid) - serverCpuAtStart;
        var histogram = NewHistogram();
        foreach (var recorder in latencies)
            recorder.CopyTotalInto(histogram);
        long notOfferedTotal = notOffered.Sum();

        await stop.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(producers).ConfigureAwait(false);
        foreach (var client in clients)
            await client.FlushAsync().WaitAsync(TimeSpan.FromSeconds(60)).ConfigureAwait(false);
        var flushed = Sum(clients);
        foreach (var client in clients)
            await client.DisposeAsync().ConfigureAwait(false);

        double window = (measureEnd - measureStart) / (double)Stopwatch.Frequency;
        output.WriteLine();
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"RESULT events/s accepted: {(final.EventsAcknowledged - acknowledgedAtStart) / window:N0} over {window:0.0} s ({final.EventsAcknowledged - acknowledgedAtStart:N0} events, {final.BatchesSent - batchesAtStart:N0} batches sent)"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"RESULT reply latency (ms, {histogram.TotalCount:N0} batches): p50 {Ms(histogram, 50):0.000} p99 {Ms(histogram, 99):0.000} p99.9 {Ms(histogram, 99.9):0.000} max {MaxMs(histogram):0.000}"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"RESULT CPU over the measured window: load command {clientCpu.TotalSeconds / window:0.00} cores{(serverCpu is { } s ? $", server {s / window:0.00} cores" : "")}"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"RESULT errors: rejected {flushed.EventsRejected}, failed {flushed.EventsFailed} ({flushed.BatchesFailed} batches), not offered (client buffer full) {notOfferedTotal}"));
        output.WriteLine($"SDK counters (all clients, whole run): {flushed}");

        bool ok = flushed.EventsRejected == 0 && flushed.EventsFailed == 0 && notOfferedTotal == 0
            && flushed.EventsAcknowledged == flushed.EventsEnqueued && flushed.EventsAcknowledged > 0;
        if (options.Meters > 0)
        {
            // Every event has its own id and none is sent twice by the producers, so the COUNT meter must equal the
            // events acknowledged (the SDK resends a batch whose reply it missed; dedupe makes that count once).
            var (total, rows, took) = await usage.CountAllAsync(usageFrom, usageTo).ConfigureAwait(false);
            long counted = (long)(total - baseline);
            long lost = Math.Max(0, flushed.EventsAcknowledged - counted), doubled = Math.Max(0, counted - flushed.EventsAcknowledged);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"RESULT usage: {UsageCheck.CountMeter} counts {counted:N0} events of this run ({rows:N0} customer-month rows, {baseline:N0} from earlier runs left out) for {flushed.EventsAcknowledged:N0} acknowledged: lost {lost}, doubled {doubled}; the query (which waits for aggregation to catch up) took {took.TotalMilliseconds:N0} ms after the last reply"));
            if (lost != 0 || doubled != 0)
                output.WriteLine("FAILED: the usage the server reports differs from the events it acknowledged");
            ok &= lost == 0 && doubled == 0;
        }
        if (!ok)
            output.WriteLine("FAILED: events were rejected, failed, not offered, or left unacknowledged");
        return ok ? 0 : 1;
    }

    private static async Task ProduceClosedAsync(UsageClient client, string[] customers, int seed, CancellationToken stop)
    {
        int i = seed * 7919;
        while (!stop.IsCancellationRequested)
        {
            // 256 events between checks of the token; EnqueueAsync completes synchronously while there is room.
            for (int n = 0; n < 256; n++, i++)
                await client.EnqueueAsync("api_call", customers[(uint)i % (uint)customers.Length], s_data[(uint)i % (uint)s_data.Length]).ConfigureAwait(false);
        }
    }

    private static async Task ProduceOpenAsync(UsageClient client, string[] customers, int seed, double ratePerClient, long[] notOffered, CancellationToken stop)
    {
        int i = seed * 7919;
        long start = Stopwatch.GetTimestamp();
        long offered = 0;
        while (!stop.IsCancellationRequested)
        {
            // Catch up with the schedule, then sleep about a millisecond: events go out in 1 ms bursts.
            long due = (long)(Stopwatch.GetElapsedTime(start).TotalSeconds * ratePerClient);
            for (; offered < due; offered++, i++)
            {
                if (!client.TryEnqueue("api_call", customers[(uint)i % (uint)customers.Length], s_data[(uint)i % (uint)s_data.Length]))
                    Interlocked.Increment(ref notOffered[seed]);
            }
            try
            {
                await Task.Delay(1, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private static UsageClientCounters Sum(UsageClient[] clients)
    {
        long enqueued = 0, acknowledged = 0, rejected = 0, failed = 0, sent = 0, resent = 0, reconnects = 0, batchesFailed = 0;
        foreach (var client in clients)
        {
            var c = client.Counters;
            enqueued += c.EventsEnqueued;
            acknowledged += c.EventsAcknowledged;
            rejected += c.EventsRejected;
            failed += c.EventsFailed;
            sent += c.BatchesSent;
            resent += c.BatchesResent;
            reconnects += c.Reconnects;
            batchesFailed += c.BatchesFailed;
        }
        return new UsageClientCounters(enqueued, acknowledged, rejected, failed, sent, resent, reconnects, batchesFailed);
    }

    /// <summary>utime + stime of a process, in seconds, from /proc/PID/stat; null when unavailable.</summary>
    private static double? ServerCpuSeconds(int? pid)
    {
        if (pid is null)
            return null;
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            // Fields after the command name (which is in parentheses and may hold spaces); utime and stime are fields 14 and 15.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            const double ClockTicksPerSecond = 100; // USER_HZ on Linux
            return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / ClockTicksPerSecond;
        }
        catch (IOException)
        {
            return null;
        }
    }

    private static KeyValuePair<string, string>[][] MakeData()
    {
        string[] models = ["gpt-4o", "claude-3-5-sonnet", "llama-3.1-70b"];
        var data = new KeyValuePair<string, string>[997][];
        for (int i = 0; i < data.Length; i++)
            data[i] = [new("tokens", (i * 37 % 100_000 / 100m).ToString(CultureInfo.InvariantCulture)), new("model", models[i % models.Length])];
        return data;
    }

    private static LongHistogram NewHistogram() => new(MaxLatencyMicros, 3);

    private static double Ms(HistogramBase histogram, double percentile)
        => histogram.TotalCount == 0 ? 0 : histogram.GetValueAtPercentile(percentile) / 1000.0;

    private static double MaxMs(HistogramBase histogram) => histogram.TotalCount == 0 ? 0 : histogram.GetMaxValue() / 1000.0;

    /// <summary>One client's reply latencies, in microseconds: the whole measured window and the current second.
    /// The SDK calls <see cref="Record"/> from the client's reading loop; the lock is only contended once a second.</summary>
    private sealed class LatencyRecorder
    {
        private readonly Lock _gate = new();
        private readonly LongHistogram _total = NewHistogram();
        private readonly LongHistogram _interval = NewHistogram();

        public void Record(int eventCount, TimeSpan latency)
        {
            long micros = Math.Clamp(latency.Ticks / (TimeSpan.TicksPerMillisecond / 1000), 1, MaxLatencyMicros);
            lock (_gate)
            {
                _total.RecordValue(micros);
                _interval.RecordValue(micros);
            }
        }

        public void DrainInterval(HistogramBase into)
        {
            lock (_gate)
            {
                into.Add(_interval);
                _interval.Reset();
            }
        }

        public void ResetTotal()
        {
            lock (_gate)
                _total.Reset();
        }

        public void CopyTotalInto(HistogramBase into)
        {
            lock (_gate)
                into.Add(_total);
        }
    }
}
