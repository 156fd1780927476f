using System.Net;
using AlphaMesh.Usage.V1;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace AlphaMesh.Client.Tests;

/// <summary>
/// A real gRPC server (Kestrel, HTTP/2 cleartext on 127.0.0.1) implementing the generated
/// <see cref="UsageIngest.UsageIngestBase"/>, which records what it receives and dedupes by event id like the
/// real server. It stands in for the real AlphaMesh server, which is being built elsewhere at the same time,
/// and it is a test double on purpose: it injects faults on demand (abort a stream after N requests, reset
/// the stream, RESOURCE_EXHAUSTED once, reject events, UNAUTHENTICATED, hold replies) that cannot be caused on
/// the real server at will. The client under test is the real one, over real loopback gRPC.
/// </summary>
public sealed class RecordingIngestServer : IAsyncDisposable
{
    private readonly Lock _gate = new();
    private readonly List<IngestRequest> _requests = [];
    private readonly Dictionary<string, UsageEvent> _eventsById = [];
    private readonly List<string> _authorizations = [];
    private int _port;
    private WebApplication? _app;
    private int _requestCount;
    private int _resourceExhaustedRemaining;
    private TaskCompletionSource _replies = CompletedSource();

    private RecordingIngestServer()
    {
    }

    public Uri Endpoint => new($"http://127.0.0.1:{_port}");

    /// <summary>The 1-based request number after which the stream fails with UNAVAILABLE; the batch is recorded (durable) but not acknowledged.</summary>
    public int AbortStreamAtRequest { get; set; }

    /// <summary>The 1-based request number at which the HTTP/2 stream is reset without status; the batch is recorded but not acknowledged.</summary>
    public int ResetStreamAtRequest { get; set; }

    /// <summary>Events of this type are rejected with INVALID_ARGUMENT.</summary>
    public string? RejectType { get; set; }

    /// <summary>Every stream is refused with UNAUTHENTICATED.</summary>
    public bool RefuseAuthentication { get; set; }

    public int StreamCalls { get; private set; }

    public int RequestCount => Volatile.Read(ref _requestCount);

    public static async Task<RecordingIngestServer> StartAsync()
    {
        var server = new RecordingIngestServer();
        (server._app, server._port) = await StartAppAsync(0, server);
        return server;
    }

    /// <summary>Sets up <paramref name="fault"/> at request <paramref name="atRequest"/>: the stream fails with UNAVAILABLE
    /// or is reset there; for a restart, replies are held (requests recorded, never acknowledged) until the test
    /// restarts the server.</summary>
    public void Arm(StreamFault fault, int atRequest)
    {
        switch (fault)
        {
            case StreamFault.AbortWithUnavailable:
                AbortStreamAtRequest = atRequest;
                break;
            case StreamFault.ResetStream:
                ResetStreamAtRequest = atRequest;
                break;
            default:
                HoldReplies();
                break;
        }
    }

    /// <summary>The next <paramref name="count"/> requests fail the stream with RESOURCE_EXHAUSTED, unrecorded.</summary>
    public void FailWithResourceExhausted(int count) => Volatile.Write(ref _resourceExhaustedRemaining, count);

    /// <summary>Replies wait until <see cref="ReleaseReplies"/>; requests are still received and recorded.</summary>
    public void HoldReplies()
    {
        lock (_gate)
        {
            _replies = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }

    public void ReleaseReplies()
    {
        lock (_gate)
        {
            _replies.TrySetResult();
        }
    }

    /// <summary>Stops Kestrel, dropping every connection, and starts it again on the same port. Recorded events survive (they are "durable").</summary>
    public async Task RestartAsync()
    {
        await _app!.StopAsync(new CancellationToken(canceled: true));
        await _app!.DisposeAsync();
        (_app, _) = await StartAppAsync(_port, this);
    }

    public IngestRequest[] Requests
    {
        get
        {
            lock (_gate)
            {
                return [.. _requests];
            }
        }
    }

    public Dictionary<string, UsageEvent> EventsById
    {
        get
        {
            lock (_gate)
            {
                return new Dictionary<string, UsageEvent>(_eventsById);
            }
        }
    }

    public string[] Authorizations
    {
        get
        {
            lock (_gate)
            {
                return [.. _authorizations];
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        ReleaseReplies();
        await _app!.StopAsync(new CancellationToken(canceled: true));
        await _app!.DisposeAsync();
    }

    private static async Task<(WebApplication App, int Port)> StartAppAsync(int port, RecordingIngestServer server)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
            kestrel.Listen(IPAddress.Loopback, port, listen => listen.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(server);
        var app = builder.Build();
        app.MapGrpcService<RecordingIngestService>();
        await app.StartAsync();
        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return (app, new Uri(address).Port);
    }

    private static TaskCompletionSource CompletedSource()
    {
        var source = new TaskCompletionSource();
        source.SetResult();
        return source;
    }

    private Task StreamStarted(ServerCallContext context)
    {
        lock (_gate)
        {
            StreamCalls++;
            _authorizations.Add(context.RequestHeaders.GetValue("authorization") ?? "");
        }
        if (RefuseAuthentication)
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated, "Unknown API key."));
        }
        return Task.CompletedTask;
    }

    private async Task HandleAsync(IngestRequest request, IServerStreamWriter<IngestReply> replies, ServerCallContext context)
    {
        if (Interlocked.Decrement(ref _resourceExhaustedRemaining) >= 0)
        {
            throw new RpcException(new Status(StatusCode.ResourceExhausted, "Injected: try again later."));
        }

        var reply = new IngestReply { BatchId = request.BatchId };
        int number;
        Task repliesReleased;
        lock (_gate)
        {
            number = ++_requestCount;
            _requests.Add(request);
            for (int i = 0; i < request.Events.Count; i++)
            {
                var usage = request.Events[i];
                if (usage.Type == RejectType)
                {
                    reply.Rejected.Add(new Rejection { Index = i, Code = "INVALID_ARGUMENT", Message = "Injected rejection." });
                    continue;
                }
                _eventsById.TryAdd(usage.Id, usage); // a duplicate id is accepted and counted once
                reply.Accepted++;
            }
            repliesReleased = _replies.Task;
        }

        if (number == AbortStreamAtRequest)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, "Injected: stream aborted."));
        }
        if (number == ResetStreamAtRequest)
        {
            context.GetHttpContext().Abort();
            throw new OperationCanceledException("Injected: stream reset.");
        }
        await repliesReleased.WaitAsync(context.CancellationToken);
        await replies.WriteAsync(reply, context.CancellationToken);
    }

    private sealed class RecordingIngestService(RecordingIngestServer server) : UsageIngest.UsageIngestBase
    {
        public override async Task Stream(IAsyncStreamReader<IngestRequest> requestStream, IServerStreamWriter<IngestReply> responseStream, ServerCallContext context)
        {
            await server.StreamStarted(context);
            await foreach (var request in requestStream.ReadAllAsync(context.CancellationToken))
            {
                await server.HandleAsync(request, responseStream, context);
            }
        }
    }
}

/// <summary>How a stream fails midway in the resend tests (<see cref="RecordingIngestServer.Arm"/>).</summary>
public enum StreamFault
{
    AbortWithUnavailable,
    ResetStream,
    RestartServer,
}
