using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using AlphaMesh.Client;
using HdrHistogram;

namespace AlphaMesh.LoadTests;

/// <summary>Counters of the whole load (all streams) at one moment.</summary>
/// <param name="Offered">Events the schedule asked for (open model) or the producers handed over (closed model).</param>
/// <param name="NotOffered">Open model: events the schedule asked for while the stream's buffer was full.</param>
/// <param name="Acknowledged">Events the server acknowledged as durable (the SDK's count).</param>
/// <param name="Rejected">Events the server refused one by one.</param>
/// <param name="Failed">Events of batches that failed without retry.</param>
/// <param name="BatchesSent">Batches written for the first time.</param>
/// <param name="BatchesResent">Batches written again on a new stream (after a reconnect).</param>
/// <param name="Reconnects">Streams opened after a failed one.</param>
internal readonly record struct LoadCounters(long Offered, long NotOffered, long Acknowledged, long Rejected, long Failed,
    long BatchesSent, long BatchesResent, long Reconnects);

/// <summary>
/// The load: one <see cref="UsageClient"/> (one gRPC stream) per stream, each bound to one tenant's key, each with a
/// producer. Every event is enqueued with a tag (<see cref="UsageClient.EnqueueTaggedAsync"/>) that names its customer
/// and data; the SDK reports, once per batch, which tags the server acknowledged as durable, which it rejected and
/// which failed with their batch (<see cref="UsageClientOptions.OnTaggedEventsFinished"/>), and the stream books each
/// acknowledged event into its <see cref="Ledger"/> there, so the ledger holds exactly the events the harness got a
/// reply for.
/// </summary>
/// <remarks>
/// Open model (rate &gt; 0): the producer hands over the events the schedule has made due since its last turn
/// (about every millisecond), never waiting for replies; an event due while the stream already holds
/// <see cref="LoadOptions.BufferPerStream"/> unsettled events is counted as not offered. Closed model (rate 0): the
/// producer hands over events whenever the stream holds fewer than that, and otherwise waits until the reports have
/// freed a tenth of it (at least a batch). Reply latency is the SDK's <see cref="UsageClientOptions.OnBatchAcknowledged"/>: from a batch's (last)
/// write to the stream to its reply.
/// </remarks>
internal sealed class LoadGenerator : IAsyncDisposable
{
    /// <summary>Tokens values: some whose sums a double gets wrong, the rest 0.001 to 99.999 (all above 0).</summary>
    public static readonly decimal[] TokenValues = MakeTokenValues();

    private readonly LoadStream[] _streams;
    private readonly ConcurrentDictionary<string, long> _errors = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private readonly bool _closedModel;
    private readonly Lock _scheduleGate = new();
    private double _rate;
    private long _rateSince;        // guarded by _scheduleGate: when the current rate took effect
    private double _scheduledBefore; // guarded by _scheduleGate: events the schedule asked for before that

    public LoadGenerator(LoadOptions options, Uri endpoint, IReadOnlyList<LoadTenant> tenants, IReadOnlyList<string> customers)
    {
        Tenants = tenants;
        Customers = customers;
        _rate = options.Rate;
        _closedModel = options.ClosedModel;
        _streams = new LoadStream[options.Streams];
        for (int s = 0; s < _streams.Length; s++)
            _streams[s] = new LoadStream(this, s, tenants[s % tenants.Count], endpoint, options);
    }

    public IReadOnlyList<LoadTenant> Tenants { get; }
    public IReadOnlyList<string> Customers { get; }

    /// <summary>Events per second offered in total (open model); 0 for the closed model. May change while running.</summary>
    public double Rate
    {
        get => Volatile.Read(ref _rate);
        set
        {
            lock (_scheduleGate)
            {
                long now = Stopwatch.GetTimestamp();
                _scheduledBefore += _rate * (now - _rateSince) / Stopwatch.Frequency;
                _rateSince = now;
                Volatile.Write(ref _rate, value);
            }
        }
    }

