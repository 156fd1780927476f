using System.Diagnostics;
using System.Threading.Channels;
using AlphaMesh.Usage.V1;
using Grpc.Core;

namespace AlphaMesh.Client.Internal;

/// <summary>
/// Sends sealed batches over one bidirectional <c>UsageIngest/Stream</c> call and keeps the window of
/// unacknowledged batches. Replies come one per request, in order, so the reply always belongs to the oldest
/// unacknowledged batch. When the stream fails with a retryable status, it backs off (exponential, jitter,
/// capped), opens a new stream and first resends every unacknowledged batch, same bytes, same order; the event
/// ids are unchanged, so the server counts a resent event once. A status that retrying cannot fix fails the
/// window's batches instead.
/// </summary>
internal sealed class BatchSender
{
    private readonly CallInvoker _invoker;
    private readonly Metadata _headers;
    private readonly ChannelReader<EventBatch> _outgoing;
    private readonly UsageClientOptions _options;
    private readonly ClientCounters _counters;
    private readonly Action<EventBatch> _onFinished;
    private readonly Queue<EventBatch> _unacknowledged = new(); // guarded by itself
    private readonly Lock _reportGate = new(); // OnTaggedEventsFinished calls never overlap
    private readonly SemaphoreSlim _windowSlots;

    public BatchSender(CallInvoker invoker, Metadata headers, ChannelReader<EventBatch> outgoing, UsageClientOptions options,
        ClientCounters counters, Action<EventBatch> onFinished)
    {
        _invoker = invoker;
        _headers = headers;
        _outgoing = outgoing;
        _options = options;
        _counters = counters;
        _onFinished = onFinished;
        _windowSlots = new SemaphoreSlim(options.MaxBatchesInFlight, options.MaxBatchesInFlight);
    }

    private int UnacknowledgedCount
    {
        get
        {
            lock (_unacknowledged)
            {
                return _unacknowledged.Count;
            }
        }
    }

    /// <summary>Runs until the outgoing channel is completed and every batch is finished, or <paramref name="stop"/>.</summary>
    public async Task RunAsync(CancellationToken stop)
    {
        int attempt = 0;
        bool afterFailure = false;
        while (UnacknowledgedCount > 0 || await _outgoing.WaitToReadAsync(stop).ConfigureAwait(false))
        {
            if (afterFailure)
            {
                Interlocked.Increment(ref _counters.Reconnects);
            }
            var session = new SessionState();
            Exception? error;
            try
            {
                error = await RunSessionAsync(session, stop).ConfigureAwait(false);
            }
            catch (Exception e) when (!stop.IsCancellationRequested)
            {
                error = e; // unexpected: treated like a transport failure
            }

            afterFailure = error is not null;
            if (error is null)
            {
                attempt = 0;
                continue;
            }
            if (session.Acknowledged)
            {
                attempt = 0;
            }
            if (IsPermanent(error, out var status))
            {
                FailUnacknowledged(status, error);
            }
            // Back off after a permanent failure too, so a stream that is refused before any batch reached
            // the window cannot spin.
            attempt++;
            var delay = Backoff(attempt);
            UsageClientLog.StreamFailed(_options.Logger, attempt, UnacknowledgedCount, delay, error);
            await Task.Delay(delay, stop).ConfigureAwait(false);
        }
    }

    /// <summary>After the sender stopped: fails every batch still held (window and not yet sent).</summary>
    public void FailRemaining(string reason)
    {
        EventBatch[] window;
        lock (_unacknowledged)
        {
            window = [.. _unacknowledged];
            _unacknowledged.Clear();
        }
        var timeout = new TimeoutException(reason);
        foreach (var batch in window)
        {
            Fail(batch, StatusCode.DeadlineExceeded, reason, timeout, returnBuffer: false);
        }
        while (_outgoing.TryRead(out var batch))
        {
            Fail(batch, StatusCode.DeadlineExceeded, reason, timeout, returnBuffer: false);
        }
    }

