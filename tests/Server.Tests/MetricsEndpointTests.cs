using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using AlphaMesh.Aggregator;
using AlphaMesh.Server.Tests.Support;
using AlphaMesh.Usage.V1;
using Microsoft.Extensions.DependencyInjection;

namespace AlphaMesh.Server.Tests;

/// <summary>The metrics tests run alone: OpenTelemetry exports every meter named "AlphaMesh" in the process, so a
/// server another test class runs at the same time (same tenant names) would add its counts to this one's.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MetricsCollection
{
    public const string Name = "metrics";
}

/// <summary><c>GET /metrics</c> on a real in-process server: the Prometheus text against counts the test keeps itself.</summary>
[Collection(MetricsCollection.Name)]
public sealed class MetricsEndpointTests : IAsyncLifetime
{
    /// <summary>An admin key, but of a tenant other than the operator (the bootstrap tenant, acme).</summary>
    private const string OtherTenantAdminKey = "amk_test_other_tenant_admin_0123456789";

    private InProcessServer _server = null!;
    private UsageApi _api = null!;

    public async Task InitializeAsync()
    {
        _server = await InProcessServer.StartAsync(settings =>
        {
            settings.Extra["AlphaMesh:ApiKeys:3:Tenant"] = "globex";
            settings.Extra["AlphaMesh:ApiKeys:3:Sha256"] = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(OtherTenantAdminKey)));
            settings.Extra["AlphaMesh:ApiKeys:3:Scopes"] = "admin";
        });
        _api = new UsageApi(_server);
    }

    public async Task DisposeAsync()
    {
        _api.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task Metrics_RandomizedEventsResentRejectedOverEveryIngestPath_CountsMatchOracle()
    {
        await _api.CreateMeterAsync(new { key = "tokens", eventType = "llm_call", aggregation = "SUM", valueProperty = "tokens" });
        await _api.CreateMeterAsync(new { key = "calls", eventType = "llm_call", aggregation = "COUNT" });
        var random = new Random(23);
        var now = DateTimeOffset.UtcNow.AddMinutes(-5);
        var acme = new List<UsageEvent>();
        for (int i = 0; i < 300; i++)
        {
            // About one in eight has no usable value for the SUM meter.
            string tokens = random.Next(8) == 0 ? "lots" : (random.Next(0, 10_000) / 100m).ToString(CultureInfo.InvariantCulture);
            acme.Add(Requests.Event($"acme-{i}", customer: $"cust-{random.Next(5)}", type: "llm_call", time: now.AddSeconds(i), data: ("tokens", tokens)));
        }
        var globex = Enumerable.Range(0, 40).Select(i => Requests.Event($"globex-{i}", type: "llm_call", time: now)).ToList();
        await _api.IngestAsync(acme, batchSize: 64);
        await _api.IngestAsync(globex, batchSize: 40, key: ServerSettings.OtherTenantKey);
        // Resent in other splits: every resend is accepted by ingest and dropped by the aggregator as a duplicate.
        var acmeResent = acme.Where(_ => random.Next(3) == 0).ToList();
        var globexResent = globex.Take(15).ToList();
        await _api.IngestAsync(acmeResent, batchSize: 9);
        await _api.IngestAsync(globexResent, batchSize: 4, key: ServerSettings.OtherTenantKey);
        // Rejected one by one inside an otherwise accepted request.
        var mixed = new IngestRequest { BatchId = "mixed" };
        mixed.Events.Add(Requests.Event("acme-good", type: "llm_call", time: now, data: ("tokens", "1")));
        mixed.Events.Add(Requests.Event("acme-no-customer", customer: "", type: "llm_call", time: now));
        mixed.Events.Add(Requests.Event("", type: "llm_call", time: now));
        mixed.Events.Add(Requests.Event("acme-no-customer-2", customer: "", type: "llm_call", time: now));
        var reply = await new UsageIngest.UsageIngestClient(_api.Channel).IngestAsync(mixed, Requests.Auth(ServerSettings.IngestKey));
        Assert.Equal(1, reply.Accepted);
        // Over HTTP too (CloudEvents): five accepted, one rejected; a type no meter counts.
        var cloudEvents = Enumerable.Range(0, 6).Select(i => new Dictionary<string, object>
        {
            ["specversion"] = "1.0",
            ["id"] = $"acme-http-{i}",
            ["source"] = "tests",
            ["type"] = "page_view",
            ["subject"] = i == 3 ? "" : "cust-http",
        }).ToList();
        using (var viaHttp = await _api.SendAsync(HttpMethod.Post, "/v1/events", ServerSettings.IngestKey, cloudEvents))
        {
            var body = await UsageApi.ReadJsonAsync(viaHttp);
            Assert.True(viaHttp.StatusCode == HttpStatusCode.OK, body.ToString());
            Assert.Equal(5, body.GetProperty("accepted").GetInt32());
        }
        // And through the SDK's gRPC stream: 50 events in batches of 20.
        await using (var client = new AlphaMesh.Client.UsageClient(new AlphaMesh.Client.UsageClientOptions
        {
            Endpoint = _server.Settings.GrpcAddress,
            ApiKey = ServerSettings.IngestKey,
            MaxBatchEvents = 20,
        }))
        {
            await Task.WhenAll(Enumerable.Range(0, 50).Select(i => client.TrackAsync("page_view", "cust-sdk", [], id: $"acme-sdk-{i}")));
        }
        // A request refused as a whole counts nothing.
        using (var http = new HttpClient())
        using (var malformed = new HttpRequestMessage(HttpMethod.Post, new Uri(_server.Settings.RestAddress, "/v1/events")))
        {
            malformed.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", ServerSettings.IngestKey);
            malformed.Content = new StringContent("[{\"id\": \"acme-cut-off\"", Encoding.UTF8, "application/json");
            using var refused = await http.SendAsync(malformed);
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        }
        var aggregator = _server.App.Services.GetRequiredService<IAggregator>();
        await aggregator.WaitForCommittedAsync();
        var beforeCheckpoint = DateTimeOffset.UtcNow;
        await aggregator.CheckpointAsync();

        var metrics = await ScrapeAsync(ServerSettings.IngestKey);
        var scraped = DateTimeOffset.UtcNow;

        Assert.Equal(acme.Count + acmeResent.Count + 1 + 5 + 50, metrics.Value("alphamesh_ingest_events_accepted_total", ("tenant", "acme")));
        Assert.Equal(globex.Count + globexResent.Count, metrics.Value("alphamesh_ingest_events_accepted_total", ("tenant", "globex")));
        Assert.Equal(2 + 1, metrics.Value("alphamesh_ingest_events_rejected_total", ("tenant", "acme"), ("code", "missing_customer")));
        Assert.Equal(1, metrics.Value("alphamesh_ingest_events_rejected_total", ("tenant", "acme"), ("code", "missing_id")));
        Assert.Equal(acmeResent.Count, metrics.Value("alphamesh_aggregator_duplicates_total", ("tenant", "acme")));
        Assert.Equal(globexResent.Count, metrics.Value("alphamesh_aggregator_duplicates_total", ("tenant", "globex")));
        long invalid = acme.Count(e => !decimal.TryParse(e.Data["tokens"], NumberStyles.Number, CultureInfo.InvariantCulture, out _));
        Assert.InRange(invalid, 1, acme.Count - 1);
        Assert.Equal(invalid, metrics.Value("alphamesh_aggregator_invalid_events_total", ("tenant", "acme"), ("meter", "tokens")));
        // Nothing to count yet: no series (the COUNT meter takes every event).
        Assert.False(metrics.Has("alphamesh_aggregator_invalid_events_total", ("meter", "calls")), metrics.Text);
        Assert.False(metrics.Has("alphamesh_aggregator_invalid_events_total", ("tenant", "globex")), metrics.Text);
        Assert.Equal(0, metrics.Value("alphamesh_aggregator_malformed_records_total"));
        int partitions = _server.App.Services.GetRequiredService<AlphaMesh.Core.IEventLog>().PartitionCount;
        for (int p = 0; p < partitions; p++)
        {
            string partition = p.ToString(CultureInfo.InvariantCulture);
            Assert.Equal(0, metrics.Value("alphamesh_aggregator_lag_bytes", ("partition", partition)));
            Assert.Equal(0, metrics.Value("alphamesh_aggregator_stopped", ("partition", partition)));
            double checkpointed = metrics.Sample("alphamesh_aggregator_checkpointed_at_seconds", ("partition", partition));
            Assert.InRange(checkpointed, beforeCheckpoint.ToUnixTimeMilliseconds() / 1000.0 - 0.001, scraped.ToUnixTimeMilliseconds() / 1000.0 + 0.001);
        }
        // ASP.NET Core's own request metrics come along: the ingest requests above were HTTP/2 gRPC calls.
        Assert.True(metrics.Samples.Any(s => s.Name == "http_server_request_duration_seconds_count" && s.Labels.GetValueOrDefault("http_route") == "/alphamesh.usage.v1.UsageIngest/Ingest"),
            "no request metrics for gRPC ingest in:\n" + metrics.Text);
    }

    [Fact]
    public async Task Metrics_WithoutOperatorAdminKey_RefusedWithReason()
    {
        using var anonymous = await _api.SendAsync(HttpMethod.Get, "/metrics", key: null);
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        Assert.Equal("unauthenticated", (await UsageApi.ReadJsonAsync(anonymous)).GetProperty("error").GetProperty("code").GetString());

        using var wrongKey = await _api.SendAsync(HttpMethod.Get, "/metrics", "amk_not_a_key_0123456789abcdef");
        Assert.Equal(HttpStatusCode.Unauthorized, wrongKey.StatusCode);

        using var readOnly = await _api.SendAsync(HttpMethod.Get, "/metrics", ServerSettings.ReadOnlyKey);
        Assert.Equal(HttpStatusCode.Forbidden, readOnly.StatusCode);

        // Admin of its own tenant is not enough: the metrics hold every tenant's counts.
        using var otherAdmin = await _api.SendAsync(HttpMethod.Get, "/metrics", OtherTenantAdminKey);
        Assert.Equal(HttpStatusCode.Forbidden, otherAdmin.StatusCode);
        var error = (await UsageApi.ReadJsonAsync(otherAdmin)).GetProperty("error");
        Assert.Equal("permission_denied", error.GetProperty("code").GetString());
        Assert.Contains("operator tenant 'acme'", error.GetProperty("message").GetString(), StringComparison.Ordinal);

        using var operatorAdmin = await _api.SendAsync(HttpMethod.Get, "/metrics", ServerSettings.IngestKey);
        Assert.Equal(HttpStatusCode.OK, operatorAdmin.StatusCode);
        Assert.StartsWith("text/plain", operatorAdmin.Content.Headers.ContentType?.MediaType, StringComparison.Ordinal);
    }

    private async Task<PrometheusText> ScrapeAsync(string key)
    {
        using var response = await _api.SendAsync(HttpMethod.Get, "/metrics", key);
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        return PrometheusText.Parse(text);
    }

    /// <summary>The samples of a Prometheus text exposition: <c>name{label="value",...} number</c> per line (also used by
    /// <see cref="StoppedPartitionTests"/>).</summary>
    internal sealed record PrometheusText(string Text, List<(string Name, Dictionary<string, string> Labels, double Value)> Samples)
    {
        public static PrometheusText Parse(string text)
        {
            var samples = new List<(string, Dictionary<string, string>, double)>();
            foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                if (line.StartsWith('#'))
                    continue;
                int brace = line.IndexOf('{', StringComparison.Ordinal);
                int space = line.LastIndexOf('}') is int close and >= 0 ? close + 1 : line.IndexOf(' ', StringComparison.Ordinal);
                string name = brace >= 0 ? line[..brace] : line[..space];
                var labels = new Dictionary<string, string>(StringComparer.Ordinal);
                if (brace >= 0)
                {
                    // Label values here hold no commas, quotes or escapes.
                    foreach (string pair in line[(brace + 1)..(space - 1)].Split(',', StringSplitOptions.RemoveEmptyEntries))
                    {
                        int equals = pair.IndexOf('=', StringComparison.Ordinal);
                        labels[pair[..equals]] = pair[(equals + 1)..].Trim('"');
                    }
                }
                string value = line[space..].Trim().Split(' ')[0];
                samples.Add((name, labels, double.Parse(value, CultureInfo.InvariantCulture)));
            }
            return new PrometheusText(text, samples);
        }

        /// <summary>The one sample of <paramref name="name"/> carrying these labels (others may be there too).</summary>
        public double Sample(string name, params (string Key, string Value)[] labels)
        {
            var matches = Samples.Where(s => s.Name == name && labels.All(l => s.Labels.GetValueOrDefault(l.Key) == l.Value)).ToList();
            Assert.True(matches.Count == 1, $"{matches.Count} samples of {name} with {string.Join(", ", labels)} in:\n{Text}");
            return matches[0].Value;
        }

        public bool Has(string name, params (string Key, string Value)[] labels)
            => Samples.Any(s => s.Name == name && labels.All(l => s.Labels.GetValueOrDefault(l.Key) == l.Value));

        /// <summary><see cref="Sample"/> of a count.</summary>
        public long Value(string name, params (string Key, string Value)[] labels) => (long)Sample(name, labels);
    }
}