    /// <summary>
    /// Open model: the events the schedule has asked for since <see cref="Start"/> (the integral of the rate), which
    /// the producers should have handed over by now; null for the closed model. When the machine's CPU is short the
    /// producers run late and hand the due events over in bursts: the difference to <see cref="LoadCounters.Offered"/>
    /// shows how far behind the harness itself is.
    /// </summary>
    public double? ScheduledEvents()
    {
        if (_closedModel)
            return null;
        lock (_scheduleGate)
            return _scheduledBefore + (_rate * (Stopwatch.GetTimestamp() - _rateSince) / Stopwatch.Frequency);
    }

    /// <summary>Events not acknowledged by reason: <c>rejected:&lt;code&gt;</c>, <c>failed:&lt;gRPC status&gt;</c>.</summary>
    public IReadOnlyDictionary<string, long> Errors => _errors;

    public void Start()
    {
        lock (_scheduleGate)
        {
            _rateSince = Stopwatch.GetTimestamp();
            _scheduledBefore = 0;
        }
        foreach (var stream in _streams)
            stream.Start(_stop.Token);
    }

    public LoadCounters Snapshot()
    {
        long offered = 0, notOffered = 0, acknowledged = 0, rejected = 0, failed = 0, sent = 0, resent = 0, reconnects = 0;
        foreach (var stream in _streams)
        {
            var c = stream.Client.Counters;
            offered += stream.Offered;
            notOffered += stream.NotOffered;
            acknowledged += c.EventsAcknowledged;
            rejected += c.EventsRejected;
            failed += c.EventsFailed;
            sent += c.BatchesSent;
            resent += c.BatchesResent;
            reconnects += c.Reconnects;
        }
        return new LoadCounters(offered, notOffered, acknowledged, rejected, failed, sent, resent, reconnects);
    }

    /// <summary>Moves the reply latencies recorded since the last call into <paramref name="into"/>.</summary>
    public void DrainLatencies(HistogramBase into)
    {
        foreach (var stream in _streams)
            stream.Latencies.DrainInto(into);
    }

