using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace AlphaMesh.Client;

/// <summary>Settings of a <see cref="UsageClient"/>. Validated when the client is created.</summary>
public sealed class UsageClientOptions
{
    /// <summary>The AlphaMesh ingest endpoint, for example <c>http://localhost:5000</c>. Required.</summary>
    public Uri? Endpoint { get; set; }

    /// <summary>The API key, sent as <c>authorization: Bearer &lt;key&gt;</c> on every stream. Null sends no header.</summary>
    public string? ApiKey { get; set; }

    /// <summary>A batch is sent once it holds this many events. Default 1000.</summary>
    public int MaxBatchEvents { get; set; } = 1000;

    /// <summary>A batch is sent once its encoded size reaches this many bytes (a single larger event still goes alone). Default 1 MiB.</summary>
    public int MaxBatchBytes { get; set; } = 1024 * 1024;

    /// <summary>A batch is sent at the latest this long after its first event. Default 20 ms.</summary>
    public TimeSpan MaxBatchDelay { get; set; } = TimeSpan.FromMilliseconds(20);

    /// <summary>Batches written to the stream and not yet acknowledged (the send window). Default 8.</summary>
    public int MaxBatchesInFlight { get; set; } = 8;

    /// <summary>
    /// Events held by the client, from enqueue until acknowledged or failed. When full,
    /// <see cref="UsageClient.EnqueueAsync(string, string, ReadOnlySpan{KeyValuePair{string, string}}, DateTimeOffset?, string?, CancellationToken)"/>
    /// and <c>TrackAsync</c> wait and <c>TryEnqueue</c> returns false. Default 100,000.
    /// </summary>
    public int MaxBufferedEvents { get; set; } = 100_000;

    /// <summary>First back-off after a stream failure; doubles per failed attempt, with jitter. Default 100 ms.</summary>
    public TimeSpan RetryMinBackoff { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Cap of the back-off between reconnect attempts (the channel's own reconnect back-off uses the same
    /// bounds, unless <see cref="ChannelOptions"/> is given). Default 10 s.</summary>
    public TimeSpan RetryMaxBackoff { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long <see cref="UsageClient.DisposeAsync"/> waits for outstanding batches before giving up and
    /// failing them with a <see cref="TimeoutException"/>. Default 30 s.
    /// </summary>
    public TimeSpan DisposeTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Optional HTTP handler for the channel (tests, proxies). Ignored when <see cref="ChannelOptions"/> is set.</summary>
    public HttpMessageHandler? HttpHandler { get; set; }

    /// <summary>Optional full channel options; the client creates and disposes its own channel with them. Their
    /// <c>InitialReconnectBackoff</c> and <c>MaxReconnectBackoff</c> then apply as given (gRPC's defaults: 1 s and 120 s).</summary>
    public GrpcChannelOptions? ChannelOptions { get; set; }

    /// <summary>Optional logger for stream failures, reconnects and failed batches.</summary>
    public ILogger? Logger { get; set; }

    /// <summary>
    /// Called (on a background thread) when a batch fails without retry, for example UNAUTHENTICATED. Must not throw.
    /// </summary>
    public Action<UsageBatchFailedException>? OnBatchFailed { get; set; }

    /// <summary>
    /// Called (on the stream's reading thread) for each batch the server acknowledged, with the batch's event
    /// count and its reply latency: the time from the batch being written to the stream (for the last time,
    /// when it was resent) until its reply arrived. For load harnesses and latency metrics; allocates nothing
    /// per batch. Runs before the next reply is read, so it must be quick, and it must not throw.
    /// </summary>
    public Action<int, TimeSpan>? OnBatchAcknowledged { get; set; }

    /// <summary>
    /// Receives, once per batch, the outcome of the batch's events enqueued with a tag
    /// (<see cref="UsageClient.TryEnqueueTagged"/>, <see cref="UsageClient.EnqueueTaggedAsync"/>): which tags were
    /// acknowledged as durable, which were rejected, or that the batch failed. The cheap way to learn the outcome of
    /// many events: no task per event, one call per batch. Required to enqueue tagged events.
    /// </summary>
    /// <remarks>
    /// Each batch holding tagged events is reported exactly once, after the client released its buffer space and
    /// before <see cref="UsageClient.FlushAsync"/> covering it completes; calls never overlap and come in the order the
    /// events were enqueued. Called on the stream's reading thread (on a background thread for a failure), before the
    /// next reply is read, so it must be quick; it must not throw (an exception is logged and ignored).
    /// </remarks>
    public UsageTaggedEventsHandler? OnTaggedEventsFinished { get; set; }

    internal void Validate()
    {
        if (Endpoint is null)
        {
            throw new ArgumentException("UsageClientOptions.Endpoint is required.", nameof(Endpoint));
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxBatchEvents, 1, nameof(MaxBatchEvents));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxBatchBytes, 1024, nameof(MaxBatchBytes));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxBatchesInFlight, 1, nameof(MaxBatchesInFlight));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxBufferedEvents, 1, nameof(MaxBufferedEvents));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(MaxBatchDelay, TimeSpan.Zero, nameof(MaxBatchDelay));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(RetryMinBackoff, TimeSpan.Zero, nameof(RetryMinBackoff));
        ArgumentOutOfRangeException.ThrowIfLessThan(RetryMaxBackoff, RetryMinBackoff, nameof(RetryMaxBackoff));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(DisposeTimeout, TimeSpan.Zero, nameof(DisposeTimeout));
    }
}
