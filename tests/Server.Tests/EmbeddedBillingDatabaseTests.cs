using System.Net;
using System.Net.Http.Headers;
using System.Text;
using AlphaMesh.Server.Tests.Support;

namespace AlphaMesh.Server.Tests;

public sealed class EmbeddedBillingDatabaseTests
{
    [Fact]
    public async Task Start_NoBillingConnectionString_RunsItsOwnPostgresUntilStopped()
    {
        await using var server = await InProcessServer.StartAsync(s => s.BillingConnectionString = "");
        var cluster = Path.Combine(server.Settings.DataDirectory, "postgres");
        using var http = new HttpClient { BaseAddress = server.Settings.RestAddress };
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/tenants")
        {
            Content = new StringContent("""{"id":"embedded","name":"Embedded"}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", ServerSettings.IngestKey);

        using var response = await http.SendAsync(request);

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        Assert.True(File.Exists(Path.Combine(cluster, "postmaster.pid")));
        await server.StopAsync();
        // Stopping the server stopped its cluster (a fast shutdown removes the pid file).
        Assert.False(File.Exists(Path.Combine(cluster, "postmaster.pid")));
    }
}
