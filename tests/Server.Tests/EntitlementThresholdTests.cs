using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using AlphaMesh.BillingApi.Internal;
using AlphaMesh.Server.Tests.Support;
using AlphaMesh.Tests.Shared;
using AlphaMesh.Usage.V1;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace AlphaMesh.Server.Tests;

/// <summary>
/// One database and one real server for the class, with the background threshold check off: each test runs the
/// server's own <see cref="EntitlementThresholdService"/> when it wants a check, so that "a second check announces
/// nothing" is exact. Usage goes through the real ingest and aggregator; webhooks go to a real receiver.
/// </summary>
public sealed class ThresholdFixture : DatabaseServerFixture
{
    private protected override void Configure(ServerSettings settings) => ThresholdSettings(settings);

    /// <summary>The settings of every server of these tests: no background check.</summary>
    internal static void ThresholdSettings(ServerSettings settings) => settings.Extra["AlphaMesh:Billing:EntitlementCheckInterval"] = "00:00:00";
}

public sealed class EntitlementThresholdTests(ThresholdFixture fixture) : IClassFixture<ThresholdFixture>, IAsyncLifetime
{
    private const string AdminKey = ServerSettings.IngestKey;
    private readonly string _tenant = $"thresholds-{Guid.NewGuid().ToString("N")[..8]}";
    private WebhookReceiver _receiver = null!;
    private DateTimeOffset _from;
    private int _events;

    public async Task InitializeAsync()
    {
        _receiver = await WebhookReceiver.StartAsync();
        // Usage in the current month (the period the check looks at), in the last few minutes.
        var now = DateTimeOffset.UtcNow;
        var monthStart = new DateTimeOffset(now.Year, now.Month, 1, 0, 0, 0, TimeSpan.Zero);
        _from = now.AddMinutes(-3) < monthStart ? monthStart : now.AddMinutes(-3);
    }

    public async Task DisposeAsync() => await _receiver.DisposeAsync();

