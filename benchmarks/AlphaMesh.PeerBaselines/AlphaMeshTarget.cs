using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using AlphaMesh.Client;

namespace AlphaMesh.PeerBaselines;

/// <summary>
/// AlphaMesh end to end: the client SDK over gRPC streams (one <see cref="UsageClient"/> per lane, batches of
/// <c>batch</c> events, given ids and times), then the usage API over HTTP for a COUNT and a SUM meter made before.
/// The usage query waits until the aggregators applied every event committed when it arrived, so the timed part
/// ends when the usage is really there, not when ingest acknowledged.
/// </summary>
internal sealed class AlphaMeshTarget(Uri grpc, Uri rest, string key, int streams, int batch) : PeerTarget
{
    public const string EventType = "peer_call";
    private const string CountMeter = "peer_events";
    private const string SumMeter = "peer_amount";

    private readonly HttpClient _http = new(new SocketsHttpHandler())
    {
        BaseAddress = rest,
        Timeout = TimeSpan.FromMinutes(10),
        DefaultRequestHeaders = { Authorization = new AuthenticationHeaderValue("Bearer", key) },
    };

    public override string Name => "AlphaMesh (gRPC SDK, dedupe + 2 meters)";

    public override string Durability =>
        "a reply means the batch is on disk: FasterLog group commit with O_SYNC writes and fdatasync of the commit record (server defaults)";

    public override string Method =>
        $"client SDK, {streams} gRPC stream(s) (one UsageClient each), batches of {batch} events, ids and times given; server on its defaults (2 partitions, 1 ms commit interval); " +
        "meters COUNT and SUM(amount) on HOUR windows; usage over HTTP, windowSize=MONTH, every customer in one query per meter";

    public override async Task SetupAsync(EventSet events, CancellationToken cancellationToken)
    {
        await CreateMeterAsync(CountMeter, "COUNT", null, cancellationToken).ConfigureAwait(false);
        await CreateMeterAsync(SumMeter, "SUM", "amount", cancellationToken).ConfigureAwait(false);
        using var health = await _http.GetAsync("/healthz", cancellationToken).ConfigureAwait(false);
        Version = "AlphaMesh " + (Environment.GetEnvironmentVariable("ALPHAMESH_COMMIT") is { Length: > 0 } commit ? "at " + commit : "(commit unknown)") + ", Release build";
    }

    public override async Task IngestAsync(EventSet events, int[][] lanes, CancellationToken cancellationToken)
    {
        var clients = new UsageClient[lanes.Length];
        for (int l = 0; l < clients.Length; l++)
        {
            clients[l] = new UsageClient(new UsageClientOptions
            {
                Endpoint = grpc,
                ApiKey = key,
                MaxBatchEvents = batch,
                MaxBufferedEvents = Math.Max(100_000, batch * 10),
            });
        }
        try
        {
            await RunLanesAsync(lanes, async (lane, indexes) =>
            {
                var client = clients[lane];
                var data = new KeyValuePair<string, string>[1];
                foreach (int i in indexes)
                {
                    var e = events.Events[i];
                    data[0] = new("amount", EventSet.AmountText(e.AmountMinor));
                    // Completes synchronously while the SDK's buffer has room; the SDK copies the data.
                    await client.EnqueueAsync(EventType, events.Customers[e.Customer], data, events.TimeOf(e), e.Id, cancellationToken).ConfigureAwait(false);
                }
                await client.FlushAsync(cancellationToken).ConfigureAwait(false);
            }).ConfigureAwait(false);

            long enqueued = 0, acknowledged = 0;
            foreach (var client in clients)
            {
                var c = client.Counters;
                if (c.EventsRejected != 0 || c.EventsFailed != 0)
                    throw new InvalidOperationException($"the server rejected or failed events: {c}");
                enqueued += c.EventsEnqueued;
                acknowledged += c.EventsAcknowledged;
            }
            if (acknowledged != events.Events.Length || enqueued != events.Events.Length)
                throw new InvalidOperationException($"{acknowledged:N0} events acknowledged and {enqueued:N0} enqueued for {events.Events.Length:N0} sent");
        }
        finally
        {
            foreach (var client in clients)
                await client.DisposeAsync().ConfigureAwait(false);
        }
    }

    public override async Task<Dictionary<string, CustomerUsage>> ReadUsageAsync(EventSet events, CancellationToken cancellationToken)
    {
        var counts = await ReadMeterAsync(CountMeter, events, cancellationToken).ConfigureAwait(false);
        var sums = await ReadMeterAsync(SumMeter, events, cancellationToken).ConfigureAwait(false);
        var usage = new Dictionary<string, CustomerUsage>(StringComparer.Ordinal);
        foreach (var customer in counts.Keys.Union(sums.Keys))
        {
            decimal count = counts.GetValueOrDefault(customer);
            if (count != decimal.Truncate(count))
                throw new InvalidOperationException($"the COUNT meter answered {count} for {customer}");
            usage[customer] = new CustomerUsage((long)count, sums.GetValueOrDefault(customer));
        }
        return usage;
    }

    public override ValueTask DisposeAsync()
    {
        _http.Dispose();
        return ValueTask.CompletedTask;
    }

    private async Task CreateMeterAsync(string meter, string aggregation, string? valueProperty, CancellationToken cancellationToken)
    {
        using var response = await _http.PostAsJsonAsync("/v1/meters",
            new { key = meter, eventType = EventType, aggregation, valueProperty, groupBy = Array.Empty<string>(), windowSize = "HOUR" }, cancellationToken)
            .ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"creating meter {meter}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false)}");
    }

    /// <summary>The meter's value per customer, summed over the month rows the range touches.</summary>
    private async Task<Dictionary<string, decimal>> ReadMeterAsync(string meter, EventSet events, CancellationToken cancellationToken)
    {
        string from = events.BaseTime.AddDays(-1).ToString("O", CultureInfo.InvariantCulture);
        string to = events.BaseTime.AddDays(1).ToString("O", CultureInfo.InvariantCulture);
        using var response = await _http.GetAsync(
            $"/v1/meters/{meter}/usage?windowSize=MONTH&from={Uri.EscapeDataString(from)}&to={Uri.EscapeDataString(to)}", cancellationToken).ConfigureAwait(false);
        string body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"usage of {meter}: {(int)response.StatusCode} {body}");
        var values = new Dictionary<string, decimal>(StringComparer.Ordinal);
        using var json = JsonDocument.Parse(body);
        foreach (var row in json.RootElement.GetProperty("data").EnumerateArray())
        {
            string customer = row.GetProperty("customer").GetString()!;
            decimal value = decimal.Parse(row.GetProperty("value").GetString()!, NumberStyles.Float, CultureInfo.InvariantCulture);
            values[customer] = values.GetValueOrDefault(customer) + value;
        }
        return values;
    }
}
