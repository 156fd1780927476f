using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using AlphaMesh.Server.Tests.Support;

namespace AlphaMesh.Server.Tests;

public sealed class HttpIngestTests : IAsyncLifetime
{
    private InProcessServer _server = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        _server = await InProcessServer.StartAsync();
        _http = new HttpClient { BaseAddress = _server.Settings.RestAddress };
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _server.DisposeAsync();
    }

    private static string Now => DateTimeOffset.UtcNow.ToString("O");

    private Task<HttpResponseMessage> PostAsync(string body, string contentType, string? key = ServerSettings.IngestKey)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/events") { Content = new StringContent(body, Encoding.UTF8) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue(contentType);
        if (key is not null)
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return _http.SendAsync(request);
    }

    [Fact]
    public async Task Post_SingleCloudEvent_AcceptedAndLogged()
    {
        var body = $$$"""{"specversion":"1.0","id":"ce-1","source":"/api","type":"api_call","subject":"cust-7","time":"{{{Now}}}","data":{"tokens":12.5,"model":"small"}}""";

        using var response = await PostAsync(body, "application/cloudevents+json");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var reply = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal(1, reply.RootElement.GetProperty("accepted").GetInt32());
        Assert.Equal(0, reply.RootElement.GetProperty("rejected").GetArrayLength());
        var logged = Assert.Single(await _server.StopAndReadLogAsync());
        Assert.Equal(("ce-1", "cust-7", "acme"), (logged.Id, logged.Customer, logged.Tenant));
    }

    [Theory]
    [InlineData("application/cloudevents-batch+json")]
    [InlineData("application/json")]
    public async Task Post_Batch_AcceptsGoodRejectsBad(string contentType)
    {
        var body = $$$"""
            [
              {"id":"ok-0","source":"s","type":"api_call","subject":"c1","time":"{{{Now}}}","data":{"n":1}},
              {"id":"","source":"s","type":"api_call","subject":"c1","time":"{{{Now}}}"},
              {"id":"ok-2","source":"s","type":"api_call","subject":"c2","time":"{{{Now}}}","data":{"n":"2.5"}},
              {"id":"bad-3","source":"s","type":"api_call","subject":"c2","time":"{{{Now}}}","data":{"n":1e400}},
              {"id":"bad-4","source":"s","subject":"c2","time":"{{{Now}}}"},
              {"id":"bad-5","source":"s","type":"api_call","subject":"c2","time":"2001-01-01T00:00:00Z"}
            ]
            """;

        using var response = await PostAsync(body, contentType);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var reply = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal(2, reply.RootElement.GetProperty("accepted").GetInt32());
        var rejected = reply.RootElement.GetProperty("rejected").EnumerateArray()
            .Select(r => (r.GetProperty("index").GetInt32(), r.GetProperty("code").GetString())).ToArray();
        Assert.Equal([(1, "missing_id"), (3, "invalid_number"), (4, "missing_type"), (5, "time_too_old")], rejected);
        Assert.Equal(["ok-0", "ok-2"], (await _server.StopAndReadLogAsync()).Select(e => e.Id).Order().ToArray());
    }

    [Fact]
    public async Task Post_BatchAndReplyOfManyTransportBlocks_EveryEventAcceptedOrRejectedByIndex()
    {
        // About 1 MiB in and some 300 KiB out (a rejection for three events in four): both span several of the
        // transport's 64 KiB memory blocks, so the request is read by several receives and the reply sent from
        // several segments.
        var body = "[" + string.Join(",", Enumerable.Range(0, 8000).Select(i => i % 4 == 0
            ? $$$"""{"id":"big-{{{i}}}","source":"s","type":"api_call","subject":"c{{{i % 97}}}","time":"{{{Now}}}","data":{"n":{{{i}}},"pad":"{{{new string('p', 100)}}}"}}"""
            : $$$"""{"id":"big-{{{i}}}","source":"s","type":"api_call","subject":"c1","time":"2001-01-01T00:00:00Z"}""")) + "]";
        Assert.True(body.Length > 900_000);

        using var response = await PostAsync(body, "application/json");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(text.Length > 3 * 64 * 1024, $"the reply is {text.Length} bytes");
        using var reply = JsonDocument.Parse(text);
        Assert.Equal(2000, reply.RootElement.GetProperty("accepted").GetInt32());
        var rejected = reply.RootElement.GetProperty("rejected").EnumerateArray()
            .Select(r => (r.GetProperty("index").GetInt32(), r.GetProperty("code").GetString())).ToArray();
        Assert.Equal(Enumerable.Range(0, 8000).Where(i => i % 4 != 0).Select(i => (i, (string?)"time_too_old")), rejected);
        var logged = (await _server.StopAndReadLogAsync()).Select(e => e.Id).Order(StringComparer.Ordinal);
        Assert.Equal(Enumerable.Range(0, 2000).Select(k => $"big-{4 * k}").Order(StringComparer.Ordinal), logged);
    }

    [Fact]
    public async Task Post_NoKey_Unauthorized()
    {
        using var response = await PostAsync("[]", "application/json", key: null);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
    }

    [Fact]
    public async Task Post_WrongKey_Unauthorized()
    {
        using var response = await PostAsync("[]", "application/json", key: "amk_wrong");
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
    }

    [Fact]
    public async Task Post_ReadOnlyKey_Forbidden()
    {
        using var response = await PostAsync("[]", "application/json", key: ServerSettings.ReadOnlyKey);
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
    }

    [Theory]
    [InlineData("{not json")]
    [InlineData("[1,2,3]")]
    [InlineData("\"just a string\"")]
    [InlineData("[{\"id\":5,\"type\":\"t\",\"subject\":\"c\"}]")]
    public async Task Post_MalformedJson_BadRequestWithReasonAndNothingLogged(string body)
    {
        using var response = await PostAsync(body, "application/json");

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        using var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("invalid_argument", error.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.False(string.IsNullOrWhiteSpace(error.RootElement.GetProperty("error").GetProperty("message").GetString()));
        Assert.Empty(await _server.StopAndReadLogAsync());
    }

    [Fact]
    public async Task Post_RandomBytes_OnlyControlledRejections()
    {
        var random = new Random(7);
        var valid = Encoding.UTF8.GetBytes($$$"""[{"id":"x","source":"s","type":"t","subject":"c","time":"{{{Now}}}","data":{"a":1}}]""");
        for (int i = 0; i < 200; i++)
        {
            var bytes = (byte[])valid.Clone();
            for (int m = 0; m < 3; m++)
                bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
            var request = new HttpRequestMessage(HttpMethod.Post, "/v1/events") { Content = new ByteArrayContent(bytes) };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", ServerSettings.IngestKey);
            using var response = await _http.SendAsync(request);
            Assert.True(response.StatusCode is HttpStatusCode.OK or HttpStatusCode.BadRequest, $"status {response.StatusCode} for mutation {i}");
        }
    }

    [Fact]
    public async Task Post_OverTheByteLimit_BadRequest()
    {
        var body = "[" + string.Join(",", Enumerable.Range(0, 5000).Select(i =>
            $$$"""{"id":"h{{{i}}}","type":"t","subject":"c","data":{"blob":"{{{new string('b', 1000)}}}"}}""")) + "]";

        using var response = await PostAsync(body, "application/json");

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("limit", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Empty(await _server.StopAndReadLogAsync());
    }

    [Fact]
    public async Task Post_UnsupportedMediaType_415()
    {
        using var response = await PostAsync("id=1", "application/x-www-form-urlencoded");
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
    }
}
