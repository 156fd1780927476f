using System.Globalization;
using System.Threading.Channels;
using Grpc.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace AlphaMesh.Ingest.Internal;

/// <summary>
/// gRPC UsageIngest. A stream reads requests, appends each one to the log, and hands it to a reply
/// loop that waits for its commit and replies, in request order. At most
/// <see cref="IngestServerOptions.StreamWindow"/> requests wait per stream; beyond that the stream is
/// not read, so HTTP/2 flow control holds the client back.
/// </summary>
internal sealed class UsageIngestService : UsageIngestServiceBase
{
    private readonly IngestPipeline _pipeline;
    private readonly IApiKeyStore _keys;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly ILogger<UsageIngestService> _logger;
    private readonly int _streamWindow;

    public UsageIngestService(IngestPipeline pipeline, IApiKeyStore keys, IHostApplicationLifetime lifetime,
        IOptions<IngestServerOptions> options, ILogger<UsageIngestService> logger)
    {
        _pipeline = pipeline;
        _keys = keys;
        _lifetime = lifetime;
        _logger = logger;
        _streamWindow = options.Value.StreamWindow;
    }

    public override async Task<UnaryReply> Ingest(RawRequest request, ServerCallContext context)
    {
        IngestWork? work = null;
        try
        {
            var principal = Authorize(context);
            work = Parse(request, principal);
            await _pipeline.AppendAsync(work, context.CancellationToken).ConfigureAwait(false);
            await _pipeline.WaitDurableAsync(work, context.CancellationToken).ConfigureAwait(false);
            var replied = work;
            work = null; // from here the reply's serializer completes it
            return new UnaryReply(replied.Batch, _ => _pipeline.Complete(replied));
        }
        finally
        {
            request.Return();
            if (work is not null)
                _pipeline.Complete(work);
        }
    }

    public override async Task Stream(IAsyncStreamReader<RawRequest> requests, IServerStreamWriter<EncodedBatch> replies, ServerCallContext context)
    {
        var principal = Authorize(context);
        var pending = Channel.CreateBounded<IngestWork>(new BoundedChannelOptions(_streamWindow)
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        var replyLoop = ReplyInOrderAsync(pending, replies, context.CancellationToken);

        // Shutdown stops the reading, not the replying: batches already appended are still acknowledged.
        using var readStop = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, _lifetime.ApplicationStopping);
        Exception? failure = null;
        try
        {
            while (await requests.MoveNext(readStop.Token).ConfigureAwait(false))
            {
                var request = requests.Current;
                IngestWork work;
                try
                {
                    work = Parse(request, principal);
                }
                finally
                {
                    request.Return();
                }
                try
                {
                    await _pipeline.AppendAsync(work, context.CancellationToken).ConfigureAwait(false);
                    await pending.Writer.WriteAsync(work, context.CancellationToken).ConfigureAwait(false);
                }
                catch
                {
                    _pipeline.Complete(work);
                    throw;
                }
            }
        }
        catch (OperationCanceledException) when (_lifetime.ApplicationStopping.IsCancellationRequested && !context.CancellationToken.IsCancellationRequested)
        {
            failure = new RpcException(new Status(StatusCode.Unavailable,
                "the server is shutting down; resend the batches that got no reply"), RetryTrailers());
        }
        catch (ChannelClosedException)
        {
            // The reply loop failed; awaiting it below throws its exception.
        }
        catch (Exception e)
        {
            failure = e;
        }
        finally
        {
            pending.Writer.TryComplete();
        }

        // Every appended batch is acknowledged before the call ends, even when reading failed:
        // nothing may be written to the stream after this method returns.
        await replyLoop.ConfigureAwait(false);
        if (failure is RpcException { StatusCode: StatusCode.Unavailable })
            await DiscardWhileClientReadsRepliesAsync(requests, context.CancellationToken).ConfigureAwait(false);
        if (failure is not null)
        {
            IngestLog.StreamEnded(_logger, principal.TenantId, failure.Message);
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        }
    }

