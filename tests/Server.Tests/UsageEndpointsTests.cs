using System.Globalization;
using System.Net;
using System.Text.Json;
using AlphaMesh.Aggregator;
using AlphaMesh.Server.Tests.Support;
using AlphaMesh.Usage.V1;
using Microsoft.Extensions.DependencyInjection;
using Aggregation = AlphaMesh.Aggregator.Aggregation;

namespace AlphaMesh.Server.Tests;

/// <summary>Meters, usage and entitlements over HTTP against the real in-process server, events sent over gRPC.</summary>
public sealed class UsageEndpointsTests : IAsyncLifetime
{
    private readonly TempDirectory _data = new();
    private InProcessServer _server = null!;
    private UsageApi _api = null!;

    public async Task InitializeAsync()
    {
        _server = await InProcessServer.StartAsync(dataDirectory: _data.Path);
        _api = new UsageApi(_server);
    }

    public async Task DisposeAsync()
    {
        _api.Dispose();
        await _server.DisposeAsync();
        _data.Dispose();
    }

    private static readonly object TokensMeter = new
    {
        key = "tokens",
        eventType = "llm_call",
        aggregation = "SUM",
        valueProperty = "tokens",
        groupBy = new[] { "region" },
        windowSize = "HOUR",
    };

    [Fact]
    public async Task CreateMeter_NewSameOtherInvalid_Returns201Then200Then409Then400()
    {
        using var created = await SendAsync(HttpMethod.Post, "/v1/meters", ServerSettings.IngestKey, TokensMeter);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var meter = await ReadJsonAsync(created);
        Assert.Equal("tokens", meter.GetProperty("key").GetString());
        Assert.Equal("SUM", meter.GetProperty("aggregation").GetString());
        Assert.Equal("HOUR", meter.GetProperty("windowSize").GetString());
        Assert.EndsWith("Z", meter.GetProperty("createdAt").GetString(), StringComparison.Ordinal);

        using var again = await SendAsync(HttpMethod.Post, "/v1/meters", ServerSettings.IngestKey, TokensMeter);
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);

        using var conflict = await SendAsync(HttpMethod.Post, "/v1/meters", ServerSettings.IngestKey,
            new { key = "tokens", eventType = "llm_call", aggregation = "MAX", valueProperty = "tokens" });
        Assert.Equal(HttpStatusCode.Conflict, conflict.StatusCode);
        Assert.Equal("already_exists", (await ReadJsonAsync(conflict)).GetProperty("error").GetProperty("code").GetString());

        using var invalid = await SendAsync(HttpMethod.Post, "/v1/meters", ServerSettings.IngestKey,
            new { key = "bad key!", eventType = "", aggregation = "SUM" });
        Assert.Equal(HttpStatusCode.BadRequest, invalid.StatusCode);
        var message = (await ReadJsonAsync(invalid)).GetProperty("error").GetProperty("message").GetString()!;
        Assert.Contains("key", message, StringComparison.Ordinal);
        Assert.Contains("valueProperty", message, StringComparison.Ordinal);

        using var badAggregation = await SendAsync(HttpMethod.Post, "/v1/meters", ServerSettings.IngestKey,
            new { key = "x", eventType = "t", aggregation = "MEDIAN", valueProperty = "v" });
        Assert.Equal(HttpStatusCode.BadRequest, badAggregation.StatusCode);

