using AlphaMesh.Server.Tests.Support;
using AlphaMesh.Usage.V1;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Reflection.V1Alpha;

namespace AlphaMesh.Server.Tests;

public sealed class GrpcIngestTests : IAsyncLifetime
{
    private InProcessServer _server = null!;
    private Grpc.Net.Client.GrpcChannel _channel = null!;
    private UsageIngest.UsageIngestClient _client = null!;

    public async Task InitializeAsync()
    {
        _server = await InProcessServer.StartAsync();
        _channel = Requests.Channel(_server.Settings.GrpcAddress);
        _client = new UsageIngest.UsageIngestClient(_channel);
    }

    public async Task DisposeAsync()
    {
        _channel.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task Ingest_ValidBatch_AcceptsEveryEventDurably()
    {
        var reply = await _client.IngestAsync(Requests.Batch("b-1", 500, "unary"), Requests.Auth(ServerSettings.IngestKey));

        Assert.Equal("b-1", reply.BatchId);
        Assert.Equal(500, reply.Accepted);
        Assert.Empty(reply.Rejected);
        var logged = await StopAndReadLogAsync();
        Assert.Equal(Enumerable.Range(0, 500).Select(i => $"unary-{i}").Order(), logged.Select(e => e.Id).Order());
        Assert.All(logged, e => Assert.Equal("acme", e.Tenant));
    }

    [Fact]
    public async Task Stream_ManyBatches_RepliesOncePerRequestInOrder()
    {
        using var call = _client.Stream(Requests.Auth(ServerSettings.IngestKey));
        const int batches = 40;
        var send = Task.Run(async () =>
        {
            for (int b = 0; b < batches; b++)
                await call.RequestStream.WriteAsync(Requests.Batch($"s-{b}", 250, $"s{b}"));
            await call.RequestStream.CompleteAsync();
        });
        var replies = new List<IngestReply>();
        await foreach (var reply in call.ResponseStream.ReadAllAsync())
            replies.Add(reply);
        await send;

        Assert.Equal(Enumerable.Range(0, batches).Select(b => $"s-{b}"), replies.Select(r => r.BatchId));
        Assert.All(replies, r => Assert.Equal(250, r.Accepted));
        var logged = await StopAndReadLogAsync();
        Assert.Equal(batches * 250, logged.Select(e => e.Id).Distinct().Count());
    }

    [Fact]
    public async Task Ingest_BadEventsAmongGood_RejectsOnlyTheBadOnes()
    {
        var request = new IngestRequest { BatchId = "mixed" };
        request.Events.Add(Requests.Event("good-0"));
        request.Events.Add(Requests.Event("", customer: "c"));                                   // 1 missing id
        request.Events.Add(Requests.Event("good-2"));
        request.Events.Add(Requests.Event("no-customer", customer: ""));                        // 3 missing customer
        request.Events.Add(Requests.Event("old", time: DateTimeOffset.UtcNow.AddDays(-40)));    // 4 too old
        request.Events.Add(Requests.Event("future", time: DateTimeOffset.UtcNow.AddHours(1)));  // 5 in the future
        request.Events.Add(Requests.Event("nan", data: ("tokens", "NaN")));                    // 6 not a finite number
        request.Events.Add(Requests.Event(new string('x', 257)));                               // 7 id too long
        request.Events.Add(Requests.Event("good-8", type: "llm_tokens", data: ("tokens", "0.1")));

        var reply = await _client.IngestAsync(request, Requests.Auth(ServerSettings.IngestKey));

        Assert.Equal(3, reply.Accepted);
        Assert.Equal(
            [(1, "missing_id"), (3, "missing_customer"), (4, "time_too_old"), (5, "time_in_future"), (6, "invalid_number"), (7, "id_too_long")],
            reply.Rejected.Select(r => (r.Index, r.Code)).ToArray());
        Assert.All(reply.Rejected, r => Assert.False(string.IsNullOrWhiteSpace(r.Message)));
        var logged = await StopAndReadLogAsync();
        Assert.Equal(["good-0", "good-2", "good-8"], logged.Select(e => e.Id).Order().ToArray());
    }

    [Fact]
    public async Task Ingest_NoKey_Unauthenticated()
    {
        var error = await Assert.ThrowsAsync<RpcException>(() => _client.IngestAsync(Requests.Batch("b", 1)).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
    }

    [Fact]
    public async Task Ingest_WrongKey_Unauthenticated()
    {
        var error = await Assert.ThrowsAsync<RpcException>(() => _client.IngestAsync(Requests.Batch("b", 1), Requests.Auth("amk_not_a_key")).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
    }

    [Fact]
    public async Task Stream_ReadOnlyKey_PermissionDenied()
    {
        using var call = _client.Stream(Requests.Auth(ServerSettings.ReadOnlyKey));
        var error = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await call.RequestStream.WriteAsync(Requests.Batch("b", 1));
            await call.ResponseStream.MoveNext();
        });
        Assert.Equal(StatusCode.PermissionDenied, error.StatusCode);
    }

    [Fact]
    public async Task Ingest_TwoTenants_EachEventCarriesItsKeysTenant()
    {
        await _client.IngestAsync(Requests.Batch("a", 5, "acme"), Requests.Auth(ServerSettings.IngestKey));
        await _client.IngestAsync(Requests.Batch("g", 5, "globex"), Requests.Auth(ServerSettings.OtherTenantKey));

        var logged = await StopAndReadLogAsync();
        Assert.All(logged, e => Assert.Equal(e.Id.StartsWith("acme", StringComparison.Ordinal) ? "acme" : "globex", e.Tenant));
        Assert.Equal(10, logged.Count);
    }

    [Fact]
    public async Task Ingest_RandomBytes_InvalidArgumentAndNothingLogged()
    {
        var raw = new Method<byte[], byte[]>(MethodType.Unary, "alphamesh.usage.v1.UsageIngest", "Ingest",
            Marshallers.Create(b => b, b => b), Marshallers.Create(b => b, b => b));
        var random = new Random(42);
        int refused = 0;
        for (int i = 0; i < 200; i++)
        {
            var bytes = new byte[random.Next(1, 300)];
            random.NextBytes(bytes);
            try
            {
                await _channel.CreateCallInvoker().AsyncUnaryCall(raw, null, new CallOptions(Requests.Auth(ServerSettings.IngestKey)), bytes);
            }
            catch (RpcException e)
            {
                Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
                Assert.StartsWith("malformed request", e.Status.Detail, StringComparison.Ordinal);
                refused++;
            }
        }
        Assert.True(refused > 150, $"only {refused} of 200 random payloads were refused");
        var logged = await StopAndReadLogAsync();
        // Random bytes that happen to be a valid request would still need a valid id, type and customer.
        Assert.All(logged, e => Assert.Equal("acme", e.Tenant));
    }

    [Fact]
    public async Task Ingest_TooManyEvents_InvalidArgumentWithReason()
    {
        var error = await Assert.ThrowsAsync<RpcException>(() =>
            _client.IngestAsync(Requests.Batch("big", 10_001, "big"), Requests.Auth(ServerSettings.IngestKey)).ResponseAsync);

        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.Contains("10000", error.Status.Detail.Replace(",", "", StringComparison.Ordinal), StringComparison.Ordinal);
        Assert.Empty(await StopAndReadLogAsync());
    }

    [Fact]
    public async Task Ingest_OverTheByteLimit_InvalidArgumentWithReason()
    {
        var request = new IngestRequest { BatchId = "huge" };
        for (int i = 0; i < 5000; i++)
            request.Events.Add(Requests.Event($"h-{i}", data: ("blob", new string('b', 1000))));
        Assert.True(request.CalculateSize() > 4 * 1024 * 1024);

        var error = await Assert.ThrowsAsync<RpcException>(() => _client.IngestAsync(request, Requests.Auth(ServerSettings.IngestKey)).ResponseAsync);

        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.Contains("limit", error.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(await StopAndReadLogAsync());
    }

    [Fact]
    public async Task Health_Check_Serving()
    {
        var health = new Health.HealthClient(_channel);
        var reply = await health.CheckAsync(new HealthCheckRequest());
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, reply.Status);
    }

    [Fact]
    public async Task Reflection_ListServices_IncludesUsageIngest()
    {
        var reflection = new ServerReflection.ServerReflectionClient(_channel);
        using var call = reflection.ServerReflectionInfo();
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "" });
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { FileContainingSymbol = "alphamesh.usage.v1.UsageIngest" });
        await call.RequestStream.CompleteAsync();
        var responses = new List<ServerReflectionResponse>();
        await foreach (var response in call.ResponseStream.ReadAllAsync())
            responses.Add(response);

        Assert.Contains("alphamesh.usage.v1.UsageIngest", responses[0].ListServicesResponse.Service.Select(s => s.Name));
        var file = Google.Protobuf.Reflection.FileDescriptorProto.Parser.ParseFrom(responses[1].FileDescriptorResponse.FileDescriptorProto[0]);
        Assert.Equal("alphamesh.usage.v1", file.Package);
        Assert.Contains(file.Service, s => s.Name == "UsageIngest" && s.Method.Any(m => m.Name == "Stream" && m.ClientStreaming && m.ServerStreaming));
    }

    private Task<List<LoggedEvent>> StopAndReadLogAsync()
    {
        _channel.Dispose();
        return _server.StopAndReadLogAsync();
    }
}