    private async Task<Exception?> RunSessionAsync(SessionState session, CancellationToken stop)
    {
        using var sessionCancellation = CancellationTokenSource.CreateLinkedTokenSource(stop);
        using var call = _invoker.AsyncDuplexStreamingCall(IngestStreamMethod.Instance, null,
            new CallOptions(_headers, cancellationToken: sessionCancellation.Token));

        var writer = WriteAsync(call.RequestStream, session, sessionCancellation);
        Exception? readerError = null;
        try
        {
            await ReadAsync(call.ResponseStream, session, sessionCancellation.Token).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            readerError = e;
        }
        sessionCancellation.Cancel();
        await writer.ConfigureAwait(false); // never throws
        stop.ThrowIfCancellationRequested();

        var error = PickError(readerError, session.WriterError);
        if (error is null && (!session.WriterCompleted || UnacknowledgedCount > 0))
        {
            error = new RpcException(new Status(StatusCode.Unavailable, "The server ended the stream before every batch was acknowledged."));
        }
        return error;
    }

    private async Task WriteAsync(IClientStreamWriter<EventBatch> requests, SessionState session, CancellationTokenSource sessionCancellation)
    {
        var token = sessionCancellation.Token;
        try
        {
            EventBatch[] resend;
            lock (_unacknowledged)
            {
                resend = [.. _unacknowledged];
            }
            foreach (var batch in resend)
            {
                batch.WrittenAt = Stopwatch.GetTimestamp();
                await requests.WriteAsync(batch, token).ConfigureAwait(false);
                Interlocked.Increment(ref _counters.BatchesResent);
            }

            while (await _outgoing.WaitToReadAsync(token).ConfigureAwait(false))
            {
                // Take a window slot before taking the batch, so a batch is never held outside the window.
                await _windowSlots.WaitAsync(token).ConfigureAwait(false);
                if (!_outgoing.TryRead(out var batch))
                {
                    _windowSlots.Release();
                    continue;
                }
                lock (_unacknowledged)
                {
                    _unacknowledged.Enqueue(batch);
                }
                Interlocked.Increment(ref _counters.BatchesSent);
                batch.WrittenAt = Stopwatch.GetTimestamp();
                await requests.WriteAsync(batch, token).ConfigureAwait(false);
            }
            await requests.CompleteAsync().ConfigureAwait(false);
            session.WriterCompleted = true;
        }
        catch (Exception e)
        {
            session.WriterError = e;
            sessionCancellation.Cancel();
        }
    }

    private async Task ReadAsync(IAsyncStreamReader<IngestReply> replies, SessionState session, CancellationToken token)
    {
        while (await replies.MoveNext(token).ConfigureAwait(false))
        {
            var reply = replies.Current;
            EventBatch? batch;
            lock (_unacknowledged)
            {
                _unacknowledged.TryPeek(out batch);
            }
            if (batch is null || (reply.BatchId.Length != 0 && reply.BatchId != batch.Id))
            {
                throw new RpcException(new Status(StatusCode.Internal,
                    $"Reply for batch '{reply.BatchId}' does not match the oldest unacknowledged batch '{batch?.Id}'."));
            }
            if (FindRetryableRejection(reply) is { } busy)
            {
                // The server could not take the events now (not a verdict on them): resend the batch later.
                throw new RpcException(new Status(StatusCode.ResourceExhausted, $"Batch {batch.Id} refused for now: {busy.Code}: {busy.Message}"));
            }

            lock (_unacknowledged)
            {
                _unacknowledged.Dequeue();
            }
            _windowSlots.Release();
            session.Acknowledged = true;
            if (!batch.TryFinish())
            {
                continue; // failed by the disposal's clean-up meanwhile
            }
            Interlocked.Add(ref _counters.EventsAcknowledged, reply.Accepted);
            Interlocked.Add(ref _counters.EventsRejected, reply.Rejected.Count);
            batch.Acknowledge(reply);
            _onFinished(batch); // the buffer space first, so that a caller reacting to the reports below finds it
            ReportTags(batch, reply, null);
            ReportAcknowledged(batch);
            batch.ReturnBuffer();
            batch.Complete();
        }
    }