    /// <summary>
    /// On shutdown, keeps the stream open for a moment after the last reply, reading and dropping what the
    /// client still sends (it gets no reply for those, so the client resends them). Ending at once, while the
    /// client is still sending, makes HTTP/2 reset the stream and close the connection, and a client may then
    /// lose replies it had received but not yet read.
    /// </summary>
    private static async Task DiscardWhileClientReadsRepliesAsync(IAsyncStreamReader<RawRequest> requests, CancellationToken cancellationToken)
    {
        using var grace = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        grace.CancelAfter(TimeSpan.FromSeconds(1));
        try
        {
            while (await requests.MoveNext(grace.Token).ConfigureAwait(false))
                requests.Current.Return();
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or InvalidOperationException)
        {
            // The grace period ended or the client went away: either way, the stream ends now.
        }
    }

    private async Task ReplyInOrderAsync(Channel<IngestWork> pending, IServerStreamWriter<EncodedBatch> replies, CancellationToken cancellationToken)
    {
        try
        {
            while (await pending.Reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
            {
                while (pending.Reader.TryRead(out var work))
                {
                    try
                    {
                        await _pipeline.WaitDurableAsync(work, cancellationToken).ConfigureAwait(false);
                        // The reply is serialized inside WriteAsync, so the batch may go back to the pool after it.
                        await replies.WriteAsync(work.Batch, cancellationToken).ConfigureAwait(false);
                    }
                    finally
                    {
                        _pipeline.Complete(work);
                    }
                }
            }
        }
        catch (Exception e)
        {
            // Unblock the reading side and give back what is still queued.
            pending.Writer.TryComplete(e);
            while (pending.Reader.TryRead(out var work))
                _pipeline.Complete(work);
            if (e is not OperationCanceledException)
                throw;
        }
    }

    private ApiPrincipal Authorize(ServerCallContext context) => GrpcAuthorization.Authorize(_keys, context, ApiScopes.Ingest, _logger);

    private IngestWork Parse(RawRequest request, ApiPrincipal principal)
    {
        var failure = _pipeline.TryParse(request.Span, RequestFormat.Protobuf, principal, out var work, out var error);
        switch (failure)
        {
            case RequestFailure.None:
                return work!;
            case RequestFailure.Overloaded:
                IngestLog.RequestRefused(_logger, "gRPC", principal.TenantId, error!);
                throw new RpcException(new Status(StatusCode.ResourceExhausted, error!), RetryTrailers());
            default:
                IngestLog.RequestRefused(_logger, "gRPC", principal.TenantId, error!);
                throw new RpcException(new Status(StatusCode.InvalidArgument, "malformed request: " + error));
        }
    }

    private Metadata RetryTrailers() =>
        new() { { "retry-after-ms", ((long)_pipeline.RetryAfter.TotalMilliseconds).ToString(CultureInfo.InvariantCulture) } };
}

/// <summary>The binding grpc-dotnet looks for: it finds the handlers as overrides of these methods.</summary>
[BindServiceMethod(typeof(UsageIngestServiceBase), nameof(BindService))]
internal abstract class UsageIngestServiceBase
{
    public abstract Task<UnaryReply> Ingest(RawRequest request, ServerCallContext context);

    public abstract Task Stream(IAsyncStreamReader<RawRequest> requests, IServerStreamWriter<EncodedBatch> replies, ServerCallContext context);

    public static void BindService(ServiceBinderBase binder, UsageIngestServiceBase? service)
    {
        // grpc-dotnet binds by method name and creates the service per call; the delegates only name the methods.
        binder.AddMethod(UsageIngestMethods.Stream, service is null ? null : service.Stream);
        binder.AddMethod(UsageIngestMethods.Ingest, service is null ? null : service.Ingest);
    }
}
