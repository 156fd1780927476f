using System.Buffers;
using System.Diagnostics;
using System.Threading.Channels;
using AlphaMesh.Client.Internal;
using Grpc.Core;
using Grpc.Net.Client;

namespace AlphaMesh.Client;

/// <summary>
/// Sends usage events to AlphaMesh over one bidirectional gRPC stream, in batches, and retries until each
/// batch is acknowledged as durable. Thread-safe; create one per process and dispose it on shutdown.
/// </summary>
/// <remarks>
/// Events are encoded into protobuf bytes when they are enqueued. A batch is sent when it holds
/// <see cref="UsageClientOptions.MaxBatchEvents"/> events or <see cref="UsageClientOptions.MaxBatchDelay"/>
/// after its first event. Event ids (generated as UUIDv7 when not given) and times (stamped when not given)
/// are fixed at enqueue, so a resend after a reconnect is deduplicated by the server.
/// </remarks>
public sealed class UsageClient : IAsyncDisposable
{
    private readonly UsageClientOptions _options;
    private readonly GrpcChannel _channel;
    private readonly Channel<EventBatch> _outgoing;
    private readonly BatchSender _sender;
    private readonly Task _sending;
    private readonly CancellationTokenSource _stop = new();
    private readonly ClientCounters _counters = new();
    private readonly Timer _batchTimer;
    private readonly string _batchIdPrefix = Guid.NewGuid().ToString("N") + "-";

    private readonly Lock _gate = new();
    private EventBatch? _current;          // guarded by _gate
    private EventBatch? _lastSealed;       // guarded by _gate
    private long _batchSequence;           // guarded by _gate
    private int _buffered;                 // guarded by _gate: events from enqueue until acknowledged or failed
    private int _nextBatchCapacity = 16 * 1024; // guarded by _gate
    private bool _closed;                  // guarded by _gate
    private TaskCompletionSource? _spaceAvailable; // guarded by _gate
    private int _disposed;

