using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using AlphaMesh.BillingApi;
using AlphaMesh.BillingApi.Internal;
using AlphaMesh.Server.Tests.Support;
using AlphaMesh.Tests.Shared;

namespace AlphaMesh.Server.Tests;

/// <summary>One database and one real server (in process, with its webhook dispatcher) for the class; retries are
/// fast here so that a failed first attempt is retried within the test.</summary>
public sealed class WebhookApiFixture : DatabaseServerFixture
{
    private protected override void Configure(ServerSettings settings)
    {
        settings.Extra["AlphaMesh:Billing:Webhooks:FirstRetryDelay"] = "00:00:00.200";
        settings.Extra["AlphaMesh:Billing:Webhooks:MaxRetryDelay"] = "00:00:01";
        settings.Extra["AlphaMesh:Billing:Webhooks:PollInterval"] = "00:00:01";
    }
}

public sealed class WebhookEndpointApiTests(WebhookApiFixture fixture) : IClassFixture<WebhookApiFixture>, IDisposable
{
    private const string OperatorKey = ServerSettings.IngestKey;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private readonly HttpClient _http = new() { BaseAddress = fixture.Server.Settings.RestAddress };

    public void Dispose() => _http.Dispose();

    private async Task<(HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response)> SendAsync(HttpMethod method, string path, string? key,
        string? json = null, string? idempotencyKey = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (key is not null)
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (json is not null)
            request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        if (idempotencyKey is not null)
            request.Headers.Add("Idempotency-Key", idempotencyKey);
        var response = await _http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? null : JsonNode.Parse(text), response);
    }

    private static void AssertError(HttpStatusCode expected, string code, (HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response) actual, string? field = null)
    {
        Assert.True(expected == actual.Status, $"expected {expected}, got {actual.Status}: {actual.Body?.ToJsonString()}");
        Assert.Equal("application/problem+json", actual.Response.Content.Headers.ContentType?.MediaType);
        Assert.Equal(code, actual.Body?["code"]?.GetValue<string>());
        Assert.False(string.IsNullOrEmpty(actual.Body?["detail"]?.GetValue<string>()));
        if (field is not null)
            Assert.Equal(field, actual.Body?["field"]?.GetValue<string>());
    }

    /// <summary>A new tenant and an admin key of it.</summary>
    private async Task<(string Tenant, string AdminKey)> CreateTenantAsync()
    {
        var id = "t-" + Guid.NewGuid().ToString("N")[..12];
        var (status, body, _) = await SendAsync(HttpMethod.Post, "/v1/tenants", OperatorKey, $$"""{"id":"{{id}}","name":"Tenant {{id}}"}""");
        Assert.True(status == HttpStatusCode.Created, body?.ToJsonString());
        (status, body, _) = await SendAsync(HttpMethod.Post, $"/v1/tenants/{id}/api-keys", OperatorKey, """{"name":"admin","scopes":["admin"]}""");
        Assert.True(status == HttpStatusCode.Created, body?.ToJsonString());
        return (id, body!["key"]!.GetValue<string>());
    }

    private async Task<JsonNode> CreateEndpointAsync(string key, string url, string? eventTypesJson = null)
    {
        var json = eventTypesJson is null ? $$"""{"url":"{{url}}"}""" : $$"""{"url":"{{url}}","eventTypes":{{eventTypesJson}}}""";
        var (status, body, _) = await SendAsync(HttpMethod.Post, "/v1/webhook-endpoints", key, json);
        Assert.True(status == HttpStatusCode.Created, body?.ToJsonString());
        return body!;
    }

    private async Task<Guid> EnqueueAsync(string tenant, string type, object data)
    {
        await using var connection = new Npgsql.NpgsqlConnection(fixture.Database.ConnectionString);
        await connection.OpenAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        var id = await WebhookOutbox.EnqueueAsync(connection, tenant, type, data, default);
        await transaction.CommitAsync();
        return id;
    }

    private async Task<JsonArray> WaitForDeliveriesAsync(string key, string endpointId, Func<JsonArray, bool> condition)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (true)
        {
            var (status, body, _) = await SendAsync(HttpMethod.Get, $"/v1/webhook-endpoints/{endpointId}/deliveries", key);
            Assert.Equal(HttpStatusCode.OK, status);
            var data = body!["data"]!.AsArray();
            if (condition(data))
                return data;
            Assert.True(DateTime.UtcNow < deadline, "deliveries did not reach the expected state: " + body.ToJsonString());
            await Task.Delay(100);
        }
    }

    /// <summary>The README's receiver check, written independently of the server's code.</summary>
    private static bool SignatureIsValid(string secret, ReceivedWebhook request)
    {
        var parts = (request.Signature ?? "").Split(',').Select(p => p.Split('=', 2)).Where(p => p.Length == 2).ToDictionary(p => p[0], p => p[1]);
        if (!parts.TryGetValue("t", out var t) || !parts.TryGetValue("v1", out var v1))
            return false;
        byte[] signed = [.. Encoding.UTF8.GetBytes(t + "."), .. request.Body];
        var mac = HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), signed);
        return Convert.ToHexStringLower(mac) == v1
            && Math.Abs(DateTimeOffset.UtcNow.ToUnixTimeSeconds() - long.Parse(t, CultureInfo.InvariantCulture)) < 300;
    }

    /// <summary>Issue 5's judged webhook test: delivery to a local HTTP receiver whose first attempt fails, the signature
    /// verified by the receiver, and both attempts in the endpoint's delivery record.</summary>
    [Fact]
    public async Task Webhook_ReceiverFailsTheFirstAttempt_DeliveredOnRetrySignedAndBothAttemptsListed()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Respond = (request, _) => Task.FromResult(request.Attempt == 1 ? 500 : 200);
        var (tenant, key) = await CreateTenantAsync();
        var endpoint = await CreateEndpointAsync(key, receiver.Url("/alphamesh"), """["invoice.finalized"]""");
        var endpointId = endpoint["id"]!.GetValue<string>();
        var secret = endpoint["secret"]!.GetValue<string>();

        var eventId = await EnqueueAsync(tenant, WebhookEventTypes.InvoiceFinalized, new { invoiceId = "inv_42", number = 7, total = "119.00" });
        var deliveries = await WaitForDeliveriesAsync(key, endpointId, d => d.Count == 1 && d[0]!["status"]!.GetValue<string>() == "delivered");

        Assert.Equal([500, 200], receiver.Received.Select(r => r.Status));
        Assert.All(receiver.Received, r => Assert.True(SignatureIsValid(secret, r), $"signature {r.Signature} does not verify with the endpoint's secret"));
        var envelope = JsonNode.Parse(receiver.Received[1].Text)!;
        Assert.Equal((eventId.ToString(), "invoice.finalized", tenant), (envelope["id"]!.GetValue<string>(), envelope["type"]!.GetValue<string>(), envelope["tenant"]!.GetValue<string>()));
        Assert.Equal("inv_42", envelope["data"]!["invoiceId"]!.GetValue<string>());

        var delivery = deliveries[0]!;
        Assert.Equal((eventId.ToString(), "invoice.finalized", 2), (delivery["eventId"]!.GetValue<string>(), delivery["eventType"]!.GetValue<string>(), delivery["attemptCount"]!.GetValue<int>()));
        Assert.Null(delivery["nextAttemptAt"]);
        var attempts = delivery["attempts"]!.AsArray();
        Assert.Equal([1, 2], attempts.Select(a => a!["number"]!.GetValue<int>()));
        Assert.Equal([500, 200], attempts.Select(a => a!["httpStatus"]!.GetValue<int>()));
        Assert.Contains("500", attempts[0]!["error"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Null(attempts[1]!["error"]);
        Assert.All(attempts, a =>
        {
            Assert.True(a!["durationMs"]!.GetValue<double>() >= 0);
            Assert.EndsWith("Z", a["startedAt"]!.GetValue<string>(), StringComparison.Ordinal);
            Assert.EndsWith("Z", a["finishedAt"]!.GetValue<string>(), StringComparison.Ordinal);
        });
    }

    [Fact]
    public async Task CreateEndpoint_AdminKey_Returns201WithTheSecretOnlyInThatAnswer()
    {
        var (tenant, key) = await CreateTenantAsync();

        var (status, created, _) = await SendAsync(HttpMethod.Post, "/v1/webhook-endpoints", key,
            """{"url":"https://hooks.example.com/alphamesh?x=1","eventTypes":["invoice.created","credit_note.created","invoice.created"],"description":"ERP"}""");

        Assert.Equal(HttpStatusCode.Created, status);
        var id = created!["id"]!.GetValue<string>();
        var secret = created["secret"]!.GetValue<string>();
        Assert.Matches("^whsec_[0-9a-f]{64}$", secret);
        Assert.Equal((tenant, "https://hooks.example.com/alphamesh?x=1", "ERP"),
            (created["tenant"]!.GetValue<string>(), created["url"]!.GetValue<string>(), created["description"]!.GetValue<string>()));
        Assert.Equal(["invoice.created", "credit_note.created"], created["eventTypes"]!.AsArray().Select(t => t!.GetValue<string>()));
        var (getStatus, got, _) = await SendAsync(HttpMethod.Get, $"/v1/webhook-endpoints/{id}", key);
        Assert.Equal(HttpStatusCode.OK, getStatus);
        Assert.Null(got!["secret"]);
        Assert.Equal(created["createdAt"]!.GetValue<string>(), got["createdAt"]!.GetValue<string>());
        var (_, list, _) = await SendAsync(HttpMethod.Get, "/v1/webhook-endpoints", key);
        Assert.Equal([id], list!["data"]!.AsArray().Select(e => e!["id"]!.GetValue<string>()));
        Assert.DoesNotContain(secret, list.ToJsonString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task CreateEndpoint_NoEventTypes_SubscribesToEveryType()
    {
        var (_, key) = await CreateTenantAsync();

        var created = await CreateEndpointAsync(key, "http://127.0.0.1:9/hook");

        Assert.Equal(["*"], created["eventTypes"]!.AsArray().Select(t => t!.GetValue<string>()));
    }

    public static TheoryData<string, string?> BadEndpointBodies => new()
    {
        { """{}""", "url" },
        { """{"url":""}""", "url" },
        { """{"url":"/relative/path"}""", "url" },
        { """{"url":"ftp://files.example.com/hook"}""", "url" },
        { """{"url":"not a url"}""", "url" },
        { $$"""{"url":"https://example.com/{{new string('a', 2040)}}"}""", "url" },
        { """{"url":5}""", "url" },
        { """{"url":"https://example.com/h","eventTypes":["invoice.paid"]}""", "eventTypes" },
        { """{"url":"https://example.com/h","eventTypes":[]}""", "eventTypes" },
        { """{"url":"https://example.com/h","eventTypes":["*","invoice.created"]}""", "eventTypes" },
        { """{"url":"https://example.com/h","eventTypes":"invoice.created"}""", "eventTypes" },
        { $$"""{"url":"https://example.com/h","description":"{{new string('d', 501)}}"}""", "description" },
        { """{"url":"https://example.com/h","secret":"mine"}""", null },
        { """{"url":"https://example.com/h",""", null },
        { "[]", null },
    };

    [Theory]
    [MemberData(nameof(BadEndpointBodies))]
    public async Task CreateEndpoint_BadBody_Returns400NamingTheFault(string json, string? field)
    {
        var (_, key) = await CreateTenantAsync();

        AssertError(HttpStatusCode.BadRequest, "invalid_argument", await SendAsync(HttpMethod.Post, "/v1/webhook-endpoints", key, json), field);

        var (_, list, _) = await SendAsync(HttpMethod.Get, "/v1/webhook-endpoints", key);
        Assert.Empty(list!["data"]!.AsArray());
    }

    [Fact]
    public async Task CreateEndpoint_SeveralFaults_Returns400ListingEach()
    {
        var (_, key) = await CreateTenantAsync();

        var result = await SendAsync(HttpMethod.Post, "/v1/webhook-endpoints", key, """{"url":"mailto:a@b.c","eventTypes":["invoice.created","nope"]}""");

        AssertError(HttpStatusCode.BadRequest, "invalid_argument", result, "url");
        Assert.Equal(["url", "eventTypes"], result.Body!["errors"]!.AsArray().Select(e => e!["field"]!.GetValue<string>()));
        Assert.Contains("nope", result.Body["detail"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task WebhookEndpoints_AnotherTenantsAdminKey_Return404LikeAnUnknownId()
    {
        var (_, mine) = await CreateTenantAsync();
        var (_, theirs) = await CreateTenantAsync();
        var theirEndpoint = (await CreateEndpointAsync(theirs, "https://theirs.example.com/h"))["id"]!.GetValue<string>();

        foreach (var id in new[] { theirEndpoint, Guid.NewGuid().ToString(), "not-an-id" })
        {
            AssertError(HttpStatusCode.NotFound, "not_found", await SendAsync(HttpMethod.Get, $"/v1/webhook-endpoints/{id}", mine));
            AssertError(HttpStatusCode.NotFound, "not_found", await SendAsync(HttpMethod.Get, $"/v1/webhook-endpoints/{id}/deliveries", mine));
            AssertError(HttpStatusCode.NotFound, "not_found", await SendAsync(HttpMethod.Delete, $"/v1/webhook-endpoints/{id}", mine));
        }
        var (_, list, _) = await SendAsync(HttpMethod.Get, "/v1/webhook-endpoints", mine);
        Assert.Empty(list!["data"]!.AsArray());
        // Still there for its owner.
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, $"/v1/webhook-endpoints/{theirEndpoint}", theirs)).Status);
    }

    [Fact]
    public async Task WebhookEndpoints_WithoutKeyOrAdminScope_Return401Or403()
    {
        var json = """{"url":"https://example.com/h"}""";

        AssertError(HttpStatusCode.Unauthorized, "unauthenticated", await SendAsync(HttpMethod.Post, "/v1/webhook-endpoints", null, json));
        AssertError(HttpStatusCode.Forbidden, "permission_denied", await SendAsync(HttpMethod.Post, "/v1/webhook-endpoints", ServerSettings.ReadOnlyKey, json));
        AssertError(HttpStatusCode.Forbidden, "permission_denied", await SendAsync(HttpMethod.Get, "/v1/webhook-endpoints", ServerSettings.ReadOnlyKey));
    }

    [Fact]
    public async Task DeleteEndpoint_Existing_Returns200ThenItIsGone()
    {
        var (_, key) = await CreateTenantAsync();
        var id = (await CreateEndpointAsync(key, "https://example.com/h"))["id"]!.GetValue<string>();

        var (status, deleted, _) = await SendAsync(HttpMethod.Delete, $"/v1/webhook-endpoints/{id}", key);

        Assert.Equal((HttpStatusCode.OK, id), (status, deleted!["id"]!.GetValue<string>()));
        Assert.Null(deleted["secret"]);
        AssertError(HttpStatusCode.NotFound, "not_found", await SendAsync(HttpMethod.Get, $"/v1/webhook-endpoints/{id}", key));
        AssertError(HttpStatusCode.NotFound, "not_found", await SendAsync(HttpMethod.Delete, $"/v1/webhook-endpoints/{id}", key));
    }

    [Fact]
    public async Task ListEndpoints_PagesOfTwo_WalkEveryEndpointOnceInCreationOrder()
    {
        var (_, key) = await CreateTenantAsync();
        var created = new List<string>();
        for (int i = 0; i < 5; i++)
            created.Add((await CreateEndpointAsync(key, $"https://example.com/h{i}"))["id"]!.GetValue<string>());

        var (seen, pages) = await Paging.ReadAllAsync("/v1/webhook-endpoints?limit=2", async path =>
        {
            var (status, body, _) = await SendAsync(HttpMethod.Get, path, key);
            return (status, body);
        });

        Assert.Equal(created, seen);
        Assert.Equal(3, pages);
        AssertError(HttpStatusCode.BadRequest, "invalid_argument", await SendAsync(HttpMethod.Get, "/v1/webhook-endpoints?cursor=bm90LWEtZ3VpZA", key), "cursor");
        AssertError(HttpStatusCode.BadRequest, "invalid_argument", await SendAsync(HttpMethod.Get, "/v1/webhook-endpoints?status=all", key), "status");
    }

    [Fact]
    public async Task ListDeliveries_ThreeEventsPagesOfTwo_NewestFirst()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        var (tenant, key) = await CreateTenantAsync();
        var endpointId = (await CreateEndpointAsync(key, receiver.Url()))["id"]!.GetValue<string>();
        var events = new List<string>();
        for (int i = 0; i < 3; i++)
            events.Add((await EnqueueAsync(tenant, WebhookEventTypes.InvoiceCreated, new { i })).ToString());
        await WaitForDeliveriesAsync(key, endpointId, d => d.Count == 3 && d.All(x => x!["status"]!.GetValue<string>() == "delivered"));

        var (_, first, _) = await SendAsync(HttpMethod.Get, $"/v1/webhook-endpoints/{endpointId}/deliveries?limit=2", key);
        var cursor = first!["nextCursor"]!.GetValue<string>();
        var (_, second, _) = await SendAsync(HttpMethod.Get, $"/v1/webhook-endpoints/{endpointId}/deliveries?limit=2&cursor={cursor}", key);

        var seen = first["data"]!.AsArray().Concat(second!["data"]!.AsArray()).Select(d => d!["eventId"]!.GetValue<string>());
        Assert.Equal(Enumerable.Reverse(events), seen);
        Assert.Null(second["nextCursor"]);
    }

    [Fact]
    public async Task CreateEndpoint_SameIdempotencyKeyTwice_OneEndpointAndTheSecretOnlyInTheFirstAnswer()
    {
        var (_, key) = await CreateTenantAsync();
        var idempotencyKey = Guid.NewGuid().ToString();
        var json = """{"url":"https://example.com/once"}""";

        var first = await SendAsync(HttpMethod.Post, "/v1/webhook-endpoints", key, json, idempotencyKey);
        var second = await SendAsync(HttpMethod.Post, "/v1/webhook-endpoints", key, json, idempotencyKey);

        Assert.Equal((HttpStatusCode.Created, HttpStatusCode.Created), (first.Status, second.Status));
        Assert.Equal(first.Body!["id"]!.GetValue<string>(), second.Body!["id"]!.GetValue<string>());
        Assert.NotNull(first.Body["secret"]);
        Assert.Null(second.Body["secret"]);
        Assert.True(second.Response.Headers.Contains("Idempotent-Replayed"));
        var (_, list, _) = await SendAsync(HttpMethod.Get, "/v1/webhook-endpoints", key);
        Assert.Single(list!["data"]!.AsArray());
    }
}
