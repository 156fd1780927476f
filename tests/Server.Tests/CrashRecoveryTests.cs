using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using AlphaMesh.Client;
using AlphaMesh.Server.Tests.Support;
using Xunit.Abstractions;

namespace AlphaMesh.Server.Tests;

/// <summary>The crash test runs alone: it is timing-sensitive only in how much load it puts on the machine, and
/// it should not share two cores with the rest of the suite.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class CrashCollection
{
    public const string Name = "crash";
}

/// <summary>
/// Exactly once across crashes: a child server under continuous load from the real SDK is killed with SIGKILL at
/// random moments (during appends, group commits and aggregator checkpoints) and restarted on the same data
/// directory; the SDK resends what was not acknowledged. At the end the usage of every meter, customer, group and
/// window equals an oracle computed from the events handed to the SDK: nothing lost, nothing counted twice.
/// Set <c>ALPHAMESH_CRASH_SEED</c> to repeat the kill delays and the events of a printed run (the timing around them still varies).
/// </summary>
[Collection(CrashCollection.Name)]
public sealed class CrashRecoveryTests(ITestOutputHelper output) : IDisposable
{
    private const int Sigkill = 9;
    private const int Sigterm = 15;
    private const int Trials = 20;
    private const int EventsPerSecond = 6_000;
    private const string EventType = "api_call";

    private static readonly string[] Customers = ["cust-a", "cust-b", "cust-c", "cust-d", "cust-e", "cust-f"];
    private static readonly string[] Regions = ["eu", "us", "ap"];

    /// <summary>Fractional values whose sums a double would get wrong; plus random ones with up to three decimals.</summary>
    private static readonly string[] FixedTokens = ["0.1", "0.2", "0.3", "0.25", "1.5", "2", "0.001", "10.125"];

    private static readonly Meter[] Meters =
    [
        new("calls", "COUNT", null, [], "HOUR"),
        new("tokens", "SUM", "tokens", [], "HOUR"),
        new("tokens_by_region", "SUM", "tokens", ["region"], "MINUTE"),
        new("max_tokens", "MAX", "tokens", [], "DAY"),
        new("users", "UNIQUE_COUNT", "user", ["region"], "HOUR"),
    ];