    /// <summary>Creates the client; the stream is opened when the first batch is ready.</summary>
    public UsageClient(UsageClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _channel = GrpcChannel.ForAddress(options.Endpoint!, CreateChannelOptions(options));

        var headers = new Metadata();
        if (options.ApiKey is not null)
        {
            headers.Add("authorization", "Bearer " + options.ApiKey);
        }

        // Bounded by the event budget: every sealed batch holds at least one buffered event, so the channel
        // can never hold more than MaxBufferedEvents batches and a write to it never has to wait.
        _outgoing = Channel.CreateBounded<EventBatch>(new BoundedChannelOptions(options.MaxBufferedEvents)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _batchTimer = new Timer(static state => ((UsageClient)state!).OnBatchTimer(), this, Timeout.Infinite, Timeout.Infinite);
        _sender = new BatchSender(_channel.CreateCallInvoker(), headers, _outgoing.Reader, options, _counters, OnBatchFinished);
        _sending = Task.Run(() => _sender.RunAsync(_stop.Token));
    }

    /// <summary>The options of the client's channel: <see cref="UsageClientOptions.ChannelOptions"/> when given.</summary>
    internal static GrpcChannelOptions CreateChannelOptions(UsageClientOptions options)
        => options.ChannelOptions ?? new GrpcChannelOptions
        {
            HttpHandler = options.HttpHandler,
            // The channel has a reconnect back-off of its own (1 s, growing to 120 s) and, while it waits, fails
            // every call at once without trying to connect. Left at its defaults, it made a client that had seen
            // the server down for a minute wait up to two more minutes after the server was back, whatever
            // RetryMaxBackoff said. The stream's retry is the one back-off; the channel follows the same bounds.
            InitialReconnectBackoff = options.RetryMinBackoff,
            MaxReconnectBackoff = options.RetryMaxBackoff,
        };

    /// <summary>A snapshot of the client's counters.</summary>
    public UsageClientCounters Counters => _counters.Snapshot();

    /// <summary>
    /// Buffers one event, waiting while the buffer is full. Completes once the event is buffered (not yet sent).
    /// </summary>
    /// <param name="type">The event type. Required.</param>
    /// <param name="customer">The tenant's customer the usage is billed to. Required.</param>
    /// <param name="data">Properties (numbers as decimal text). Copied before this method returns.</param>
    /// <param name="time">When the usage happened; the current UTC time when null.</param>
    /// <param name="id">The idempotency key (at most 256 UTF-8 bytes); a UUIDv7 when null.</param>
    /// <param name="cancellationToken">Cancels waiting for buffer space.</param>
    public ValueTask EnqueueAsync(string type, string customer, ReadOnlySpan<KeyValuePair<string, string>> data,
        DateTimeOffset? time = null, string? id = null, CancellationToken cancellationToken = default)
    {
        if (TryAppend(type, customer, data, time, id, default(Tracking)))
        {
            return default;
        }
        return new ValueTask(AppendWhenSpaceAsync(type, customer, data.ToArray(), time ?? DateTimeOffset.UtcNow, id, default(Tracking), cancellationToken));
    }

    /// <inheritdoc cref="EnqueueAsync(string, string, ReadOnlySpan{KeyValuePair{string, string}}, DateTimeOffset?, string?, CancellationToken)"/>
    public ValueTask EnqueueAsync(string type, string customer, IReadOnlyDictionary<string, string>? data = null,
        DateTimeOffset? time = null, string? id = null, CancellationToken cancellationToken = default)
    {
        var rented = Rent(data, out int count);
        try
        {
            return EnqueueAsync(type, customer, rented.AsSpan(0, count), time, id, cancellationToken);
        }
        finally
        {
            Return(rented, count);
        }
    }

    /// <summary>Buffers one event if there is room; returns false, without waiting, when the buffer is full.</summary>
    /// <inheritdoc cref="EnqueueAsync(string, string, ReadOnlySpan{KeyValuePair{string, string}}, DateTimeOffset?, string?, CancellationToken)"/>
    public bool TryEnqueue(string type, string customer, ReadOnlySpan<KeyValuePair<string, string>> data,
        DateTimeOffset? time = null, string? id = null)
        => TryAppend(type, customer, data, time, id, default(Tracking));

    /// <summary>
    /// Buffers one event with a tag of the caller's choosing, if there is room; returns false, without waiting, when
    /// the buffer is full. Its outcome (acknowledged, rejected, or failed with its batch) is reported with its tag to
    /// <see cref="UsageClientOptions.OnTaggedEventsFinished"/>, once per batch: the cheap way to track many events
    /// (<see cref="TrackAsync(string, string, ReadOnlySpan{KeyValuePair{string, string}}, DateTimeOffset?, string?, CancellationToken)"/>
    /// costs a task per event).
    /// </summary>
    /// <param name="tag">Any value that tells the caller which event it was, for example an index into its own table.</param>
    /// <param name="type">The event type. Required.</param>
    /// <param name="customer">The tenant's customer the usage is billed to. Required.</param>
    /// <param name="data">Properties (numbers as decimal text). Copied before this method returns.</param>
    /// <param name="time">When the usage happened; the current UTC time when null.</param>
    /// <param name="id">The idempotency key (at most 256 UTF-8 bytes); a UUIDv7 when null.</param>
    /// <exception cref="InvalidOperationException"><see cref="UsageClientOptions.OnTaggedEventsFinished"/> is not set.</exception>
    public bool TryEnqueueTagged(long tag, string type, string customer, ReadOnlySpan<KeyValuePair<string, string>> data,
        DateTimeOffset? time = null, string? id = null)
        => TryAppend(type, customer, data, time, id, TagTracking(tag));

    /// <summary>
    /// Buffers one event with a tag of the caller's choosing, waiting while the buffer is full; completes once the
    /// event is buffered. Its outcome is reported with its tag to <see cref="UsageClientOptions.OnTaggedEventsFinished"/>
    /// (see <see cref="TryEnqueueTagged"/>).
    /// </summary>
    /// <param name="tag">Any value that tells the caller which event it was, for example an index into its own table.</param>
    /// <param name="type">The event type. Required.</param>
    /// <param name="customer">The tenant's customer the usage is billed to. Required.</param>
    /// <param name="data">Properties (numbers as decimal text). Copied before this method returns.</param>
    /// <param name="time">When the usage happened; the current UTC time when null.</param>
    /// <param name="id">The idempotency key (at most 256 UTF-8 bytes); a UUIDv7 when null.</param>
    /// <param name="cancellationToken">Cancels waiting for buffer space (the event is then not enqueued and not reported).</param>
    /// <exception cref="InvalidOperationException"><see cref="UsageClientOptions.OnTaggedEventsFinished"/> is not set.</exception>
    public ValueTask EnqueueTaggedAsync(long tag, string type, string customer, ReadOnlySpan<KeyValuePair<string, string>> data,
        DateTimeOffset? time = null, string? id = null, CancellationToken cancellationToken = default)
    {
        var tracking = TagTracking(tag);
        if (TryAppend(type, customer, data, time, id, tracking))
        {
            return default;
        }
        return new ValueTask(AppendWhenSpaceAsync(type, customer, data.ToArray(), time ?? DateTimeOffset.UtcNow, id, tracking, cancellationToken));
    }

    /// <summary>
    /// Sends one event and completes when its batch is acknowledged as durable. Faults with
    /// <see cref="UsageRejectedException"/> if the server refused the event, or <see cref="UsageBatchFailedException"/>
    /// if its batch failed without retry.
    /// </summary>
    /// <param name="type">The event type. Required.</param>
    /// <param name="customer">The tenant's customer the usage is billed to. Required.</param>
    /// <param name="data">Properties (numbers as decimal text). Copied before this method returns.</param>
    /// <param name="time">When the usage happened; the current UTC time when null.</param>
    /// <param name="id">The idempotency key (at most 256 UTF-8 bytes); a UUIDv7 when null.</param>
    /// <param name="cancellationToken">Stops waiting (for buffer space or the acknowledgement); a buffered event is still sent.</param>
    public Task TrackAsync(string type, string customer, ReadOnlySpan<KeyValuePair<string, string>> data,
        DateTimeOffset? time = null, string? id = null, CancellationToken cancellationToken = default)
    {
        var tracker = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (TryAppend(type, customer, data, time, id, new Tracking(tracker, 0, Tagged: false)))
        {
            return cancellationToken.CanBeCanceled ? tracker.Task.WaitAsync(cancellationToken) : tracker.Task;
        }
        return TrackWhenSpaceAsync(type, customer, data.ToArray(), time ?? DateTimeOffset.UtcNow, id, tracker, cancellationToken);
    }

    /// <inheritdoc cref="TrackAsync(string, string, ReadOnlySpan{KeyValuePair{string, string}}, DateTimeOffset?, string?, CancellationToken)"/>
    public Task TrackAsync(string type, string customer, IReadOnlyDictionary<string, string>? data = null,
        DateTimeOffset? time = null, string? id = null, CancellationToken cancellationToken = default)
    {
        var rented = Rent(data, out int count);
        try
        {
            return TrackAsync(type, customer, rented.AsSpan(0, count), time, id, cancellationToken);
        }
        finally
        {
            Return(rented, count);
        }
    }

    /// <summary>
    /// Sends what is buffered now and completes when every event enqueued before the call is finished:
    /// acknowledged, or failed (which <see cref="TrackAsync(string, string, ReadOnlySpan{KeyValuePair{string, string}}, DateTimeOffset?, string?, CancellationToken)"/>,
    /// <see cref="UsageClientOptions.OnTaggedEventsFinished"/> and <see cref="UsageClientOptions.OnBatchFailed"/> report,
    /// before this completes). Never faults because of a failed batch.
    /// </summary>
    public Task FlushAsync(CancellationToken cancellationToken = default)
    {
        EventBatch? last;
        lock (_gate)
        {
            SealLocked();
            last = _lastSealed;
        }
        // Batches finish in the order they were sealed, so the last one finishing means all did.
        return last is null ? Task.CompletedTask : last.Finished.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Flushes, then closes the stream. Waits at most <see cref="UsageClientOptions.DisposeTimeout"/>; batches
    /// still unacknowledged then are failed with <see cref="UsageBatchFailedException"/>.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        TaskCompletionSource? waiters;
        lock (_gate)
        {
            SealLocked();
            _closed = true;
            waiters = _spaceAvailable;
            _spaceAvailable = null;
        }
        waiters?.TrySetResult(); // they see _closed and throw ObjectDisposedException
        _outgoing.Writer.TryComplete();
        await _batchTimer.DisposeAsync().ConfigureAwait(false);

        try
        {
            await _sending.WaitAsync(_options.DisposeTimeout).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Timed out (or the sender failed): stop it; cancellation ends the call and any back-off promptly.
            await _stop.CancelAsync().ConfigureAwait(false);
            try
            {
                await _sending.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Expected: OperationCanceledException.
            }
            _sender.FailRemaining($"The client was disposed before the batch was acknowledged (DisposeTimeout {_options.DisposeTimeout}).");
        }
        _channel.Dispose();
        _stop.Dispose();
    }

    private bool TryAppend(string type, string customer, ReadOnlySpan<KeyValuePair<string, string>> data,
        DateTimeOffset? time, string? id, Tracking tracking)
    {
        ArgumentException.ThrowIfNullOrEmpty(type);
        ArgumentException.ThrowIfNullOrEmpty(customer);
        if (id is not null)
        {
            ValidateId(id);
        }
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_closed, this);
            if (_buffered >= _options.MaxBufferedEvents)
            {
                return false;
            }
            var batch = _current ?? StartBatchLocked();
            batch.Append(id, type, customer, time, data);
            if (tracking.Completion is not null)
            {
                batch.TrackLast(tracking.Completion);
            }
            else if (tracking.Tagged)
            {
                batch.TagLast(tracking.Tag);
            }
            _buffered++;
            // Written only here, under the lock: a plain increment instead of an interlocked one per event.
            Volatile.Write(ref _counters.EventsEnqueued, _counters.EventsEnqueued + 1);
            if (batch.Count >= _options.MaxBatchEvents || batch.Length >= _options.MaxBatchBytes)
            {
                SealLocked();
            }
        }
        return true;
    }

    private async Task AppendWhenSpaceAsync(string type, string customer, KeyValuePair<string, string>[] data,
        DateTimeOffset time, string? id, Tracking tracking, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task space;
            lock (_gate)
            {
                ObjectDisposedException.ThrowIf(_closed, this);
                if (_buffered < _options.MaxBufferedEvents)
                {
                    space = Task.CompletedTask;
                }
                else
                {
                    space = (_spaceAvailable ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
                }
            }
            await space.WaitAsync(cancellationToken).ConfigureAwait(false);
            if (TryAppend(type, customer, data, time, id, tracking))
            {
                return;
            }
        }
    }

    private async Task TrackWhenSpaceAsync(string type, string customer, KeyValuePair<string, string>[] data,
        DateTimeOffset time, string? id, TaskCompletionSource tracker, CancellationToken cancellationToken)
    {
        await AppendWhenSpaceAsync(type, customer, data, time, id, new Tracking(tracker, 0, Tagged: false), cancellationToken).ConfigureAwait(false);
        await tracker.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private Tracking TagTracking(long tag)
    {
        if (_options.OnTaggedEventsFinished is null)
        {
            throw new InvalidOperationException("Set UsageClientOptions.OnTaggedEventsFinished to enqueue tagged events: their outcome is reported only there.");
        }
        return new Tracking(null, tag, Tagged: true);
    }

    private EventBatch StartBatchLocked()
    {
        string id = _batchIdPrefix + (++_batchSequence).ToString(System.Globalization.CultureInfo.InvariantCulture);
        _current = new EventBatch(id, _nextBatchCapacity);
        _batchTimer.Change(_options.MaxBatchDelay, Timeout.InfiniteTimeSpan);
        return _current;
    }

    private void SealLocked()
    {
        var batch = _current;
        if (batch is null || batch.Count == 0)
        {
            return; // an empty batch stays open for the next event
        }
        _current = null;
        _lastSealed = batch;
        _nextBatchCapacity = batch.Length + (batch.Length / 8);
        // Written under the lock so batches enter the stream in the order they were sealed.
        bool written = _outgoing.Writer.TryWrite(batch);
        Debug.Assert(written, "The outgoing channel holds at most MaxBufferedEvents batches.");
    }

    private void OnBatchTimer()
    {
        lock (_gate)
        {
            var batch = _current;
            if (batch is null || _closed)
            {
                return;
            }
            var age = Stopwatch.GetElapsedTime(batch.StartedAt);
            if (age < _options.MaxBatchDelay)
            {
                // The timer was armed for an earlier batch; wait out this one's remaining delay.
                _batchTimer.Change(_options.MaxBatchDelay - age, Timeout.InfiniteTimeSpan);
                return;
            }
            SealLocked();
        }
    }

    private void OnBatchFinished(EventBatch batch)
    {
        TaskCompletionSource? waiters;
        lock (_gate)
        {
            _buffered -= batch.Count;
            waiters = _spaceAvailable;
            _spaceAvailable = null;
        }
        waiters?.TrySetResult();
    }

    private static void ValidateId(string id)
    {
        if (id.Length == 0 || (id.Length > 85 && System.Text.Encoding.UTF8.GetByteCount(id) > 256))
        {
            throw new ArgumentException("An event id must be 1 to 256 UTF-8 bytes.", nameof(id));
        }
    }

    private static KeyValuePair<string, string>[] Rent(IReadOnlyDictionary<string, string>? data, out int count)
    {
        count = data?.Count ?? 0;
        if (count == 0)
        {
            return [];
        }
        var rented = ArrayPool<KeyValuePair<string, string>>.Shared.Rent(count);
        int i = 0;
        foreach (var pair in data!)
        {
            rented[i++] = pair;
        }
        return rented;
    }

    private static void Return(KeyValuePair<string, string>[] rented, int count)
    {
        if (rented.Length > 0)
        {
            rented.AsSpan(0, count).Clear();
            ArrayPool<KeyValuePair<string, string>>.Shared.Return(rented);
        }
    }

    /// <summary>How an event's outcome is reported: a task (<c>TrackAsync</c>), a tag, or not at all (default).</summary>
    private readonly record struct Tracking(TaskCompletionSource? Completion, long Tag, bool Tagged);
}