        using var list = await SendAsync(HttpMethod.Get, "/v1/meters", ServerSettings.ReadOnlyKey);
        var keys = (await ReadJsonAsync(list)).GetProperty("data").EnumerateArray().Select(m => m.GetProperty("key").GetString()).ToList();
        Assert.Equal(["tokens"], keys);
    }

    [Fact]
    public async Task Usage_EventsSentTwiceInAnotherSplit_EqualsOracle()
    {
        await CreateMeterAsync(TokensMeter);
        var events = TokenEvents(count: 300, seed: 7);
        await IngestAsync(events, batchSize: 100);
        await IngestAsync(events, batchSize: 70); // every event again, in other batches: dedupe must drop them all

        var rows = await QueryUsageAsync("/v1/meters/tokens/usage?groupBy=region&windowSize=HOUR&" + Range());

        Assert.Equal(Oracle(events), rows);
    }

    [Fact]
    public async Task Usage_OneCustomerOrUnknownCustomerOrFilter_ReturnsItsRowsOr404()
    {
        await CreateMeterAsync(TokensMeter);
        var events = TokenEvents(count: 120, seed: 11);
        await IngestAsync(events, batchSize: 50);

        var rows = await QueryUsageAsync("/v1/meters/tokens/usage?customer=cust-1&groupBy=region&" + Range());
        Assert.Equal(Oracle(events.Where(e => e.Customer == "cust-1")), rows);

        var filtered = await QueryUsageAsync("/v1/meters/tokens/usage?groupBy=region&filter[region]=eu&" + Range());
        Assert.Equal(Oracle(events.Where(e => e.Data["region"] == "eu")), filtered);

        using var unknown = await SendAsync(HttpMethod.Get, "/v1/meters/tokens/usage?customer=nobody&" + Range(), ServerSettings.ReadOnlyKey);
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        using var noMeter = await SendAsync(HttpMethod.Get, "/v1/meters/nothing/usage?" + Range(), ServerSettings.ReadOnlyKey);
        Assert.Equal(HttpStatusCode.NotFound, noMeter.StatusCode);
        using var badWindow = await SendAsync(HttpMethod.Get, "/v1/meters/tokens/usage?windowSize=WEEK&" + Range(), ServerSettings.ReadOnlyKey);
        Assert.Equal(HttpStatusCode.BadRequest, badWindow.StatusCode);
        using var noRange = await SendAsync(HttpMethod.Get, "/v1/meters/tokens/usage", ServerSettings.ReadOnlyKey);
        Assert.Equal(HttpStatusCode.BadRequest, noRange.StatusCode);
        using var badGroup = await SendAsync(HttpMethod.Get, "/v1/meters/tokens/usage?groupBy=color&" + Range(), ServerSettings.ReadOnlyKey);
        Assert.Equal(HttpStatusCode.BadRequest, badGroup.StatusCode);
    }

    [Fact]
    public async Task Meters_OtherTenant_SeesNothingOfAcme404()
    {
        await CreateMeterAsync(TokensMeter);
        await IngestAsync(TokenEvents(count: 30, seed: 3), batchSize: 30);

        using var meter = await SendAsync(HttpMethod.Get, "/v1/meters/tokens", ServerSettings.OtherTenantKey);
        Assert.Equal(HttpStatusCode.NotFound, meter.StatusCode);
        using var usage = await SendAsync(HttpMethod.Get, "/v1/meters/tokens/usage?" + Range(), ServerSettings.OtherTenantKey);
        Assert.Equal(HttpStatusCode.NotFound, usage.StatusCode);
        using var entitlement = await SendAsync(HttpMethod.Get, "/v1/customers/cust-1/entitlements/tokens", ServerSettings.OtherTenantKey);
        Assert.Equal(HttpStatusCode.NotFound, entitlement.StatusCode);
        using var list = await SendAsync(HttpMethod.Get, "/v1/meters", ServerSettings.OtherTenantKey);
        Assert.Empty((await ReadJsonAsync(list)).GetProperty("data").EnumerateArray());
        using var own = await SendAsync(HttpMethod.Get, "/v1/meters/tokens", ServerSettings.ReadOnlyKey);
        Assert.Equal(HttpStatusCode.OK, own.StatusCode);

        // Globex's own meter of the same key (its key has no admin scope, so made through the catalog): acme's
        // customer is still unknown to globex.
        await _server.App.Services.GetRequiredService<IMeterCatalog>().CreateAsync(new MeterDefinition
        {
            Tenant = "globex",
            Key = "tokens",
            EventType = "llm_call",
            Aggregation = Aggregation.Sum,
            ValueProperty = "tokens",
        });
        using var globexAll = await SendAsync(HttpMethod.Get, "/v1/meters/tokens/usage?" + Range(), ServerSettings.OtherTenantKey);
        Assert.Equal(HttpStatusCode.OK, globexAll.StatusCode);
        Assert.Empty((await ReadJsonAsync(globexAll)).GetProperty("data").EnumerateArray());
        using var acmeCustomer = await SendAsync(HttpMethod.Get, "/v1/meters/tokens/usage?customer=cust-1&" + Range(), ServerSettings.OtherTenantKey);
        Assert.Equal(HttpStatusCode.NotFound, acmeCustomer.StatusCode);
    }

    [Fact]
    public async Task Meters_ReadOnlyOrNoKey_403Or401()
    {
        using var create = await SendAsync(HttpMethod.Post, "/v1/meters", ServerSettings.ReadOnlyKey, TokensMeter);
        Assert.Equal(HttpStatusCode.Forbidden, create.StatusCode);
        Assert.Equal("permission_denied", (await ReadJsonAsync(create)).GetProperty("error").GetProperty("code").GetString());
        using var createOther = await SendAsync(HttpMethod.Post, "/v1/meters", ServerSettings.OtherTenantKey, TokensMeter);
        Assert.Equal(HttpStatusCode.Forbidden, createOther.StatusCode);
        using var limit = await SendAsync(HttpMethod.Put, "/v1/entitlements", ServerSettings.ReadOnlyKey, new { meter = "tokens", limit = "1" });
        Assert.Equal(HttpStatusCode.Forbidden, limit.StatusCode);
        using var anonymous = await SendAsync(HttpMethod.Get, "/v1/meters", key: null);
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
    }

    [Fact]
    public async Task Entitlement_AfterLimitSet_DeniesAtLimitAndUsesTenantDefault()
    {
        await CreateMeterAsync(new { key = "calls", eventType = "api_call", aggregation = "COUNT" });
        using (var set = await SendAsync(HttpMethod.Put, "/v1/entitlements", ServerSettings.IngestKey, new { meter = "calls", customer = "cust-1", limit = "3" }))
            Assert.Equal(HttpStatusCode.OK, set.StatusCode);
        using (var setDefault = await SendAsync(HttpMethod.Put, "/v1/entitlements", ServerSettings.IngestKey, new { meter = "calls", limit = "100" }))
            Assert.Equal(HttpStatusCode.OK, setDefault.StatusCode);
        var events = Enumerable.Range(0, 7).Select(i => Requests.Event($"call-{i}", customer: i < 5 ? "cust-1" : "cust-2")).ToList();
        await IngestAsync(events, batchSize: 7);

        var check = await PollEntitlementAsync("cust-1", "calls", usage: 5);
        Assert.False(check.GetProperty("hasAccess").GetBoolean());
        Assert.Equal("3", check.GetProperty("limit").GetString());
        Assert.Equal(0m, ParseDecimal(check.GetProperty("remaining").GetString()));
        Assert.EndsWith("Z", check.GetProperty("resetsAt").GetString(), StringComparison.Ordinal);

        var other = await PollEntitlementAsync("cust-2", "calls", usage: 2);
        Assert.True(other.GetProperty("hasAccess").GetBoolean());
        Assert.Equal("100", other.GetProperty("limit").GetString());
        Assert.Equal(98m, ParseDecimal(other.GetProperty("remaining").GetString()));

        using var limits = await SendAsync(HttpMethod.Get, "/v1/entitlements", ServerSettings.ReadOnlyKey);
        Assert.Equal(2, (await ReadJsonAsync(limits)).GetProperty("data").GetArrayLength());
        using var unknownMeter = await SendAsync(HttpMethod.Put, "/v1/entitlements", ServerSettings.IngestKey, new { meter = "nothing", limit = "1" });
        Assert.Equal(HttpStatusCode.NotFound, unknownMeter.StatusCode);
        using var negative = await SendAsync(HttpMethod.Put, "/v1/entitlements", ServerSettings.IngestKey, new { meter = "calls", limit = "-1" });
        Assert.Equal(HttpStatusCode.BadRequest, negative.StatusCode);
    }

    [Fact]
    public async Task Usage_AfterRestartOnSameData_IsUnchanged()
    {
        await CreateMeterAsync(TokensMeter);
        var events = TokenEvents(count: 200, seed: 5);
        await IngestAsync(events, batchSize: 64);
        var before = await QueryUsageAsync("/v1/meters/tokens/usage?groupBy=region&" + Range());
        Assert.Equal(Oracle(events), before);

        _api.Dispose();
        await _server.StopAsync();
        _server = await InProcessServer.StartAsync(dataDirectory: _data.Path);
        _api = new UsageApi(_server);
        await IngestAsync(events, batchSize: 33); // resent after the restart: still duplicates

        var after = await QueryUsageAsync("/v1/meters/tokens/usage?groupBy=region&" + Range());
        Assert.Equal(before, after);
    }

    [Fact]
    public async Task EventCounters_DuplicatesAndInvalidEvents_CountedPerTenantAndKeptAcrossRestart()
    {
        await CreateMeterAsync(TokensMeter);
        await CreateMeterAsync(new { key = "calls", eventType = "llm_call", aggregation = "COUNT" });
        var random = new Random(17);
        var events = TokenEvents(count: 120, seed: 17);
        // Invalid for the SUM meter (no value, or not a number), still counted by the COUNT meter.
        for (int i = 0; i < 9; i++)
        {
            var data = i % 3 == 0 ? new[] { ("region", "eu") } : new[] { ("tokens", i % 3 == 1 ? "many" : "12 tokens"), ("region", "us") };
            events.Insert(random.Next(events.Count), Requests.Event($"bad-{i}", customer: "cust-9", type: "llm_call", time: BaseHour.AddMinutes(i), data: data));
        }
        await IngestAsync(events, batchSize: 40);
        // Resent in another split, bad events among them: every resend is a duplicate, and never invalid again.
        var resent = events.Where(_ => random.Next(3) == 0).ToList();
        await IngestAsync(resent, batchSize: 7);

        using var response = await SendAsync(HttpMethod.Get, "/v1/event-counters", ServerSettings.ReadOnlyKey);
        var body = await ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.OK, body.ToString());
        Assert.Equal(resent.Count, body.GetProperty("duplicates").GetInt64());
        var invalid = body.GetProperty("invalidEvents");
        long expectedInvalid = events.Count(e => e.Type == "llm_call"
            && !(e.Data.TryGetValue("tokens", out var tokens) && decimal.TryParse(tokens, NumberStyles.Number, CultureInfo.InvariantCulture, out _)));
        Assert.Equal(9, expectedInvalid);
        Assert.Equal(expectedInvalid, invalid.GetProperty("tokens").GetInt64());
        Assert.Equal(0, invalid.GetProperty("calls").GetInt64());

        // The counts survive a restart, and go on from there.
        _api.Dispose();
        await _server.StopAsync();
        _server = await InProcessServer.StartAsync(dataDirectory: _data.Path);
        _api = new UsageApi(_server);
        await IngestAsync(resent, batchSize: 11);
        using var afterRestart = await SendAsync(HttpMethod.Get, "/v1/event-counters", ServerSettings.ReadOnlyKey);
        var restarted = await ReadJsonAsync(afterRestart);
        Assert.Equal(2 * resent.Count, restarted.GetProperty("duplicates").GetInt64());
        Assert.Equal(expectedInvalid, restarted.GetProperty("invalidEvents").GetProperty("tokens").GetInt64());

        // Another tenant sees only its own (none); a request without a key is refused.
        using var other = await SendAsync(HttpMethod.Get, "/v1/event-counters", ServerSettings.OtherTenantKey);
        var otherBody = await ReadJsonAsync(other);
        Assert.Equal(0, otherBody.GetProperty("duplicates").GetInt64());
        Assert.Empty(otherBody.GetProperty("invalidEvents").EnumerateObject());
        using var anonymous = await SendAsync(HttpMethod.Get, "/v1/event-counters", key: null);
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
    }

    // ---- helpers ----

    private static readonly DateTimeOffset BaseHour = HourStart(DateTimeOffset.UtcNow.AddHours(-3));

    private static DateTimeOffset HourStart(DateTimeOffset t) => new(t.Year, t.Month, t.Day, t.Hour, 0, 0, TimeSpan.Zero);

    private static string Range()
        => $"from={BaseHour.AddHours(-1):yyyy-MM-ddTHH:mm:ssZ}&to={DateTimeOffset.UtcNow.AddHours(1):yyyy-MM-ddTHH:mm:ssZ}";

    private static readonly string[] Regions = ["eu", "us", "ap"];

    /// <summary>Events over three hours, four customers, three regions, values with two decimals; some of another type.</summary>
    private static List<UsageEvent> TokenEvents(int count, int seed)
    {
        var random = new Random(seed);
        var events = new List<UsageEvent>();
        for (int i = 0; i < count; i++)
        {
            var value = (random.Next(0, 100_000) / 100m).ToString(CultureInfo.InvariantCulture);
            var type = i % 10 == 9 ? "other_type" : "llm_call";
            events.Add(Requests.Event($"tok-{seed}-{i}", customer: $"cust-{random.Next(4)}", type: type,
                time: BaseHour.AddSeconds(random.Next(0, 3 * 3600)), data: [("tokens", value), ("region", Regions[random.Next(3)])]));
        }
        return events;
    }

    /// <summary>Straightforward sum and event count per (customer, region, hour), ordered like the server's rows.</summary>
    private static List<string> Oracle(IEnumerable<UsageEvent> events)
        => [.. events.Where(e => e.Type == "llm_call")
            .GroupBy(e => (e.Customer, Region: e.Data["region"], Hour: HourStart(e.Time.ToDateTimeOffset())))
            .OrderBy(g => g.Key.Customer, StringComparer.Ordinal).ThenBy(g => g.Key.Region, StringComparer.Ordinal).ThenBy(g => g.Key.Hour)
            .Select(g => Row(g.Key.Customer, g.Key.Region, g.Key.Hour, g.Sum(e => decimal.Parse(e.Data["tokens"], CultureInfo.InvariantCulture)), g.Count()))];

    private static string Row(string customer, string region, DateTimeOffset hour, decimal value, long events)
        => $"{customer}|{region}|{hour:yyyy-MM-ddTHH:mm:ssZ}|{hour.AddHours(1):yyyy-MM-ddTHH:mm:ssZ}|{value.ToString("0.00", CultureInfo.InvariantCulture)}|{events}";

    private async Task<List<string>> QueryUsageAsync(string pathAndQuery)
    {
        using var response = await SendAsync(HttpMethod.Get, pathAndQuery, ServerSettings.ReadOnlyKey);
        var body = await ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.OK, body.ToString());
        return [.. body.GetProperty("data").EnumerateArray().Select(r =>
        {
            var groups = r.GetProperty("groupBy");
            string region = groups.TryGetProperty("region", out var g) ? g.GetString()! : "";
            var start = DateTimeOffset.Parse(r.GetProperty("windowStart").GetString()!, CultureInfo.InvariantCulture);
            var end = DateTimeOffset.Parse(r.GetProperty("windowEnd").GetString()!, CultureInfo.InvariantCulture);
            Assert.Equal(end, start.AddHours(1));
            return Row(r.GetProperty("customer").GetString()!, region, start, ParseDecimal(r.GetProperty("value").GetString()), r.GetProperty("events").GetInt64());
        })];
    }

    private async Task<JsonElement> PollEntitlementAsync(string customer, string meter, decimal usage)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            using var response = await SendAsync(HttpMethod.Get, $"/v1/customers/{customer}/entitlements/{meter}", ServerSettings.ReadOnlyKey);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var body = await ReadJsonAsync(response);
            if (ParseDecimal(body.GetProperty("usage").GetString()) == usage)
                return body;
            Assert.True(DateTime.UtcNow < deadline, $"the entitlement usage did not reach {usage} within 30 s: {body}");
            await Task.Delay(50);
        }
    }

    private Task CreateMeterAsync(object meter) => _api.CreateMeterAsync(meter);

    private Task IngestAsync(IReadOnlyList<UsageEvent> events, int batchSize) => _api.IngestAsync(events, batchSize);

    private Task<HttpResponseMessage> SendAsync(HttpMethod method, string pathAndQuery, string? key, object? body = null)
        => _api.SendAsync(method, pathAndQuery, key, body);

    private static Task<JsonElement> ReadJsonAsync(HttpResponseMessage response) => UsageApi.ReadJsonAsync(response);

    private static decimal ParseDecimal(string? text) => decimal.Parse(text!, CultureInfo.InvariantCulture);
}
