using System.Globalization;
using System.Net;
using AlphaMesh.Server.Tests.Support;
using AlphaMesh.Usage.V1;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace AlphaMesh.Server.Tests;

/// <summary>
/// A partition's loop stopped by a real fault, on a real in-process server: its timed checkpoint cannot write its
/// state file (a directory sits at the file's path; running as root, permissions would not stop the write). In the
/// metrics collection: it scrapes <c>/metrics</c>, which a second server in the process would add to.
/// </summary>
[Collection(MetricsCollection.Name)]
public sealed class StoppedPartitionTests
{
    [Fact]
    public async Task CheckpointFails_MetricsHealthAndUsage_ReportTheStoppedPartitionsAndRestartCountsEveryEvent()
    {
        using var data = new TempDirectory();
        void Configure(ServerSettings settings) => settings.Extra["AlphaMesh:Aggregator:CheckpointInterval"] = "00:00:00.200";
        var log = new ListLogger();
        var server = await InProcessServer.StartAsync(Configure, services => services.AddSingleton<ILoggerProvider>(new ListLoggerProvider(log)),
            dataDirectory: data.Path);
        var events = Enumerable.Range(0, 40).Select(i => Requests.Event($"e{i}", customer: $"cust-{i % 8}")).ToList();
        var blockers = new List<string>();
        try
        {
            using (var api = new UsageApi(server))
            {
                await api.CreateMeterAsync(new { key = "calls", eventType = "api_call", aggregation = "COUNT" });
                // Each partition checkpoints once after its start; with nothing applied since, its next checkpoint
                // writes the state file numbered one past the last its manifest names.
                foreach (string partition in Directory.EnumerateDirectories(Path.Combine(data.Path, "aggregator"), "p*"))
                {
                    string manifest = Path.Combine(partition, "checkpoint.manifest");
                    for (int wait = 0; wait < 200 && !File.Exists(manifest); wait++)
                        await Task.Delay(50);
                    string last = File.ReadAllLines(manifest).Single(line => line.StartsWith("state=", StringComparison.Ordinal))
                        ["state=".Length..].Split(' ').Last();
                    long number = long.Parse(last["state-".Length..^".bin".Length], CultureInfo.InvariantCulture);
                    string blocker = Path.Combine(partition, $"state-{number + 1:D10}.bin");
                    Directory.CreateDirectory(blocker);
                    blockers.Add(blocker);
                }
                Assert.Equal(2, blockers.Count);
                var reply = await new UsageIngest.UsageIngestClient(api.Channel).IngestAsync(
                    new IngestRequest { BatchId = "b1", Events = { events } }, Requests.Auth(ServerSettings.IngestKey));
                Assert.Empty(reply.Rejected);

                using var http = new HttpClient { BaseAddress = server.Settings.RestAddress };
                HttpStatusCode health = HttpStatusCode.OK;
                for (int wait = 0; wait < 200 && health != HttpStatusCode.ServiceUnavailable; wait++)
                {
                    await Task.Delay(50);
                    using var response = await http.GetAsync("/healthz");
                    health = response.StatusCode;
                }
                Assert.Equal(HttpStatusCode.ServiceUnavailable, health);

                // Both partitions got events (8 customers), so both stop at their first timed checkpoint.
                var stopped = new Dictionary<string, double>();
                for (int wait = 0; wait < 200; wait++)
                {
                    using var scrape = await api.SendAsync(HttpMethod.Get, "/metrics", ServerSettings.IngestKey);
                    var metrics = MetricsEndpointTests.PrometheusText.Parse(await scrape.Content.ReadAsStringAsync());
                    foreach (string p in new[] { "0", "1" })
                        stopped[p] = metrics.Sample("alphamesh_aggregator_stopped", ("partition", p));
                    if (stopped.Values.All(v => v == 1))
                        break;
                    await Task.Delay(50);
                }
                Assert.Equal(1, stopped["0"]);
                Assert.Equal(1, stopped["1"]);
                var (status, body) = await api.GetJsonAsync("/v1/meters/calls/usage?windowSize=DAY&from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z");
                Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
                Assert.Equal("unavailable", body.GetProperty("error").GetProperty("code").GetString());
                Assert.Contains("stopped", body.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
                var grpc = await Assert.ThrowsAsync<Grpc.Core.RpcException>(async () => await api.Query.GetUsageAsync(new GetUsageRequest
                {
                    Meter = "calls",
                    From = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)),
                    To = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(new DateTimeOffset(2027, 1, 1, 0, 0, 0, TimeSpan.Zero)),
                }, Requests.Auth(ServerSettings.ReadOnlyKey)));
                Assert.Equal(Grpc.Core.StatusCode.Unavailable, grpc.StatusCode);

                // And the log says so, once per partition, with the reason (the state file that could not be written).
                // The logger looks once a second, and the partitions stop at different moments: wait for both lines.
                static bool LoggedBoth(string text) => text.Contains("partition 0 stopped", StringComparison.Ordinal)
                    && text.Contains("partition 1 stopped", StringComparison.Ordinal);
                for (int wait = 0; wait < 200 && !LoggedBoth(log.Text); wait++)
                    await Task.Delay(50);
                foreach (string partition in new[] { "0", "1" })
                {
                    // (The health check's own log line quotes the failure too; this is the server's.)
                    var lines = log.Text.Split('\n').Where(line => line.Contains($"The aggregator of partition {partition} stopped: ", StringComparison.Ordinal)
                        && line.Contains("until the server is restarted", StringComparison.Ordinal)).ToList();
                    Assert.Single(lines);
                    Assert.Contains("state-", lines[0], StringComparison.Ordinal);
                }
            }
            // Shutting down with stopped partitions is clean (they do not throw their failure again).
            await server.DisposeAsync();

            // The fault mended, a restart replays the log: every acknowledged event counted once.
            foreach (string blocker in blockers)
                Directory.Delete(blocker);
            server = await InProcessServer.StartAsync(Configure, dataDirectory: data.Path);
            using (var api = new UsageApi(server))
            {
                var (status, body) = await api.GetJsonAsync("/v1/meters/calls/usage?windowSize=MONTH&from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z");
                Assert.Equal(HttpStatusCode.OK, status);
                decimal counted = body.GetProperty("data").EnumerateArray()
                    .Sum(row => decimal.Parse(row.GetProperty("value").GetString()!, CultureInfo.InvariantCulture));
                Assert.Equal(events.Count, counted);
            }
        }
        finally
        {
            await server.DisposeAsync();
        }
    }
}
