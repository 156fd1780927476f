using System.Net;
using System.Net.Http.Headers;
using System.Text;
using AlphaMesh.Server.Tests.Support;
using AlphaMesh.Usage.V1;
using Grpc.Core;

namespace AlphaMesh.Server.Tests;

/// <summary>The server as a separate process: killed, signalled, restarted.</summary>
public sealed class ProcessLifecycleTests : IDisposable
{
    private const int Sigkill = 9;
    private const int Sigterm = 15;
    private readonly TempDirectory _data = new();

    public void Dispose() => _data.Dispose();

    [Fact]
    public async Task Sigkill_MidStream_RestartFindsEveryAcknowledgedEvent()
    {
        var settings = new ServerSettings(_data.Path);
        var acknowledged = new HashSet<string>();
        using (var server = await ServerProcess.StartAsync(settings))
        {
            var streaming = StreamUntilFailureAsync(settings, "k", acknowledged, killAfterReplies: 30, kill: () => server.Signal(Sigkill));
            await streaming;
            Assert.NotNull(await server.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        }
        Assert.True(acknowledged.Count >= 30 * 200, $"only {acknowledged.Count} events were acknowledged before the kill");

        // The restarted server recovers the log and keeps appending after it.
        using (var server = await ServerProcess.StartAsync(settings))
        {
            using var channel = Requests.Channel(settings.GrpcAddress);
            var reply = await new UsageIngest.UsageIngestClient(channel)
                .IngestAsync(Requests.Batch("after-restart", 100, "after"), Requests.Auth(ServerSettings.IngestKey));
            Assert.Equal(100, reply.Accepted);
            server.Signal(Sigterm);
            Assert.Equal(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        }

        var logged = await Requests.ReadLogAsync(_data.Path);
        var loggedIds = logged.Select(e => e.Id).ToHashSet();
        AssertAllLogged(acknowledged, loggedIds);
        Assert.Equal(100, logged.Count(e => e.Id.StartsWith("after-", StringComparison.Ordinal)));
        // Nothing was sent twice, so nothing may be logged twice (a torn tail re-read would show as duplicates or garbage).
        Assert.Equal(logged.Count, loggedIds.Count);
    }

    [Fact]
    public async Task Sigterm_WhileStreaming_AcknowledgesInFlightBatchesAndExitsZero()
    {
        var settings = new ServerSettings(_data.Path);
        var acknowledged = new HashSet<string>();
        using var server = await ServerProcess.StartAsync(settings);

        var stopwatch = System.Diagnostics.Stopwatch.StartNew();
        var failure = await StreamUntilFailureAsync(settings, "t", acknowledged, killAfterReplies: 20, kill: () =>
        {
            stopwatch.Restart();
            server.Signal(Sigterm);
        });
        var exitCode = await server.WaitForExitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(0, exitCode);
        var loggedIds = (await Requests.ReadLogAsync(_data.Path)).Select(e => e.Id).ToHashSet();
        AssertAllLogged(acknowledged, loggedIds);
        // Drained: every batch the server took into its log was acknowledged before the stream ended.
        var unacknowledged = loggedIds.Where(id => !acknowledged.Contains(id)).ToList();
        Assert.True(unacknowledged.Count == 0,
            $"{unacknowledged.Count} logged events got no reply (e.g. {string.Join(", ", unacknowledged.Take(3))}); the stream ended with {failure?.StatusCode}: {failure?.Status.Detail}");
        // The stream ends with a status the SDK resends on: UNAVAILABLE from the server, or, when the client was
        // still sending as the server closed the connection gracefully (GOAWAY, NO_ERROR), the client's own
        // INTERNAL for that close; which one the client sees is a race inside HTTP/2. Both are resent.
        bool gracefulClose = failure is { StatusCode: StatusCode.Internal } && failure.Status.Detail.Contains("NO_ERROR", StringComparison.Ordinal);
        Assert.True(failure is null || failure.StatusCode is StatusCode.Unavailable or StatusCode.OK || gracefulClose,
            $"the stream ended with {failure?.StatusCode}: {failure?.Status.Detail}\n{server.Output}");
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task FirstStart_NoKeyConfigured_CreatesOwnerOnlyKeyFileThatWorks()
    {
        var settings = new ServerSettings(_data.Path) { WithKeys = false };
        using var server = await ServerProcess.StartAsync(settings);

        var keyFile = Path.Combine(_data.Path, "bootstrap-api-key");
        Assert.True(File.Exists(keyFile));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(keyFile));
        var key = (await File.ReadAllTextAsync(keyFile)).Trim();
        Assert.StartsWith("amk_", key, StringComparison.Ordinal);
        Assert.DoesNotContain(key, server.Output, StringComparison.Ordinal);
        Assert.DoesNotContain(key, await File.ReadAllTextAsync(Path.Combine(_data.Path, "api-keys.json")), StringComparison.Ordinal);

        using var http = new HttpClient { BaseAddress = settings.RestAddress };
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/events")
        {
            Content = new StringContent("""{"id":"k1","source":"s","type":"t","subject":"c"}""", Encoding.UTF8, "application/cloudevents+json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    private static void AssertAllLogged(HashSet<string> acknowledged, HashSet<string> loggedIds)
    {
        var missing = acknowledged.Where(id => !loggedIds.Contains(id)).ToList();
        Assert.True(missing.Count == 0, $"{missing.Count} of {acknowledged.Count} acknowledged events are not in the log, e.g. {string.Join(", ", missing.Take(5))}");
    }

    /// <summary>Streams 200-event batches until the stream fails; calls <paramref name="kill"/> once
    /// <paramref name="killAfterReplies"/> replies arrived; records every acknowledged id.</summary>
    private static async Task<RpcException?> StreamUntilFailureAsync(ServerSettings settings, string prefix, HashSet<string> acknowledged,
        int killAfterReplies, Action kill)
    {
        using var channel = Requests.Channel(settings.GrpcAddress);
        var client = new UsageIngest.UsageIngestClient(channel);
        using var call = client.Stream(Requests.Auth(ServerSettings.IngestKey));
        var sent = new System.Collections.Concurrent.ConcurrentDictionary<string, IngestRequest>();
        using var stopSending = new CancellationTokenSource();
        var sender = Task.Run(async () =>
        {
            try
            {
                // Bounded: at most 2,000 batches, far more than the test waits for.
                for (int b = 0; b < 2000 && !stopSending.IsCancellationRequested; b++)
                {
                    var batch = Requests.Batch($"{prefix}-{b}", 200, $"{prefix}{b}");
                    sent[batch.BatchId] = batch;
                    await call.RequestStream.WriteAsync(batch);
                }
            }
            catch (Exception e) when (e is RpcException or InvalidOperationException or IOException or OperationCanceledException)
            {
                // The server went away mid-write.
            }
        });

        int replies = 0;
        RpcException? failure = null;
        try
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
                var reply = call.ResponseStream.Current;
                Assert.Equal(200, reply.Accepted);
                foreach (var e in sent[reply.BatchId].Events)
                    acknowledged.Add(e.Id);
                if (++replies == killAfterReplies)
                    kill();
            }
        }
        catch (RpcException e)
        {
            failure = e;
        }
        stopSending.Cancel();
        await sender;
        return failure;
    }
}
