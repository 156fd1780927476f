using System.Net;
using System.Net.Http.Headers;
using System.Text;
using AlphaMesh.Core;
using AlphaMesh.Server.Tests.Support;
using AlphaMesh.Usage.V1;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace AlphaMesh.Server.Tests;

/// <summary>
/// A disk that cannot keep up is a fault the tests cannot cause on demand, so the real log is wrapped
/// in a test double whose commits wait until the test opens a gate. Everything else is the real server.
/// </summary>
public sealed class BackpressureTests : IAsyncLifetime
{
    private readonly TaskCompletionSource _commitGate = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private InProcessServer _server = null!;

    public async Task InitializeAsync()
    {
        _server = await InProcessServer.StartAsync(
            settings => settings.Extra["AlphaMesh:Ingest:MaxInFlightBytes"] = (1 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture),
            services =>
            {
                var real = services.Single(d => d.ServiceType == typeof(IEventLog));
                services.RemoveAll<IEventLog>();
                services.AddSingleton<IEventLog>(sp => new GatedCommitEventLog((IEventLog)real.ImplementationFactory!(sp), _commitGate.Task));
            });
    }

    public async Task DisposeAsync()
    {
        _commitGate.TrySetResult();
        await _server.DisposeAsync();
    }

    private static string BigBatchJson(string prefix) => "[" + string.Join(",", Enumerable.Range(0, 600).Select(i =>
        $$$"""{"id":"{{{prefix}}}-{{{i}}}","type":"t","subject":"c{{{i % 5}}}","data":{"blob":"{{{new string('x', 900)}}}"}}""")) + "]";

    private HttpRequestMessage Post(string body)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/events") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", ServerSettings.IngestKey);
        return request;
    }

    [Fact]
    public async Task Post_OverInFlightBudget_429WithRetryAfterThenFirstRequestCompletes()
    {
        using var http = new HttpClient { BaseAddress = _server.Settings.RestAddress };
        var first = http.SendAsync(Post(BigBatchJson("a")));
        await WaitUntilInFlightAsync();

        using var refused = await http.SendAsync(Post(BigBatchJson("b")));

        Assert.Equal((HttpStatusCode)429, refused.StatusCode);
        Assert.NotNull(refused.Headers.RetryAfter);
        Assert.Contains("resource_exhausted", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.False(first.IsCompleted, "the first request was acknowledged before its commit");
        _commitGate.SetResult();
        using var accepted = await first;
        Assert.Equal(HttpStatusCode.OK, accepted.StatusCode);
        var logged = await _server.StopAndReadLogAsync();
        Assert.Equal(600, logged.Count);
        Assert.All(logged, e => Assert.StartsWith("a-", e.Id, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Ingest_OverInFlightBudget_ResourceExhaustedWithRetryHint()
    {
        using var channel = Requests.Channel(_server.Settings.GrpcAddress);
        var client = new UsageIngest.UsageIngestClient(channel);
        var big = new IngestRequest { BatchId = "big" };
        for (int i = 0; i < 600; i++)
            big.Events.Add(Requests.Event($"g-{i}", data: ("blob", new string('x', 900))));
        var first = client.IngestAsync(big, Requests.Auth(ServerSettings.IngestKey)).ResponseAsync;
        await WaitUntilInFlightAsync();

        var error = await Assert.ThrowsAsync<RpcException>(() => client.IngestAsync(big, Requests.Auth(ServerSettings.IngestKey)).ResponseAsync);

        Assert.Equal(StatusCode.ResourceExhausted, error.StatusCode);
        Assert.NotNull(error.Trailers.GetValue("retry-after-ms"));
        _commitGate.SetResult();
        Assert.Equal(600, (await first).Accepted);
    }

    [Fact]
    public async Task Stream_CommitsStalled_ServerStopsReadingAtTheWindowThenAcknowledgesAll()
    {
        using var channel = Requests.Channel(_server.Settings.GrpcAddress);
        using var call = new UsageIngest.UsageIngestClient(channel).Stream(Requests.Auth(ServerSettings.IngestKey));
        var batches = Enumerable.Range(0, 40).Select(b => Requests.Batch($"w-{b}", 50, $"w{b}")).ToList();
        int batchBytes = batches[0].CalculateSize();
        var sending = Task.Run(async () =>
        {
            foreach (var batch in batches)
                await call.RequestStream.WriteAsync(batch);
            await call.RequestStream.CompleteAsync();
        });

        // Wait until the server has read what it will read while no commit completes.
        var pipeline = _server.App.Services.GetRequiredService<AlphaMesh.Ingest.Internal.IngestPipeline>();
        long previous = -1;
        for (int i = 0; i < 100 && (pipeline.Budget.Used == 0 || pipeline.Budget.Used != previous); i++)
        {
            previous = pipeline.Budget.Used;
            await Task.Delay(200);
        }

        // The default window is 16 batches queued for their reply, plus the one the reply loop is waiting on,
        // plus one read and blocked on the full window: 18 of the 40, the rest held back by flow control.
        Assert.InRange(pipeline.Budget.Used, 16L * batchBytes, 18L * batchBytes + 1024);
        _commitGate.SetResult();
        var replies = new List<string>();
        await foreach (var reply in call.ResponseStream.ReadAllAsync())
            replies.Add(reply.BatchId);
        await sending;
        Assert.Equal(batches.Select(b => b.BatchId), replies);
    }

    private async Task WaitUntilInFlightAsync()
    {
        var pipeline = _server.App.Services.GetRequiredService<AlphaMesh.Ingest.Internal.IngestPipeline>();
        for (int i = 0; i < 600 && pipeline.Budget.Used == 0; i++)
            await Task.Delay(50);
        Assert.True(pipeline.Budget.Used > 0, "the first request never arrived");
    }

    private sealed class GatedCommitEventLog(IEventLog inner, Task gate) : IEventLog
    {
        public int PartitionCount => inner.PartitionCount;
        public IPartitionLog GetPartition(int index) => new GatedPartition(inner.GetPartition(index), gate);
        public ValueTask CommitAllAsync(CancellationToken cancellationToken = default) => inner.CommitAllAsync(cancellationToken);
        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }

    private sealed class GatedPartition(IPartitionLog inner, Task gate) : IPartitionLog
    {
        public int Index => inner.Index;
        public long BeginPosition => inner.BeginPosition;
        public long CommittedPosition => inner.CommittedPosition;
        public bool TryAppend(IRecordBatch batch, out long endPosition) => inner.TryAppend(batch, out endPosition);
        public async ValueTask WaitForCommitAsync(long endPosition, CancellationToken cancellationToken = default)
        {
            await gate.WaitAsync(cancellationToken);
            await inner.WaitForCommitAsync(endPosition, cancellationToken);
        }
        public ValueTask WaitForRoomAsync(CancellationToken cancellationToken = default) => inner.WaitForRoomAsync(cancellationToken);
        public IPartitionLogReader OpenReader(long fromPosition) => inner.OpenReader(fromPosition);
        public void TruncateBefore(long position) => inner.TruncateBefore(position);
    }
}