    /// <summary>
    /// Stops producing, waits up to <paramref name="flushTimeout"/> until every event handed over is acknowledged
    /// or failed, and closes the clients (every batch is then reported to the ledgers). Returns false if the flush
    /// timed out (the events still outstanding then fail as the clients close).
    /// </summary>
    public async Task<bool> StopAsync(TimeSpan flushTimeout)
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(_streams.Select(s => s.Producing)).ConfigureAwait(false);
        bool flushed = true;
        try
        {
            await Task.WhenAll(_streams.Select(s => s.Client.FlushAsync())).WaitAsync(flushTimeout).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            flushed = false;
        }
        foreach (var stream in _streams)
            await stream.Client.DisposeAsync().ConfigureAwait(false);
        return flushed;
    }

    /// <summary>The series the server should report for the ledgers (call after <see cref="StopAsync"/>).</summary>
    public Dictionary<SeriesKey, decimal> ExpectedSeries()
    {
        var expected = new Dictionary<SeriesKey, decimal>();
        foreach (var tenant in Tenants)
        {
            var merged = new Ledger(Customers.Count, LoadMeters.Models.Length);
            foreach (var stream in _streams.Where(s => s.Tenant == tenant))
                merged.Merge(stream.Ledger);
            merged.AddExpectedSeries(tenant.Id, Customers, LoadMeters.Models, expected);
        }
        return expected;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stop.IsCancellationRequested)
            await StopAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        _stop.Dispose();
    }

    private void CountErrors(string code, int events) => _errors.AddOrUpdate(code, events, (_, n) => n + events);

    private static decimal[] MakeTokenValues()
    {
        decimal[] tricky = [0.1m, 0.2m, 0.3m, 0.25m, 1.5m, 2m, 0.001m, 10.125m];
        var values = new decimal[997];
        for (int i = 0; i < values.Length; i++)
            values[i] = i < tricky.Length ? tricky[i] : ((i * 7919L % 99_999) + 1) / 1000m;
        return values;
    }

    /// <summary>One stream: its client, producer, ledger and latencies.</summary>
    private sealed class LoadStream
    {
        /// <summary>An event's tag: its customer in the high 32 bits, its index into <see cref="s_data"/> in the low.</summary>
        private const int CustomerShift = 32;

        /// <summary>Every (tokens, model) combination, as the SDK takes data: index = value * models + model.</summary>
        private static readonly KeyValuePair<string, string>[][] s_data = MakeData();

        /// <summary>What the ledger books for each entry of <see cref="s_data"/>.</summary>
        private static readonly (int Model, decimal Tokens)[] s_booking =
            [.. Enumerable.Range(0, s_data.Length).Select(i => (i % LoadMeters.Models.Length, TokenValues[i / LoadMeters.Models.Length]))];

        private readonly LoadGenerator _owner;
        private readonly string[] _customers;
        private readonly int _streamCount;
        private readonly bool _closedModel;
        private readonly long _budget;
        private readonly long _wakeAt;
        private ulong _random;
        private long _offered;
        private long _notOffered;
        private long _sent;     // written by the producer only: events handed to the SDK
        private long _settled;  // written by Book only (the SDK never runs it twice at once): events reported
        private TaskCompletionSource? _room; // closed model: set while the producer waits for a report

        public LoadStream(LoadGenerator owner, int index, LoadTenant tenant, Uri endpoint, LoadOptions options)
        {
            _owner = owner;
            _customers = [.. owner.Customers];
            _streamCount = options.Streams;
            _closedModel = options.ClosedModel;
            _budget = options.BufferPerStream;
            // A waiting producer is woken once a tenth of the budget (at least a batch) is free, not after every batch.
            _wakeAt = _budget - Math.Max(options.Batch, _budget / 10);
            _random = (ulong)(index + 1) * 0x9E3779B97F4A7C15UL;
            Tenant = tenant;
            Ledger = new Ledger(owner.Customers.Count, LoadMeters.Models.Length);
            Client = new UsageClient(new UsageClientOptions
            {
                Endpoint = endpoint,
                ApiKey = tenant.Key,
                MaxBatchEvents = options.Batch,
                MaxBatchesInFlight = options.InFlight,
                // The SDK never has to refuse or hold back an event: it frees a batch's room before reporting it, so
                // it never holds more than the events sent and not yet reported here.
                MaxBufferedEvents = options.BufferPerStream,
                // Reconnect within a second of a restarted server being back (the default back-off grows to 10 s).
                RetryMaxBackoff = TimeSpan.FromSeconds(1),
                DisposeTimeout = TimeSpan.FromSeconds(10),
                OnBatchAcknowledged = Latencies.Record,
                OnTaggedEventsFinished = Book,
            });
        }

        public LoadTenant Tenant { get; }
        public UsageClient Client { get; }
        public Ledger Ledger { get; }
        public LatencyRecorder Latencies { get; } = new();
        public Task Producing { get; private set; } = Task.CompletedTask;
        public long Offered => Volatile.Read(ref _offered);
        public long NotOffered => Volatile.Read(ref _notOffered);

        /// <summary>Events handed to the SDK and not yet reported.</summary>
        private long Outstanding => Volatile.Read(ref _sent) - Volatile.Read(ref _settled);

        public void Start(CancellationToken stop)
            => Producing = Task.Run(() => _closedModel ? ProduceClosedAsync(stop) : ProduceOpenAsync(stop), CancellationToken.None);

        private async Task ProduceOpenAsync(CancellationToken stop)
        {
            long last = Stopwatch.GetTimestamp();
            double due = 0;
            long offered = 0;
            while (!stop.IsCancellationRequested)
            {
                long now = Stopwatch.GetTimestamp();
                // The schedule integrates the (possibly changing) rate: events due = ∫ rate dt.
                due += _owner.Rate / _streamCount * (now - last) / Stopwatch.Frequency;
                last = now;
                for (; offered < (long)due; offered++)
                {
                    if (Outstanding >= _budget)
                    {
                        Interlocked.Increment(ref _notOffered);
                        continue;
                    }
                    var sending = Send();
                    if (!sending.IsCompletedSuccessfully)
                        await sending.ConfigureAwait(false);
                }
                Volatile.Write(ref _offered, offered);
                try
                {
                    await Task.Delay(1, stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        }

        private async Task ProduceClosedAsync(CancellationToken stop)
        {
            long offered = 0;
            while (!stop.IsCancellationRequested)
            {
                if (Outstanding >= _budget)
                {
                    // Wait for the reports to free room rather than poll: announce the wait, then look again (a report
                    // made in between has already freed room and would not see the announcement).
                    var room = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    Interlocked.Exchange(ref _room, room);
                    if (Outstanding <= _wakeAt)
                        continue;
                    try
                    {
                        await room.Task.WaitAsync(stop).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        break;
                    }
                    continue;
                }
                for (int n = 0; n < 256 && Outstanding < _budget; n++, offered++)
                {
                    var sending = Send();
                    if (!sending.IsCompletedSuccessfully)
                        await sending.ConfigureAwait(false);
                }
                Volatile.Write(ref _offered, offered);
            }
        }

        /// <summary>Hands one event of a random customer, tokens value and model to the SDK, tagged with both.</summary>
        private ValueTask Send()
        {
            int customer = NextBelow(_customers.Length);
            int data = NextBelow(s_data.Length);
            var enqueued = Client.EnqueueTaggedAsync(((long)customer << CustomerShift) | (uint)data,
                LoadMeters.EventType, _customers[customer], s_data[data]);
            Volatile.Write(ref _sent, _sent + 1); // after the call: what the SDK holds never exceeds Outstanding
            return enqueued;
        }

        /// <summary>The SDK's report of one batch: books every acknowledged event into the ledger and counts the
        /// rejected and failed ones; then wakes the producer if it waits for room.</summary>
        private void Book(UsageTaggedEvents outcome)
        {
            var tags = outcome.Tags;
            if (outcome.Failure is { } failure)
            {
                _owner.CountErrors("failed:" + failure.StatusCode, tags.Length);
            }
            else
            {
                var rejections = outcome.Rejections;
                int next = 0;
                for (int i = 0; i < tags.Length; i++)
                {
                    if (next < rejections.Length && rejections[next].Position == i)
                    {
                        _owner.CountErrors("rejected:" + rejections[next].Code, 1);
                        next++;
                        continue;
                    }
                    var (model, tokens) = s_booking[(int)tags[i]];
                    Ledger.Add((int)(tags[i] >> CustomerShift), model, tokens);
                }
            }
            Volatile.Write(ref _settled, _settled + tags.Length);
            if (Outstanding <= _wakeAt)
                Interlocked.Exchange(ref _room, null)?.TrySetResult();
        }

        /// <summary>A random number in [0, <paramref name="bound"/>): the high 32 random bits scaled by a multiply
        /// (Lemire's reduction) rather than a division.</summary>
        private int NextBelow(int bound) => (int)(((Next() >> 32) * (ulong)bound) >> 32);

        private ulong Next()
        {
            // xorshift64*: cheap, and the stream's sequence is the same in every run.
            _random ^= _random >> 12;
            _random ^= _random << 25;
            _random ^= _random >> 27;
            return _random * 0x2545F4914F6CDD1DUL;
        }

        private static KeyValuePair<string, string>[][] MakeData()
        {
            int models = LoadMeters.Models.Length;
            string[] tokens = [.. TokenValues.Select(t => t.ToString(CultureInfo.InvariantCulture))]; // one string per value: fewer cache lines per event
            var data = new KeyValuePair<string, string>[TokenValues.Length * models][];
            for (int i = 0; i < data.Length; i++)
            {
                data[i] =
                [
                    new("tokens", tokens[i / models]),
                    new(LoadMeters.ModelProperty, LoadMeters.Models[i % models]),
                ];
            }
            return data;
        }
    }
}

/// <summary>One stream's reply latencies, in microseconds, since the last drain. The SDK calls <see cref="Record"/>
/// from the stream's reading loop; the lock is contended only once a second.</summary>
internal sealed class LatencyRecorder
{
    /// <summary>Highest latency recorded (a minute); longer ones are recorded as a minute.</summary>
    public const long MaxMicros = 60_000_000;

    private readonly Lock _gate = new();
    private readonly LongHistogram _interval = NewHistogram();

    public static LongHistogram NewHistogram() => new(MaxMicros, 3);

    public void Record(int eventCount, TimeSpan latency)
    {
        long micros = Math.Clamp(latency.Ticks / (TimeSpan.TicksPerMillisecond / 1000), 1, MaxMicros);
        lock (_gate)
            _interval.RecordValue(micros);
    }

    public void DrainInto(HistogramBase into)
    {
        lock (_gate)
        {
            into.Add(_interval);
            _interval.Reset();
        }
    }
}
