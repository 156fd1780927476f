using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using AlphaMesh.Aggregator;
using AlphaMesh.Usage.V1;
using UsageQuery = AlphaMesh.Usage.V1.UsageQuery;
using Grpc.Net.Client;
using Microsoft.Extensions.DependencyInjection;

namespace AlphaMesh.Server.Tests.Support;

/// <summary>Both doors of a running test server's usage API: HTTP (REST port) and gRPC (gRPC port), and ingest.</summary>
internal sealed class UsageApi : IDisposable
{
    private readonly InProcessServer _server;
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(60) };

    public UsageApi(InProcessServer server)
    {
        _server = server;
        Channel = Requests.Channel(server.Settings.GrpcAddress);
        Query = new UsageQuery.UsageQueryClient(Channel);
    }

    public GrpcChannel Channel { get; }

    public UsageQuery.UsageQueryClient Query { get; }

    public void Dispose()
    {
        Channel.Dispose();
        _http.Dispose();
    }

    public async Task<HttpResponseMessage> SendAsync(HttpMethod method, string pathAndQuery, string? key, object? body = null)
    {
        using var request = new HttpRequestMessage(method, new Uri(_server.Settings.RestAddress, pathAndQuery));
        if (key is not null)
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (body is not null)
            request.Content = JsonContent.Create(body);
        return await _http.SendAsync(request);
    }

    /// <summary>GET with the read-only key: the status and the JSON body.</summary>
    public async Task<(System.Net.HttpStatusCode Status, JsonElement Body)> GetJsonAsync(string pathAndQuery, string key = ServerSettings.ReadOnlyKey)
    {
        using var response = await SendAsync(HttpMethod.Get, pathAndQuery, key);
        return (response.StatusCode, await ReadJsonAsync(response));
    }

    public static async Task<JsonElement> ReadJsonAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>Creates a meter over HTTP with the bootstrap (admin) key.</summary>
    public async Task CreateMeterAsync(object meter)
    {
        using var response = await SendAsync(HttpMethod.Post, "/v1/meters", ServerSettings.IngestKey, meter);
        Assert.True(response.StatusCode == System.Net.HttpStatusCode.Created, await response.Content.ReadAsStringAsync());
    }

    /// <summary>Ingests over gRPC in batches of <paramref name="batchSize"/>, then waits until the aggregator has applied
    /// every committed event (so that entitlement totals, read from memory, include them too).</summary>
    public async Task IngestAsync(IReadOnlyList<UsageEvent> events, int batchSize, string key = ServerSettings.IngestKey)
    {
        var client = new UsageIngest.UsageIngestClient(Channel);
        for (int i = 0; i < events.Count; i += batchSize)
        {
            var request = new IngestRequest { BatchId = $"b-{batchSize}-{i}" };
            request.Events.AddRange(events.Skip(i).Take(batchSize));
            var reply = await client.IngestAsync(request, Requests.Auth(key));
            Assert.Empty(reply.Rejected);
        }
        await _server.App.Services.GetRequiredService<IAggregator>().WaitForCommittedAsync();
    }
}
