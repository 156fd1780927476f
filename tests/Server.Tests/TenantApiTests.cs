using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using AlphaMesh.Server.Tests.Support;

namespace AlphaMesh.Server.Tests;

/// <summary>One database and one real server (in process) for the class; each test makes tenants of its own.</summary>
public sealed class TenantApiFixture : DatabaseServerFixture;

public sealed class TenantApiTests(TenantApiFixture fixture) : IClassFixture<TenantApiFixture>, IDisposable
{
    /// <summary>The bootstrap key of the test settings: tenant acme, the operator, all scopes.</summary>
    private const string OperatorKey = ServerSettings.IngestKey;

    private readonly HttpClient _http = new() { BaseAddress = fixture.Server.Settings.RestAddress };

    public void Dispose() => _http.Dispose();

    private static string NewId(string prefix = "t") => prefix + "-" + Guid.NewGuid().ToString("N")[..12];

    private async Task<(HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response)> SendAsync(HttpMethod method, string path, string? key,
        string? json = null, string? idempotencyKey = null, HttpClient? client = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (key is not null)
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (json is not null)
            request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        if (idempotencyKey is not null)
            request.Headers.Add("Idempotency-Key", idempotencyKey);
        var response = await (client ?? _http).SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? null : JsonNode.Parse(text), response);
    }

    private Task<(HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response)> PostAsync(string path, string? key, string json, string? idempotencyKey = null)
        => SendAsync(HttpMethod.Post, path, key, json, idempotencyKey);

    private async Task<string> CreateTenantAsync()
    {
        var id = NewId();
        var (status, body, _) = await PostAsync("/v1/tenants", OperatorKey, $$"""{"id":"{{id}}","name":"Tenant {{id}}"}""");
        Assert.True(status == HttpStatusCode.Created, body?.ToJsonString());
        return id;
    }

    private async Task<(string Id, string Key)> IssueKeyAsync(string tenant, string scopes = "\"ingest\",\"read\"", string callerKey = OperatorKey)
    {
        var (status, body, _) = await PostAsync($"/v1/tenants/{tenant}/api-keys", callerKey, $$"""{"name":"test","scopes":[{{scopes}}]}""");
        Assert.True(status == HttpStatusCode.Created, body?.ToJsonString());
        return (body!["id"]!.GetValue<string>(), body["key"]!.GetValue<string>());
    }

    private async Task<HttpStatusCode> IngestAsync(string key, HttpClient? client = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/events")
        {
            Content = new StringContent($$"""{"specversion":"1.0","id":"{{Guid.NewGuid()}}","source":"/t","type":"api_call","subject":"c1"}""",
                Encoding.UTF8, "application/cloudevents+json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var response = await (client ?? _http).SendAsync(request);
        return response.StatusCode;
    }

    private static void AssertError(HttpStatusCode expected, string code, (HttpStatusCode Status, JsonNode? Body, HttpResponseMessage _) actual, string? field = null)
    {
        Assert.True(expected == actual.Status, $"expected {expected}, got {actual.Status}: {actual.Body?.ToJsonString()}");
        Assert.Equal("application/problem+json", actual._.Content.Headers.ContentType?.MediaType);
        Assert.Equal(code, actual.Body?["code"]?.GetValue<string>());
        Assert.Equal((int)expected, actual.Body?["status"]?.GetValue<int>());
        Assert.False(string.IsNullOrEmpty(actual.Body?["title"]?.GetValue<string>()));
        Assert.False(string.IsNullOrEmpty(actual.Body?["detail"]?.GetValue<string>()));
        if (field is not null)
            Assert.Equal(field, actual.Body?["field"]?.GetValue<string>());
    }

    [Fact]
    public async Task CreateTenant_OperatorKey_Returns201WithTheTenant()
    {
        var id = NewId();

        var (status, body, _) = await PostAsync("/v1/tenants", OperatorKey, $$"""{"id":"{{id}}","name":"LogiTrack"}""");

        Assert.Equal(HttpStatusCode.Created, status);
        Assert.Equal(id, body!["id"]!.GetValue<string>());
        Assert.Equal("LogiTrack", body["name"]!.GetValue<string>());
        var createdAt = body["createdAt"]!.GetValue<string>();
        Assert.EndsWith("Z", createdAt, StringComparison.Ordinal);
        Assert.True(DateTimeOffset.UtcNow - DateTimeOffset.Parse(createdAt, System.Globalization.CultureInfo.InvariantCulture) < TimeSpan.FromMinutes(1));
        var (getStatus, got, _) = await SendAsync(HttpMethod.Get, $"/v1/tenants/{id}", OperatorKey);
        Assert.Equal((HttpStatusCode.OK, "LogiTrack"), (getStatus, got!["name"]!.GetValue<string>()));
    }

    [Fact]
    public async Task CreateTenant_ExistingId_Returns409AlreadyExists()
    {
        var id = await CreateTenantAsync();

        AssertError(HttpStatusCode.Conflict, "already_exists", await PostAsync("/v1/tenants", OperatorKey, $$"""{"id":"{{id}}","name":"Again"}"""), "id");
    }

    public static TheoryData<string, string?> BadTenantBodies => new()
    {
        { """{"id":"","name":"x"}""", "id" },
        { """{"name":"x"}""", "id" },
        { """{"id":"Has Space","name":"x"}""", "id" },
        { """{"id":"-leading","name":"x"}""", "id" },
        { $$"""{"id":"{{new string('a', 65)}}","name":"x"}""", "id" },
        { """{"id":"ok-1","name":"   "}""", "name" },
        { $$"""{"id":"ok-1","name":"{{new string('n', 201)}}"}""", "name" },
        { """{"id":5,"name":"x"}""", "id" },
        { """{"id":"ok-1","name":"x","plan":"pro"}""", null },
        { """{"id":"ok-1",""", null },
        { "[]", null },
        { "", null },
    };

    [Theory]
    [MemberData(nameof(BadTenantBodies))]
    public async Task CreateTenant_BadBody_Returns400NamingTheFault(string json, string? field)
    {
        var result = await PostAsync("/v1/tenants", OperatorKey, json);

        AssertError(HttpStatusCode.BadRequest, "invalid_argument", result, field);
    }

    [Fact]
    public async Task CreateTenant_UnknownField_Returns400NamingIt()
    {
        var (_, body, _) = await PostAsync("/v1/tenants", OperatorKey, """{"id":"ok-2","name":"x","plan":"pro"}""");

        Assert.Contains("plan", body!["detail"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task CreateTenant_WithoutKeyOrWithoutAdminScope_Returns401Or403()
    {
        var json = $$"""{"id":"{{NewId()}}","name":"x"}""";

        AssertError(HttpStatusCode.Unauthorized, "unauthenticated", await PostAsync("/v1/tenants", null, json));
        AssertError(HttpStatusCode.Unauthorized, "unauthenticated", await PostAsync("/v1/tenants", "amk_not_a_key", json));
        AssertError(HttpStatusCode.Forbidden, "permission_denied", await PostAsync("/v1/tenants", ServerSettings.ReadOnlyKey, json));
    }

    [Fact]
    public async Task CreateTenant_AdminKeyOfAnotherTenant_Returns403()
    {
        var tenant = await CreateTenantAsync();
        var (_, admin) = await IssueKeyAsync(tenant, "\"admin\"");

        AssertError(HttpStatusCode.Forbidden, "permission_denied", await PostAsync("/v1/tenants", admin, $$"""{"id":"{{NewId()}}","name":"x"}"""));
    }

    [Fact]
    public async Task IssueKey_NewTenant_KeyIsShownOnceAndIngestsForThatTenant()
    {
        var tenant = await CreateTenantAsync();

        var (status, body, _) = await PostAsync($"/v1/tenants/{tenant}/api-keys", OperatorKey, """{"name":"backend","scopes":["ingest"]}""");

        Assert.Equal(HttpStatusCode.Created, status);
        var key = body!["key"]!.GetValue<string>();
        Assert.StartsWith("amk_", key, StringComparison.Ordinal);
        Assert.Equal(key[..8], body["prefix"]!.GetValue<string>());
        Assert.Equal(["ingest"], body["scopes"]!.AsArray().Select(s => s!.GetValue<string>()));
        Assert.Null(body["revokedAt"]);
        Assert.Equal(HttpStatusCode.OK, await IngestAsync(key));
        var (_, list, _) = await SendAsync(HttpMethod.Get, $"/v1/tenants/{tenant}/api-keys", OperatorKey);
        var listed = Assert.Single(list!["data"]!.AsArray())!;
        Assert.Equal(key[..8], listed["prefix"]!.GetValue<string>());
        Assert.Null(listed["key"]);
        Assert.DoesNotContain(key, list.ToJsonString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task IssueKey_ReadOnlyScope_CannotIngest()
    {
        var tenant = await CreateTenantAsync();
        var (_, key) = await IssueKeyAsync(tenant, "\"read\"");

        Assert.Equal(HttpStatusCode.Forbidden, await IngestAsync(key));
    }

    [Theory]
    [InlineData("""{"name":"x","scopes":[]}""", "scopes")]
    [InlineData("""{"name":"x"}""", "scopes")]
    [InlineData("""{"name":"x","scopes":["ingest","write"]}""", "scopes")]
    [InlineData("""{"name":"","scopes":["read"]}""", "name")]
    [InlineData("""{"name":"x","scopes":"read"}""", "scopes")]
    public async Task IssueKey_BadBody_Returns400NamingTheField(string json, string field)
    {
        var tenant = await CreateTenantAsync();

        AssertError(HttpStatusCode.BadRequest, "invalid_argument", await PostAsync($"/v1/tenants/{tenant}/api-keys", OperatorKey, json), field);
    }

    [Fact]
    public async Task TenantEndpoints_AnotherTenantsAdminKey_Return404LikeAnUnknownTenant()
    {
        var mine = await CreateTenantAsync();
        var theirs = await CreateTenantAsync();
        var (_, admin) = await IssueKeyAsync(mine, "\"admin\"");
        var (theirKeyId, _) = await IssueKeyAsync(theirs);

        foreach (var tenant in new[] { theirs, "no-such-tenant" })
        {
            AssertError(HttpStatusCode.NotFound, "not_found", await SendAsync(HttpMethod.Get, $"/v1/tenants/{tenant}", admin));
            AssertError(HttpStatusCode.NotFound, "not_found", await SendAsync(HttpMethod.Get, $"/v1/tenants/{tenant}/api-keys", admin));
            AssertError(HttpStatusCode.NotFound, "not_found", await PostAsync($"/v1/tenants/{tenant}/api-keys", admin, """{"scopes":["read"]}"""));
            AssertError(HttpStatusCode.NotFound, "not_found", await SendAsync(HttpMethod.Delete, $"/v1/tenants/{tenant}/api-keys/{theirKeyId}", admin));
        }
        // Its own tenant works, and lists only itself.
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, $"/v1/tenants/{mine}/api-keys", admin)).Status);
        var (_, tenants, _) = await SendAsync(HttpMethod.Get, "/v1/tenants", admin);
        Assert.Equal([mine], tenants!["data"]!.AsArray().Select(t => t!["id"]!.GetValue<string>()));
    }

    [Fact]
    public async Task ListKeys_PagesOfTwo_WalkEveryKeyOnceInCreationOrder()
    {
        var tenant = await CreateTenantAsync();
        var issued = new List<string>();
        for (int i = 0; i < 5; i++)
            issued.Add((await IssueKeyAsync(tenant)).Id);

        var (seen, pages) = await Paging.ReadAllAsync($"/v1/tenants/{tenant}/api-keys?limit=2", async path =>
        {
            var (status, body, _) = await SendAsync(HttpMethod.Get, path, OperatorKey);
            return (status, body);
        });

        Assert.Equal(issued, seen);
        Assert.Equal(3, pages);
    }

    [Theory]
    [InlineData("limit=0", "limit")]
    [InlineData("limit=101", "limit")]
    [InlineData("limit=ten", "limit")]
    [InlineData("cursor=%21%21", "cursor")]
    [InlineData("cursor=bm90LWEtZ3VpZA", "cursor")]
    [InlineData("page=2", "page")]
    public async Task ListKeys_BadPaging_Returns400NamingTheParameter(string query, string field)
    {
        AssertError(HttpStatusCode.BadRequest, "invalid_argument", await SendAsync(HttpMethod.Get, $"/v1/tenants/acme/api-keys?{query}", OperatorKey), field);
    }

    [Fact]
    public async Task RevokeKey_UnknownOrMalformedId_Returns404()
    {
        var tenant = await CreateTenantAsync();

        AssertError(HttpStatusCode.NotFound, "not_found", await SendAsync(HttpMethod.Delete, $"/v1/tenants/{tenant}/api-keys/{Guid.NewGuid()}", OperatorKey));
        AssertError(HttpStatusCode.NotFound, "not_found", await SendAsync(HttpMethod.Delete, $"/v1/tenants/{tenant}/api-keys/not-an-id", OperatorKey));
    }

    /// <summary>Two servers on one database: the key is revoked through the first; the second, which learns of it only by
    /// polling the database, rejects it within 5 s. Polled, not slept.</summary>
    [Fact]
    public async Task RevokeKey_ThroughOneServer_RejectedOnIngestOfBothWithin5s()
    {
        await using var other = await fixture.StartServerAsync();
        using var otherHttp = new HttpClient { BaseAddress = other.Settings.RestAddress };
        var tenant = await CreateTenantAsync();
        var (id, key) = await IssueKeyAsync(tenant);
        Assert.Equal(HttpStatusCode.OK, await IngestAsync(key));
        var started = DateTime.UtcNow;
        while (await IngestAsync(key, otherHttp) != HttpStatusCode.OK)
        {
            Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(5), "the other server did not take the new key within 5 s");
            await Task.Delay(50);
        }

        var (status, revoked, _) = await SendAsync(HttpMethod.Delete, $"/v1/tenants/{tenant}/api-keys/{id}", OperatorKey);
        var revokedAt = DateTime.UtcNow;

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.NotNull(revoked!["revokedAt"]?.GetValue<string>());
        Assert.Equal(HttpStatusCode.Unauthorized, await IngestAsync(key));
        HttpStatusCode onOther;
        while ((onOther = await IngestAsync(key, otherHttp)) != HttpStatusCode.Unauthorized && DateTime.UtcNow - revokedAt < TimeSpan.FromSeconds(5))
            await Task.Delay(50);
        Assert.Equal(HttpStatusCode.Unauthorized, onOther);
        // Revoking again is not an error and keeps the first time.
        var (againStatus, again, _) = await SendAsync(HttpMethod.Delete, $"/v1/tenants/{tenant}/api-keys/{id}", OperatorKey);
        Assert.Equal((HttpStatusCode.OK, revoked["revokedAt"]!.GetValue<string>()), (againStatus, again!["revokedAt"]!.GetValue<string>()));
    }

    [Fact]
    public async Task Post_SameIdempotencyKeyAndBody_ReplaysTheFirstResponse()
    {
        var idempotencyKey = Guid.NewGuid().ToString();
        var json = $$"""{"id":"{{NewId()}}","name":"Once"}""";

        var first = await PostAsync("/v1/tenants", OperatorKey, json, idempotencyKey);
        var second = await PostAsync("/v1/tenants", OperatorKey, json, idempotencyKey);

        Assert.Equal(HttpStatusCode.Created, first.Status);
        Assert.Equal(HttpStatusCode.Created, second.Status);
        Assert.Equal(first.Body!.ToJsonString(), second.Body!.ToJsonString());
        Assert.True(second.Response.Headers.Contains("Idempotent-Replayed"));
        Assert.False(first.Response.Headers.Contains("Idempotent-Replayed"));
    }

    [Fact]
    public async Task Post_SameIdempotencyKeyOtherBody_Returns409()
    {
        var idempotencyKey = Guid.NewGuid().ToString();
        await PostAsync("/v1/tenants", OperatorKey, $$"""{"id":"{{NewId()}}","name":"First"}""", idempotencyKey);

        var result = await PostAsync("/v1/tenants", OperatorKey, $$"""{"id":"{{NewId()}}","name":"Second"}""", idempotencyKey);

        AssertError(HttpStatusCode.Conflict, "idempotency_key_reused", result, "Idempotency-Key");
    }

    [Fact]
    public async Task Post_IdempotencyKeyPastItsRetention_IsTreatedAsNew()
    {
        var idempotencyKey = Guid.NewGuid().ToString();
        await PostAsync("/v1/tenants", OperatorKey, $$"""{"id":"{{NewId()}}","name":"Long ago"}""", idempotencyKey);
        await using (var connection = new Npgsql.NpgsqlConnection(fixture.Database.ConnectionString))
        {
            await connection.OpenAsync();
            await using var age = new Npgsql.NpgsqlCommand($"UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = '{idempotencyKey}'", connection);
            Assert.Equal(1, await age.ExecuteNonQueryAsync());
        }

        var (status, _, response) = await PostAsync("/v1/tenants", OperatorKey, $$"""{"id":"{{NewId()}}","name":"Today"}""", idempotencyKey);

        Assert.Equal(HttpStatusCode.Created, status);
        Assert.False(response.Headers.Contains("Idempotent-Replayed"));
    }

    [Fact]
    public async Task IssueKey_SameIdempotencyKeyFiveAtOnce_OneKeyAndTheSecretOnlyInTheFirstAnswer()
    {
        var tenant = await CreateTenantAsync();
        var idempotencyKey = Guid.NewGuid().ToString();
        var json = """{"name":"retried","scopes":["ingest"]}""";

        var results = await Task.WhenAll(Enumerable.Range(0, 5).Select(_ => PostAsync($"/v1/tenants/{tenant}/api-keys", OperatorKey, json, idempotencyKey)));

        Assert.All(results, r => Assert.Equal(HttpStatusCode.Created, r.Status));
        Assert.Single(results.Select(r => r.Body!["id"]!.GetValue<string>()).Distinct());
        // The secret is never stored, so only the request that made the key shows it.
        Assert.Single(results, r => r.Body!["key"] is not null);
        var (_, list, _) = await SendAsync(HttpMethod.Get, $"/v1/tenants/{tenant}/api-keys", OperatorKey);
        Assert.Single(list!["data"]!.AsArray());
    }

    [Theory]
    [InlineData("")]
    [InlineData("key\twith-a-tab")]
    public async Task Post_BadIdempotencyKey_Returns400(string idempotencyKey)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/tenants")
        {
            Content = new StringContent($$"""{"id":"{{NewId()}}","name":"x"}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", OperatorKey);
        request.Headers.TryAddWithoutValidation("Idempotency-Key", idempotencyKey);
        using var response = await _http.SendAsync(request);
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync());

        AssertError(HttpStatusCode.BadRequest, "invalid_argument", (response.StatusCode, body, response), "Idempotency-Key");
    }

    [Fact]
    public async Task Post_LongIdempotencyKey_Returns400()
    {
        AssertError(HttpStatusCode.BadRequest, "invalid_argument",
            await PostAsync("/v1/tenants", OperatorKey, $$"""{"id":"{{NewId()}}","name":"x"}""", new string('k', 256)), "Idempotency-Key");
    }
}
