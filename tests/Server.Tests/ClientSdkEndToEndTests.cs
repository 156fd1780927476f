using AlphaMesh.Client;
using AlphaMesh.Server.Tests.Support;

namespace AlphaMesh.Server.Tests;

/// <summary>The client SDK against the real server: what it tracks is what the log holds.</summary>
public sealed class ClientSdkEndToEndTests
{
    [Fact]
    public async Task TrackAsync_ManyEventsFromSeveralThreads_EveryEventLoggedOnce()
    {
        await using var server = await InProcessServer.StartAsync();
        var tracked = new System.Collections.Concurrent.ConcurrentBag<(string Id, string Customer)>();
        await using (var client = new UsageClient(new UsageClientOptions
        {
            Endpoint = server.Settings.GrpcAddress,
            ApiKey = ServerSettings.IngestKey,
            MaxBatchEvents = 500,
        }))
        {
            await Task.WhenAll(Enumerable.Range(0, 4).Select(t => Task.Run(async () =>
            {
                var tasks = new List<Task>();
                for (int i = 0; i < 5_000; i++)
                {
                    var id = $"t{t}-{i}";
                    var customer = $"cust-{i % 17}";
                    tracked.Add((id, customer));
                    tasks.Add(client.TrackAsync("api_call", customer, [new("tokens", "0.1")], id: id));
                }
                await Task.WhenAll(tasks);
            })));
            Assert.Equal(20_000, client.Counters.EventsAcknowledged);
            Assert.Equal(0, client.Counters.EventsRejected);
        }

        var logged = await server.StopAndReadLogAsync();
        Assert.Equal(tracked.OrderBy(e => e.Id, StringComparer.Ordinal), logged.Select(e => (e.Id, e.Customer)).OrderBy(e => e.Id, StringComparer.Ordinal));
    }

    [Fact]
    public async Task TrackAsync_InvalidEvent_FaultsWithTheServersCode()
    {
        await using var server = await InProcessServer.StartAsync();
        await using var client = new UsageClient(new UsageClientOptions { Endpoint = server.Settings.GrpcAddress, ApiKey = ServerSettings.IngestKey });

        var good = client.TrackAsync("api_call", "c1", [new("tokens", "3")]);
        var bad = client.TrackAsync("api_call", "c1", [new("tokens", "1e400")]);

        await good;
        var error = await Assert.ThrowsAsync<UsageRejectedException>(() => bad);
        Assert.Equal("invalid_number", error.Code);
    }
}