    [Fact]
    public async Task CheckAsync_TenantDefaultCustomersCrossingAtDifferentTimes_OneEventPerCustomerAndThreshold()
    {
        var server = fixture.Server;
        string key = await CreateTenantAsync(server);
        await SetLimitAsync(server, key, "calls", null, "100");
        await SetLimitAsync(server, key, "calls", "vip", "1000"); // its own, higher: the default does not apply to it
        using var api = new UsageApi(server);

        await CallsAsync(api, key, ("a", 85), ("b", 50), ("c", 100), ("vip", 150));
        Assert.Equal(3, await CheckAsync(server)); // a 80, c 80, c 100
        long tried = Checker(server).InsertsTried;
        Assert.Equal(0, await CheckAsync(server));
        Assert.Equal(tried, Checker(server).InsertsTried); // the announced ones cost no round trip
        await CallsAsync(api, key, ("b", 40), ("a", 20), ("vip", 700));
        Assert.Equal(3, await CheckAsync(server)); // b 80, a 100, vip 80 (of its own 1,000)
        Assert.Equal(0, await CheckAsync(server));

        string[] expected = ["a:calls:100", "a:calls:80", "b:calls:80", "c:calls:100", "c:calls:80", "vip:calls:80"];
        Assert.Equal(expected, await RecordedAsync());
        var events = await OutboxAsync();
        Assert.Equal(expected, events.Select(Announcement).Order(StringComparer.Ordinal));
        var vip = events.Single(e => e["data"]!["customer"]!.GetValue<string>() == "vip")["data"]!;
        Assert.Equal("1000", vip["limit"]!.GetValue<string>());
        Assert.Equal("850", vip["usage"]!.GetValue<string>());
        var a100 = events.Single(e => Announcement(e) == "a:calls:100")["data"]!;
        Assert.Equal(("105", "100"), (a100["usage"]!.GetValue<string>(), a100["limit"]!.GetValue<string>()));

        // Each event reaches the endpoint once (every answer is 200, so nothing is sent again).
        Assert.True(await Wait.UntilAsync(() => _receiver.Received.Count >= events.Count), $"{_receiver.Received.Count} of {events.Count} delivered");
        Assert.Equal(events.Select(e => e["id"]!.GetValue<string>()).Order(StringComparer.Ordinal),
            _receiver.Received.Select(r => r.EventId!).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task CheckAsync_AfterRestartOnTheSameData_AnnouncesNothingTwiceAndStillWatchesRestoredCustomers()
    {
        using var data = new TempDirectory();
        string key;
        await using (var first = await StartServerAsync(data.Path))
        {
            key = await CreateTenantAsync(first);
            await SetLimitAsync(first, key, "calls", null, "100");
            using var api = new UsageApi(first);
            await CallsAsync(api, key, ("a", 85), ("b", 100), ("c", 50));
            Assert.Equal(3, await CheckAsync(first)); // a 80, b 80, b 100
        } // stopped: the aggregator's final checkpoint holds the totals

        await using var second = await StartServerAsync(data.Path);
        Assert.Equal(0, await CheckAsync(second));
        Assert.Equal(0, Checker(second).InsertsTried); // the period's announcements were read once, not tried again
        using (var api = new UsageApi(second))
            await CallsAsync(api, key, ("c", 40), ("a", 15)); // both totals come from the checkpoint
        Assert.Equal(2, await CheckAsync(second)); // c 80, a 100
        Assert.Equal(0, await CheckAsync(second));

        string[] expected = ["a:calls:100", "a:calls:80", "b:calls:100", "b:calls:80", "c:calls:80"];
        Assert.Equal(expected, await RecordedAsync());
        Assert.Equal(expected, (await OutboxAsync()).Select(Announcement).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task CheckAsync_TwoServersCheckingAtOnce_AnnounceEachThresholdOnce()
    {
        var server = fixture.Server;
        string key = await CreateTenantAsync(server);
        await SetLimitAsync(server, key, "calls", null, "10");
        using var api = new UsageApi(server);
        var customers = Enumerable.Range(0, 30).Select(i => ($"c{i}", 8 + (i % 5))).ToArray(); // 8 to 12 calls: 80 %, some 100 %
        await CallsAsync(api, key, customers);
        // A second checker as another server would run it: its own memory, the same database and usage.
        var other = ActivatorUtilities.CreateInstance<EntitlementThresholdService>(server.App.Services);

        int[] announced = await Task.WhenAll(CheckAsync(server), other.CheckAsync(CancellationToken.None));
        int[] again = await Task.WhenAll(CheckAsync(server), other.CheckAsync(CancellationToken.None));

        int expected = customers.Length + customers.Count(c => c.Item2 >= 10);
        Assert.Equal(expected, announced.Sum());
        Assert.Equal([0, 0], again);
        Assert.Equal(expected, (await RecordedAsync()).Length);
        Assert.Equal(expected, (await OutboxAsync()).Select(Announcement).Distinct().Count());
        Assert.Equal(expected, (await OutboxAsync()).Count);
    }

    [Theory]
    [InlineData(11)]
    [InlineData(12)]
    public async Task CheckAsync_RandomUsageAndLimits_MatchesOracle(int seed)
    {
        var random = new Random(seed);
        var server = fixture.Server;
        string key = await CreateTenantAsync(server);
        await PostOkAsync(server, "/v1/meters", new { key = "tokens", eventType = "api_call", aggregation = "SUM", valueProperty = "tokens" }, key);
        string[] meters = ["calls", "tokens"];
        var customers = Enumerable.Range(0, 24).Select(i => $"r{i}").ToArray();
        var limits = new Dictionary<(string Meter, string? Customer), decimal>();
        foreach (string meter in meters)
        {
            limits[(meter, null)] = random.Next(20, 60);
            foreach (string customer in customers.Where(_ => random.Next(3) == 0))
                limits[(meter, customer)] = random.Next(0, 80);
        }
        foreach (var ((meter, customer), limit) in limits)
            await SetLimitAsync(server, key, meter, customer, limit.ToString(CultureInfo.InvariantCulture));
        using var api = new UsageApi(server);
        var usage = new Dictionary<(string Meter, string Customer), decimal>();
        var announced = new HashSet<string>(StringComparer.Ordinal);

        for (int round = 0; round < 4; round++)
        {
            var events = new List<UsageEvent>();
            foreach (string customer in customers)
            {
                for (int n = random.Next(0, 15); n > 0; n--)
                {
                    decimal tokens = random.Next(1, 3000) / 1000m;
                    events.Add(Requests.Event($"{_tenant}-{_events++}", customer, time: _from.AddSeconds(random.Next(120)),
                        data: ("tokens", tokens.ToString(CultureInfo.InvariantCulture))));
                    usage[("calls", customer)] = usage.GetValueOrDefault(("calls", customer)) + 1;
                    usage[("tokens", customer)] = usage.GetValueOrDefault(("tokens", customer)) + tokens;
                }
            }
            await api.IngestAsync(events, batchSize: 500, key);

            // The oracle: each (customer, meter) against its own limit, or the default without one; a limit of 0 never.
            int due = 0;
            foreach (var ((meter, customer), used) in usage)
            {
                decimal limit = limits.TryGetValue((meter, customer), out decimal own) ? own : limits[(meter, null)];
                foreach (int threshold in new[] { 80, 100 })
                {
                    if (limit > 0 && used * 100 >= limit * threshold && announced.Add($"{customer}:{meter}:{threshold}"))
                        due++;
                }
            }
            Assert.Equal(due, await CheckAsync(server));
            long tried = Checker(server).InsertsTried;
            Assert.Equal(0, await CheckAsync(server));
            Assert.Equal(tried, Checker(server).InsertsTried);
        }

        Assert.Equal(announced.Order(StringComparer.Ordinal), await RecordedAsync());
        var outbox = await OutboxAsync();
        Assert.Equal(announced.Order(StringComparer.Ordinal), outbox.Select(Announcement).Order(StringComparer.Ordinal));
        foreach (var e in outbox)
        {
            var d = e["data"]!;
            var (meter, customer) = (d["meter"]!.GetValue<string>(), d["customer"]!.GetValue<string>());
            decimal limit = limits.TryGetValue((meter, customer), out decimal own) ? own : limits[(meter, null)];
            Assert.Equal(limit, decimal.Parse(d["limit"]!.GetValue<string>(), CultureInfo.InvariantCulture));
        }
    }

    // ------------------------------------------------------------------------------------------------ helpers

    /// <summary>A server of the test's own on the class's database, on <paramref name="dataDirectory"/>.</summary>
    private Task<InProcessServer> StartServerAsync(string dataDirectory) => InProcessServer.StartAsync(settings =>
    {
        settings.BillingConnectionString = fixture.Database.ConnectionString;
        ThresholdFixture.ThresholdSettings(settings);
    }, dataDirectory: dataDirectory);

    /// <summary>The server's own threshold check, run once now.</summary>
    private static Task<int> CheckAsync(InProcessServer server) => Checker(server).CheckAsync(CancellationToken.None);

    private static EntitlementThresholdService Checker(InProcessServer server)
        => server.App.Services.GetServices<IHostedService>().OfType<EntitlementThresholdService>().Single();

    /// <summary>A tenant of the test's own, with an admin key, the meter "calls" (COUNT of api_call) and a webhook
    /// endpoint for threshold events at the receiver.</summary>
    private async Task<string> CreateTenantAsync(InProcessServer server)
    {
        await PostOkAsync(server, "/v1/tenants", new { id = _tenant, name = "Thresholds" });
        string key = (await PostOkAsync(server, $"/v1/tenants/{_tenant}/api-keys", new { name = "all", scopes = new[] { "admin", "read", "ingest" } }))["key"]!.GetValue<string>();
        await PostOkAsync(server, "/v1/meters", new { key = "calls", eventType = "api_call", aggregation = "COUNT" }, key);
        await PostOkAsync(server, "/v1/webhook-endpoints", new { url = _receiver.Url(), eventTypes = new[] { "entitlement.threshold_reached" } }, key);
        return key;
    }

    private async Task CallsAsync(UsageApi api, string key, params (string Customer, int Count)[] calls)
    {
        var events = new List<UsageEvent>();
        foreach (var (customer, count) in calls)
        {
            for (int i = 0; i < count; i++)
                events.Add(Requests.Event($"{_tenant}-{_events++}", customer, time: _from.AddSeconds(i % 120)));
        }
        await api.IngestAsync(events, batchSize: 500, key);
    }

    private static async Task SetLimitAsync(InProcessServer server, string key, string meter, string? customer, string limit)
    {
        var (status, body) = await SendAsync(server, HttpMethod.Put, "/v1/entitlements", new { meter, customer, limit }, key);
        Assert.True(status == HttpStatusCode.OK, $"PUT /v1/entitlements: {status} {body?.ToJsonString()}");
    }

    /// <summary>The tenant's rows of entitlement_notifications as "customer:meter:threshold", ordered.</summary>
    private async Task<string[]> RecordedAsync()
    {
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT customer_id, meter, threshold FROM entitlement_notifications WHERE tenant_id = $1", connection)
        {
            Parameters = { new() { Value = _tenant } },
        };
        var rows = new List<string>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
            rows.Add($"{reader.GetString(0)}:{reader.GetString(1)}:{reader.GetInt32(2)}");
        return [.. rows.Order(StringComparer.Ordinal)];
    }

    /// <summary>The tenant's threshold events in the webhook outbox (every one, whether delivered yet or not).</summary>
    private async Task<List<JsonNode>> OutboxAsync()
    {
        await using var connection = new NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT payload FROM webhook_events WHERE tenant_id = $1 AND type = 'entitlement.threshold_reached'", connection)
        {
            Parameters = { new() { Value = _tenant } },
        };
        var events = new List<JsonNode>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
            events.Add(JsonNode.Parse(reader.GetString(0))!);
        return events;
    }

    private static string Announcement(JsonNode e)
        => $"{e["data"]!["customer"]!.GetValue<string>()}:{e["data"]!["meter"]!.GetValue<string>()}:{e["data"]!["threshold"]!.GetValue<int>()}";

    private static async Task<JsonNode> PostOkAsync(InProcessServer server, string path, object body, string key = AdminKey)
    {
        var (status, node) = await SendAsync(server, HttpMethod.Post, path, body, key);
        Assert.True(status is HttpStatusCode.OK or HttpStatusCode.Created, $"POST {path}: {status} {node?.ToJsonString()}");
        return node!;
    }

    private static async Task<(HttpStatusCode Status, JsonNode? Body)> SendAsync(InProcessServer server, HttpMethod method, string path, object body, string key)
    {
        using var http = new HttpClient { BaseAddress = server.Settings.RestAddress, Timeout = TimeSpan.FromSeconds(60) };
        using var request = new HttpRequestMessage(method, path) { Content = System.Net.Http.Json.JsonContent.Create(body) };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var response = await http.SendAsync(request);
        string text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? null : JsonNode.Parse(text));
    }
}