    private void ReportTags(EventBatch batch, IngestReply? reply, UsageBatchFailedException? failure)
    {
        var handler = _options.OnTaggedEventsFinished;
        if (handler is null || !batch.HasTags)
        {
            return;
        }
        lock (_reportGate)
        {
            try
            {
                batch.ReportTags(handler, reply, failure);
            }
            catch (Exception e)
            {
                UsageClientLog.CallbackFailed(_options.Logger, e);
            }
        }
    }

    private void ReportAcknowledged(EventBatch batch)
    {
        var callback = _options.OnBatchAcknowledged;
        if (callback is null)
        {
            return;
        }
        try
        {
            callback(batch.Count, Stopwatch.GetElapsedTime(batch.WrittenAt));
        }
        catch (Exception e)
        {
            UsageClientLog.CallbackFailed(_options.Logger, e);
        }
    }

    private void FailUnacknowledged(StatusCode status, Exception error)
    {
        EventBatch[] window;
        lock (_unacknowledged)
        {
            window = [.. _unacknowledged];
            _unacknowledged.Clear();
        }
        if (window.Length > 0)
        {
            _windowSlots.Release(window.Length);
        }
        string detail = error is RpcException rpc ? rpc.Status.Detail : error.Message;
        foreach (var batch in window)
        {
            Fail(batch, status, detail, error, returnBuffer: true);
        }
    }

    private void Fail(EventBatch batch, StatusCode status, string detail, Exception cause, bool returnBuffer)
    {
        if (!batch.TryFinish())
        {
            return; // acknowledged meanwhile by a late reply
        }
        var failure = new UsageBatchFailedException(batch.Id, batch.Count, status, detail, cause);
        Interlocked.Increment(ref _counters.BatchesFailed);
        Interlocked.Add(ref _counters.EventsFailed, batch.Count);
        UsageClientLog.BatchFailed(_options.Logger, failure);
        batch.Fail(failure);
        _onFinished(batch);
        ReportTags(batch, null, failure);
        if (returnBuffer)
        {
            batch.ReturnBuffer();
        }
        try
        {
            _options.OnBatchFailed?.Invoke(failure);
        }
        catch (Exception e)
        {
            UsageClientLog.CallbackFailed(_options.Logger, e);
        }
        batch.Complete();
    }

    private TimeSpan Backoff(int attempt)
    {
        double capped = Math.Min(_options.RetryMaxBackoff.TotalMilliseconds,
            _options.RetryMinBackoff.TotalMilliseconds * Math.Pow(2, Math.Min(attempt - 1, 30)));
        return TimeSpan.FromMilliseconds(capped * (0.5 + (Random.Shared.NextDouble() * 0.5)));
    }

    private static Exception? PickError(Exception? readerError, Exception? writerError)
    {
        // The status the server sent is the truth; a write failure or our own cancellation only follows from it.
        if (readerError is RpcException { StatusCode: not StatusCode.Cancelled })
        {
            return readerError;
        }
        if (writerError is RpcException { StatusCode: not StatusCode.Cancelled })
        {
            return writerError;
        }
        return writerError is OperationCanceledException ? readerError : writerError ?? readerError;
    }

    private static bool IsPermanent(Exception error, out StatusCode status)
    {
        status = error is RpcException rpc ? rpc.StatusCode : StatusCode.Unavailable;
        return status is StatusCode.Unauthenticated or StatusCode.PermissionDenied or StatusCode.InvalidArgument
            or StatusCode.Unimplemented or StatusCode.FailedPrecondition or StatusCode.OutOfRange
            or StatusCode.NotFound or StatusCode.AlreadyExists;
    }

    private static Rejection? FindRetryableRejection(IngestReply reply)
    {
        foreach (var rejection in reply.Rejected)
        {
            if (string.Equals(rejection.Code, "RESOURCE_EXHAUSTED", StringComparison.OrdinalIgnoreCase)
                || string.Equals(rejection.Code, "UNAVAILABLE", StringComparison.OrdinalIgnoreCase))
            {
                return rejection;
            }
        }
        return null;
    }

    private sealed class SessionState
    {
        public volatile bool Acknowledged;
        public volatile bool WriterCompleted;
        public volatile Exception? WriterError;
    }
}