    private readonly TempDirectory _data = new();
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(60) };

    public void Dispose()
    {
        _http.Dispose();
        _data.Dispose();
    }

    [Fact]
    public async Task Usage_ServerSigkilledTwentyTimesUnderLoad_EqualsOracleExactly()
    {
        int seed = Environment.GetEnvironmentVariable("ALPHAMESH_CRASH_SEED") is { Length: > 0 } s
            ? int.Parse(s, CultureInfo.InvariantCulture)
            : Random.Shared.Next();
        output.WriteLine($"seed: {seed} (ALPHAMESH_CRASH_SEED={seed} repeats the kill delays and the events)");
        var total = Stopwatch.StartNew();

        var settings = new ServerSettings(_data.Path);
        // Short enough that checkpoints (FASTER fold-over of both stores, state file, manifest, log truncation)
        // happen between kills, so that kills land before, during and after them.
        settings.Extra["AlphaMesh:Aggregator:CheckpointInterval"] = "00:00:00.250";
        settings.Extra["AlphaMesh:EventLog:Partitions"] = "2";
        // Small stores, so that they spill to disk (and the dedupe index overflows its buckets) during the run, and
        // a checkpoint, which writes the whole index, stays small at this interval.
        settings.Extra["AlphaMesh:Aggregator:AggregatesIndexBytes"] = (1 << 20).ToString(CultureInfo.InvariantCulture);
        settings.Extra["AlphaMesh:Aggregator:DedupeIndexBytes"] = (2 << 20).ToString(CultureInfo.InvariantCulture);
        settings.Extra["AlphaMesh:Aggregator:AggregatesMemoryBytes"] = (8 << 20).ToString(CultureInfo.InvariantCulture);
        settings.Extra["AlphaMesh:Aggregator:DedupeMemoryBytes"] = (8 << 20).ToString(CultureInfo.InvariantCulture);

        // Debug: ingest logs refused requests and ended streams; shown only when the test fails.
        settings.Extra["Logging:LogLevel:AlphaMesh"] = "Debug";
        ServerProcess? server = null;
        UsageClient? client = null;
        var serverOutput = new StringBuilder();
        var sdkLog = new ListLogger();
        var producer = new Producer(new Random(seed ^ 0x5EED));
        using var stopProducing = new CancellationTokenSource();
        Task producing = Task.CompletedTask;
        try
        {
            server = await ServerProcess.StartAsync(settings);
            foreach (var meter in Meters)
                await CreateMeterAsync(settings, meter);
            var testStart = DateTimeOffset.UtcNow;

            var failures = new List<string>();
            client = new UsageClient(new UsageClientOptions
            {
                Endpoint = settings.GrpcAddress,
                ApiKey = ServerSettings.IngestKey,
                MaxBatchEvents = 500,
                MaxBatchDelay = TimeSpan.FromMilliseconds(10),
                MaxBufferedEvents = 50_000,
                // Keep trying through every restart (a few seconds each), without backing off past the restart.
                RetryMinBackoff = TimeSpan.FromMilliseconds(20),
                RetryMaxBackoff = TimeSpan.FromMilliseconds(250),
                DisposeTimeout = TimeSpan.FromSeconds(10),
                Logger = sdkLog,
                OnBatchFailed = e => { lock (failures) failures.Add($"{e.BatchId}: {e.StatusCode} {e.Message}"); },
            });
            producing = Task.Run(() => producer.RunAsync(client, testStart, stopProducing.Token));

            var killer = new Random(seed);
            for (int trial = 1; trial <= Trials; trial++)
            {
                int delay = killer.Next(200, 2_000);
                await Task.Delay(delay);
                Assert.False(producing.IsCompleted, $"the producer stopped: {producing.Exception}");
                long handed = producer.Handed, acknowledged = client.Counters.EventsAcknowledged;
                server.Signal(Sigkill);
                Assert.NotNull(await server.WaitForExitAsync(TimeSpan.FromSeconds(10)));
                serverOutput.Append(server.Output);
                server.Dispose();
                server = null;

                var restart = Stopwatch.StartNew();
                server = await ServerProcess.StartAsync(settings);
                output.WriteLine($"trial {trial,2}: SIGKILL {delay,4} ms after ready; handed {handed,7}, acknowledged {acknowledged,7}; " +
                    $"checkpoints {CheckpointSequences()}; restarted in {restart.ElapsedMilliseconds} ms");
            }

            // Some load on the last server too, then everything handed to the SDK must be acknowledged.
            await Task.Delay(500);
            await stopProducing.CancelAsync();
            await producing;
            await client.FlushAsync().WaitAsync(TimeSpan.FromSeconds(60));
            var counters = client.Counters;
            output.WriteLine($"SDK: enqueued {counters.EventsEnqueued}, acknowledged {counters.EventsAcknowledged}, rejected {counters.EventsRejected}, " +
                $"failed {counters.EventsFailed}, batches sent {counters.BatchesSent}, resent {counters.BatchesResent}, reconnects {counters.Reconnects}");
            lock (failures)
                Assert.True(failures.Count == 0, $"{failures.Count} batches failed without retry: {string.Join("; ", failures.Take(3))}");
            Assert.Equal(producer.Handed, counters.EventsEnqueued);
            Assert.Equal(counters.EventsEnqueued, counters.EventsAcknowledged);
            Assert.Equal(0, counters.EventsRejected);
            Assert.True(counters.BatchesResent > 0, "no batch was ever resent: the kills did not land under load");

            var expected = Oracle(producer.Distinct, DateTimeOffset.UtcNow);
            var compared = await CompareAsync(settings, expected, testStart, "after the last SIGKILL");
            output.WriteLine($"crash trials: {Trials}, events sent: {producer.Handed}, distinct: {producer.Distinct.Count}, " +
                $"duplicates sent: {producer.Handed - producer.Distinct.Count}, compared series: {compared}, mismatches: 0");

            // A clean stop (final checkpoint) and start on the state the crashes left gives the same answer.
            server.Signal(Sigterm);
            Assert.Equal(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(20)));
            server.Dispose();
            server = null;
            server = await ServerProcess.StartAsync(settings);
            compared = await CompareAsync(settings, Oracle(producer.Distinct, DateTimeOffset.UtcNow), testStart, "after SIGTERM and restart");
            output.WriteLine($"after SIGTERM and restart: compared series: {compared}, mismatches: 0; checkpoints {CheckpointSequences()}; " +
                $"total {total.Elapsed.TotalSeconds:F1} s");
        }
        catch (Exception)
        {
            if (server is not null)
                serverOutput.Append(server.Output);
            output.WriteLine("SDK log (last lines):");
            output.WriteLine(Tail(sdkLog.Text, 3_000));
            output.WriteLine("server output, every run (last lines):");
            output.WriteLine(Tail(serverOutput.ToString(), 8_000));
            throw;
        }
        finally
        {
            await stopProducing.CancelAsync();
            try
            {
                await producing;
            }
            catch (Exception e)
            {
                output.WriteLine($"producer: {e.GetType().Name}: {e.Message}");
            }
            server?.Dispose(); // kills the child if it still runs
            server = null;
            if (client is not null)
                await client.DisposeAsync();
        }
    }

    // ---------------------------------------------------------------- the events

    private sealed record Meter(string Key, string Aggregation, string? ValueProperty, string[] GroupBy, string WindowSize);

    private sealed record SentEvent(string Id, string Customer, DateTimeOffset Time, string Tokens, string Region, string User)
    {
        public KeyValuePair<string, string>[] Data { get; } = [new("tokens", Tokens), new("region", Region), new("user", User)];
    }

    /// <summary>Hands events to the SDK at a steady rate: new unique ids, and about 3 % resends of an earlier event
    /// (same id, same content) from anywhere in the run, so that duplicates meet the dedupe state before and after
    /// crashes. Only the producer's thread touches its lists until it has stopped.</summary>
    private sealed class Producer(Random random)
    {
        private readonly List<SentEvent> _distinct = [];
        private long _handed;

        public long Handed => Interlocked.Read(ref _handed);

        /// <summary>Every distinct event handed over (read it only after <see cref="RunAsync"/> completed).</summary>
        public IReadOnlyList<SentEvent> Distinct => _distinct;

        public async Task RunAsync(UsageClient client, DateTimeOffset now, CancellationToken stop)
        {
            var clock = Stopwatch.StartNew();
            long next = 0;
            while (!stop.IsCancellationRequested)
            {
                bool resend = _distinct.Count > 100 && random.Next(100) < 3;
                var e = resend ? _distinct[random.Next(_distinct.Count)] : NewEvent(next, now);
                try
                {
                    await client.EnqueueAsync(EventType, e.Customer, e.Data, e.Time, e.Id, stop);
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    break; // not handed over
                }
                if (!resend)
                {
                    _distinct.Add(e);
                    next++;
                }
                long handed = Interlocked.Increment(ref _handed);
                if (handed % 100 == 0)
                {
                    var ahead = TimeSpan.FromSeconds((double)handed / EventsPerSecond) - clock.Elapsed;
                    if (ahead > TimeSpan.Zero)
                    {
                        try
                        {
                            await Task.Delay(ahead, stop);
                        }
                        catch (OperationCanceledException)
                        {
                            break;
                        }
                    }
                }
            }
        }

        /// <summary>An event of the last three hours (several HOUR and many MINUTE windows).</summary>
        private SentEvent NewEvent(long sequence, DateTimeOffset now)
        {
            string tokens = random.Next(4) == 0
                ? FixedTokens[random.Next(FixedTokens.Length)]
                : (random.Next(1, 100_000) / 1000m).ToString(CultureInfo.InvariantCulture);
            return new SentEvent(
                Id: "ev-" + sequence.ToString(CultureInfo.InvariantCulture),
                Customer: Customers[random.Next(Customers.Length)],
                Time: now.AddMilliseconds(-random.Next(0, 3 * 3600 * 1000)),
                Tokens: tokens,
                Region: Regions[random.Next(Regions.Length)],
                User: "user-" + random.Next(60).ToString(CultureInfo.InvariantCulture));
        }
    }

    // ---------------------------------------------------------------- the oracle

    /// <summary>What one usage query returns: rows by "customer|groups|windowStart", values as exact decimal text.</summary>
    private sealed record Expected(string Meter, string Customer, string Query, SortedDictionary<string, string> Rows);

    /// <summary>Straightforward recomputation, per meter and customer: the meter's base windows (with its group-by);
    /// the calendar month (no grouping); and the current-month entitlement usage.</summary>
    private static List<Expected> Oracle(IReadOnlyList<SentEvent> events, DateTimeOffset now)
    {
        var result = new List<Expected>();
        foreach (var meter in Meters)
        {
            foreach (string customer in Customers)
            {
                var mine = events.Where(e => e.Customer == customer).ToList();
                var byWindow = new SortedDictionary<string, string>(StringComparer.Ordinal);
                foreach (var group in mine.GroupBy(e => RowKey(customer, Groups(meter, e), WindowStart(meter.WindowSize, e.Time))))
                    byWindow[group.Key] = Aggregate(meter, group);
                result.Add(new Expected(meter.Key, customer, $"windowSize={meter.WindowSize}{GroupByParameter(meter)}", byWindow));

                var byMonth = new SortedDictionary<string, string>(StringComparer.Ordinal);
                foreach (var group in mine.GroupBy(e => RowKey(customer, "", WindowStart("MONTH", e.Time))))
                    byMonth[group.Key] = Aggregate(meter, group);
                result.Add(new Expected(meter.Key, customer, "windowSize=MONTH", byMonth));

                if (meter.Aggregation != "MAX")
                {
                    var month = WindowStart("MONTH", now);
                    var thisMonth = mine.Where(e => WindowStart("MONTH", e.Time) == month).ToList();
                    var entitlement = new SortedDictionary<string, string>(StringComparer.Ordinal)
                    {
                        ["usage"] = thisMonth.Count == 0 ? "0" : Aggregate(meter, thisMonth),
                    };
                    result.Add(new Expected(meter.Key, customer, "entitlement", entitlement));
                }
            }
        }
        return result;
    }

    private static string Aggregate(Meter meter, IEnumerable<SentEvent> events) => meter.Aggregation switch
    {
        "COUNT" => events.Count().ToString(CultureInfo.InvariantCulture),
        "SUM" => events.Aggregate(0m, (sum, e) => sum + Decimal(e.Tokens)).ToString(CultureInfo.InvariantCulture),
        "MAX" => events.Select(e => e.Tokens).MaxBy(Decimal)!,
        "UNIQUE_COUNT" => events.Select(e => e.User).Distinct(StringComparer.Ordinal).Count().ToString(CultureInfo.InvariantCulture),
        _ => throw new ArgumentOutOfRangeException(nameof(meter), meter.Aggregation, "no oracle for this aggregation"),
    };

    private static string Groups(Meter meter, SentEvent e) => meter.GroupBy.Length == 0 ? "" : "region=" + e.Region;

    private static string GroupByParameter(Meter meter) => meter.GroupBy.Length == 0 ? "" : "&groupBy=" + string.Join(',', meter.GroupBy);

    private static string RowKey(string customer, string groups, DateTimeOffset windowStart)
        => $"{customer}|{groups}|{windowStart.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture)}";

    private static DateTimeOffset WindowStart(string size, DateTimeOffset time)
    {
        var t = time.UtcDateTime;
        return size switch
        {
            "MINUTE" => new DateTimeOffset(t.Year, t.Month, t.Day, t.Hour, t.Minute, 0, TimeSpan.Zero),
            "HOUR" => new DateTimeOffset(t.Year, t.Month, t.Day, t.Hour, 0, 0, TimeSpan.Zero),
            "DAY" => new DateTimeOffset(t.Year, t.Month, t.Day, 0, 0, 0, TimeSpan.Zero),
            "MONTH" => new DateTimeOffset(t.Year, t.Month, 1, 0, 0, 0, TimeSpan.Zero),
            _ => throw new ArgumentOutOfRangeException(nameof(size), size, null),
        };
    }

    private static decimal Decimal(string text) => decimal.Parse(text, NumberStyles.Number, CultureInfo.InvariantCulture);

    // ---------------------------------------------------------------- the comparison

    /// <summary>Asks the server every question of the oracle and compares the answers exactly (decimal text); fails
    /// naming the first mismatches. Returns the number of rows (series windows) compared.</summary>
    private async Task<int> CompareAsync(ServerSettings settings, List<Expected> expected, DateTimeOffset testStart, string when)
    {
        // The producer's events are at most three hours old; a MONTH query widens the range to whole months.
        string range = $"from={Rfc3339(testStart.AddHours(-4))}&to={Rfc3339(DateTimeOffset.UtcNow.AddHours(1))}";
        var mismatches = new List<string>();
        int compared = 0;
        foreach (var question in expected)
        {
            SortedDictionary<string, string> actual;
            if (question.Query == "entitlement")
            {
                var body = await GetJsonAsync(settings, $"/v1/customers/{question.Customer}/entitlements/{question.Meter}");
                actual = new(StringComparer.Ordinal) { ["usage"] = body.GetProperty("usage").GetString()! };
            }
            else
            {
                var body = await GetJsonAsync(settings, $"/v1/meters/{question.Meter}/usage?customer={question.Customer}&{question.Query}&{range}");
                actual = new(StringComparer.Ordinal);
                foreach (var row in body.GetProperty("data").EnumerateArray())
                {
                    string groups = string.Join(',', row.GetProperty("groupBy").EnumerateObject().Select(p => $"{p.Name}={p.Value.GetString()}"));
                    var start = DateTimeOffset.Parse(row.GetProperty("windowStart").GetString()!, CultureInfo.InvariantCulture);
                    actual[RowKey(row.GetProperty("customer").GetString()!, groups, start)] = row.GetProperty("value").GetString()!;
                }
            }
            foreach (var (key, value) in question.Rows)
            {
                compared++;
                if (!actual.TryGetValue(key, out string? got))
                    mismatches.Add($"{question.Meter} {question.Query} {key}: expected {value}, missing");
                else if (got != value)
                    mismatches.Add($"{question.Meter} {question.Query} {key}: expected {value}, got {got}");
            }
            foreach (var (key, value) in actual)
            {
                if (!question.Rows.ContainsKey(key))
                    mismatches.Add($"{question.Meter} {question.Query} {key}: expected no row, got {value}");
            }
        }
        Assert.True(mismatches.Count == 0,
            $"{when}: {mismatches.Count} of {compared} compared values differ from the oracle; first ones:\n{string.Join("\n", mismatches.Take(10))}");
        return compared;
    }

    private async Task<JsonElement> GetJsonAsync(ServerSettings settings, string pathAndQuery)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(settings.RestAddress, pathAndQuery));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", ServerSettings.ReadOnlyKey);
        using var response = await _http.SendAsync(request);
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"GET {pathAndQuery}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private async Task CreateMeterAsync(ServerSettings settings, Meter meter)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(settings.RestAddress, "/v1/meters"))
        {
            Content = JsonContent.Create(new
            {
                key = meter.Key,
                eventType = EventType,
                aggregation = meter.Aggregation,
                valueProperty = meter.ValueProperty,
                groupBy = meter.GroupBy,
                windowSize = meter.WindowSize,
            }),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", ServerSettings.IngestKey);
        using var response = await _http.SendAsync(request);
        Assert.True(response.StatusCode == HttpStatusCode.Created, await response.Content.ReadAsStringAsync());
    }

    private static string Tail(string text, int length) => text.Length > length ? "..." + text[^length..] : text;

    private static string Rfc3339(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    /// <summary>The sequence of each partition's latest complete aggregator checkpoint (it survives restarts, so it
    /// counts the checkpoints taken so far).</summary>
    private string CheckpointSequences()
    {
        var text = new StringBuilder();
        foreach (string directory in Directory.GetDirectories(Path.Combine(_data.Path, "aggregator"), "p*").Order(StringComparer.Ordinal))
        {
            string manifest = Path.Combine(directory, "checkpoint.manifest");
            string sequence = File.Exists(manifest)
                ? File.ReadLines(manifest).FirstOrDefault(l => l.StartsWith("sequence=", StringComparison.Ordinal))?["sequence=".Length..] ?? "?"
                : "none";
            text.Append(text.Length == 0 ? "" : " ").Append(Path.GetFileName(directory)).Append('=').Append(sequence);
        }
        return text.ToString();
    }
}
