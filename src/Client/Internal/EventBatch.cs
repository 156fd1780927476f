using System.Buffers;
using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Text;
using AlphaMesh.Usage.V1;

namespace AlphaMesh.Client.Internal;

/// <summary>
/// One <c>IngestRequest</c>, encoded straight into protobuf wire bytes in a pooled, growable buffer:
/// field 1 <c>batch_id</c>, then one length-delimited field 2 (<c>UsageEvent</c>) per event. No message
/// object is built per event; the bytes are written once and resent unchanged after a reconnect.
/// Not thread-safe: the client appends under its lock; once sealed the batch is only read.
/// </summary>
internal sealed class EventBatch
{
    /// <summary>UTF-8 takes at most three bytes per UTF-16 char.</summary>
    private const int MaxUtf8BytesPerChar = 3;
    private const int GeneratedIdLength = 36;
    private const long UnixEpochTicks = 621_355_968_000_000_000;

    // Wire tags: (field << 3) | wire type (0 = varint, 2 = length-delimited).
    private const byte TagBatchId = 0x0A, TagEvent = 0x12;
    private const byte TagId = 0x0A, TagType = 0x12, TagCustomer = 0x1A, TagTime = 0x22, TagData = 0x2A;
    private const byte TagKey = 0x0A, TagValue = 0x12;
    private const byte TagSeconds = 0x08, TagNanos = 0x10;

    private const int InitialTagCapacity = 256;

    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private byte[] _buffer;
    private int _length;
    private List<(int Index, TaskCompletionSource Task)>? _trackers;
    private long[]? _tags;         // pooled: the tags of tagged events, in append order
    private int[]? _tagIndexes;    // pooled: each tag's event index in the batch (ascending)
    private int _tagCount;
    private int _finished;

    public EventBatch(string id, int initialCapacity)
    {
        Id = id;
        _buffer = ArrayPool<byte>.Shared.Rent(Math.Max(initialCapacity, 256));
        WriteStringField(TagBatchId, id);
        StartedAt = Stopwatch.GetTimestamp();
    }

    public string Id { get; }

    /// <summary>Events in the batch.</summary>
    public int Count { get; private set; }

    /// <summary>Encoded size in bytes.</summary>
    public int Length => _length;

    /// <summary><see cref="Stopwatch"/> timestamp of the batch's creation (its first event).</summary>
    public long StartedAt { get; }

    /// <summary><see cref="Stopwatch"/> timestamp of the batch's last write to a stream (the start of its reply latency).</summary>
    public long WrittenAt { get; set; }

    /// <summary>The encoded <c>IngestRequest</c>.</summary>
    public ReadOnlySpan<byte> Payload => _buffer.AsSpan(0, _length);

    /// <summary>Completes (never faults) when the batch was acknowledged or failed for good and every report of it was made.</summary>
    public Task Finished => _completion.Task;

    /// <summary>Whether events of the batch were appended with a tag.</summary>
    public bool HasTags => _tagCount > 0;

    /// <summary>
    /// Appends one <c>UsageEvent</c>. A null <paramref name="id"/> is generated as a UUIDv7 written straight
    /// into the buffer; a null <paramref name="time"/> is stamped with the current UTC time. On an exception the
    /// batch is left as it was.
    /// </summary>
    public void Append(string? id, string type, string customer, DateTimeOffset? time, ReadOnlySpan<KeyValuePair<string, string>> data)
    {
        int start = _length;
        try
        {
            DateTimeOffset now = default;
            if (id is null || time is null)
            {
                now = DateTimeOffset.UtcNow;
            }
            var (seconds, nanos) = ToTimestamp(time ?? now);

            // The body's length if every string is ASCII (UTF-8 takes at least one byte per UTF-16 char, so the real
            // length is never less): its varint prefix is reserved before the body is written, and the body is moved
            // only when non-ASCII text made it need a longer prefix.
            long chars = (long)(id?.Length ?? GeneratedIdLength) + type.Length + customer.Length;
            long estimate = StringFieldSize(id?.Length ?? GeneratedIdLength) + StringFieldSize(type.Length)
                + StringFieldSize(customer.Length) + 2 + TimestampBodySize(seconds, nanos);
            foreach (var pair in data)
            {
                if (pair.Key is null || pair.Value is null)
                {
                    ThrowNullData();
                }
                chars += (long)pair.Key.Length + pair.Value.Length;
                estimate += LengthDelimitedSize(StringFieldSize(pair.Key.Length) + StringFieldSize(pair.Value.Length));
            }
            if ((chars * MaxUtf8BytesPerChar) + estimate > int.MaxValue / 2)
            {
                throw new ArgumentException("The usage event is too large.");
            }

            int bodyStart = BeginLengthDelimited(TagEvent, estimate, out int reserved);
            if (id is null)
            {
                WriteGeneratedId(UuidV7.Create(now));
            }
            else
            {
                WriteStringField(TagId, id);
            }
            WriteStringField(TagType, type);
            WriteStringField(TagCustomer, customer);
            WriteTimestampField(TagTime, seconds, nanos);
            foreach (var pair in data)
            {
                long entryEstimate = StringFieldSize(pair.Key.Length) + StringFieldSize(pair.Value.Length);
                int entryStart = BeginLengthDelimited(TagData, entryEstimate, out int entryReserved);
                WriteStringField(TagKey, pair.Key);
                WriteStringField(TagValue, pair.Value);
                EndLengthDelimited(entryStart, entryReserved);
            }
            EndLengthDelimited(bodyStart, reserved);
            Count++;
        }
        catch
        {
            _length = start;
            throw;
        }
    }

    /// <summary>Completes <paramref name="task"/> with the outcome of the event appended last.</summary>
    public void TrackLast(TaskCompletionSource task) => (_trackers ??= []).Add((Count - 1, task));

    /// <summary>Tags the event appended last: its outcome is reported with <see cref="ReportTags"/>.</summary>
    public void TagLast(long tag)
    {
        if (_tags is null || _tagCount == _tags.Length)
        {
            GrowTags();
        }
        _tags![_tagCount] = tag;
        _tagIndexes![_tagCount] = Count - 1;
        _tagCount++;
    }

    /// <summary>
    /// Claims the batch's outcome: true for the first caller only, so that a batch is acknowledged or failed
    /// once even if the disposal's clean-up races a late reply.
    /// </summary>
    public bool TryFinish() => Interlocked.Exchange(ref _finished, 1) == 0;

    /// <summary>The server acknowledged the batch: completes the tracked events (faulting the rejected ones).</summary>
    public void Acknowledge(IngestReply reply)
    {
        if (_trackers is not null)
        {
            Dictionary<int, Rejection>? rejected = null;
            foreach (var rejection in reply.Rejected)
            {
                (rejected ??= [])[rejection.Index] = rejection;
            }
            foreach (var (index, task) in _trackers)
            {
                if (rejected is not null && rejected.TryGetValue(index, out var rejection))
                {
                    task.TrySetException(new UsageRejectedException(rejection.Code, rejection.Message, Id, index));
                }
                else
                {
                    task.TrySetResult();
                }
            }
        }
    }

    /// <summary>The batch failed for good: faults the tracked events with <paramref name="error"/>.</summary>
    public void Fail(Exception error)
    {
        if (_trackers is not null)
        {
            foreach (var (_, task) in _trackers)
            {
                task.TrySetException(error);
            }
        }
    }

    /// <summary>
    /// Calls <paramref name="handler"/> with the outcome of the tagged events: <paramref name="reply"/>'s rejections
    /// of them, or <paramref name="failure"/>. Only when <see cref="HasTags"/>.
    /// </summary>
    public void ReportTags(UsageTaggedEventsHandler handler, IngestReply? reply, UsageBatchFailedException? failure)
    {
        Debug.Assert(_tags is not null && _tagIndexes is not null);
        var tags = _tags.AsSpan(0, _tagCount);
        UsageTaggedRejection[] rejections = [];
        if (failure is null && reply is not null && reply.Rejected.Count > 0)
        {
            rejections = FindTaggedRejections(reply, tags, _tagIndexes.AsSpan(0, _tagCount));
        }
        handler(new UsageTaggedEvents(Id, tags, rejections, failure));
    }

    /// <summary>Completes <see cref="Finished"/> and returns the tag buffers: the batch was acknowledged or failed and reported.</summary>
    public void Complete()
    {
        if (_tags is not null)
        {
            ArrayPool<long>.Shared.Return(_tags);
            ArrayPool<int>.Shared.Return(_tagIndexes!);
            _tags = null;
            _tagIndexes = null;
            _tagCount = 0;
        }
        _completion.TrySetResult();
    }

    private static UsageTaggedRejection[] FindTaggedRejections(IngestReply reply, ReadOnlySpan<long> tags, ReadOnlySpan<int> indexes)
    {
        var found = new List<UsageTaggedRejection>(reply.Rejected.Count);
        foreach (var rejection in reply.Rejected)
        {
            int position = indexes.BinarySearch(rejection.Index); // not found: an untagged event
            if (position >= 0)
            {
                found.Add(new UsageTaggedRejection(position, tags[position], rejection.Code, rejection.Message));
            }
        }
        found.Sort(static (a, b) => a.Position.CompareTo(b.Position));
        return [.. found];
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void GrowTags()
    {
        int capacity = _tags is null ? InitialTagCapacity : _tags.Length * 2;
        var tags = ArrayPool<long>.Shared.Rent(capacity);
        var indexes = ArrayPool<int>.Shared.Rent(capacity);
        if (_tags is not null)
        {
            _tags.AsSpan(0, _tagCount).CopyTo(tags);
            _tagIndexes.AsSpan(0, _tagCount).CopyTo(indexes);
            ArrayPool<long>.Shared.Return(_tags);
            ArrayPool<int>.Shared.Return(_tagIndexes!);
        }
        _tags = tags;
        _tagIndexes = indexes;
    }

    /// <summary>Returns the buffer to the pool. Only once no write of the batch can be in progress.</summary>
    public void ReturnBuffer()
    {
        var buffer = _buffer;
        _buffer = [];
        _length = 0;
        if (buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Size of a string field whose value is <paramref name="chars"/> ASCII chars (a lower bound otherwise).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long StringFieldSize(int chars) => 1 + VarintSize((uint)chars) + (long)chars;

    /// <summary>Size of a length-delimited field (tag, length, body) with a body of <paramref name="bodyLength"/> bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long LengthDelimitedSize(long bodyLength) => 1 + VarintSize((ulong)bodyLength) + bodyLength;

    private void WriteGeneratedId(Guid id)
    {
        EnsureCapacity(2 + GeneratedIdLength);
        int position = _length;
        _buffer[position] = TagId;
        _buffer[position + 1] = GeneratedIdLength;
        id.TryFormat(_buffer.AsSpan(position + 2, GeneratedIdLength), out int written);
        Debug.Assert(written == GeneratedIdLength);
        _length = position + 2 + GeneratedIdLength;
    }

    private void WriteStringField(byte tag, string value)
    {
        if (value.Length < 0x80)
        {
            // Short ASCII (the common case): one byte per char, and the length fits one varint byte.
            EnsureCapacity(2 + value.Length);
            int position = _length;
            if (Ascii.FromUtf16(value, _buffer.AsSpan(position + 2, value.Length), out _) == OperationStatus.Done)
            {
                _buffer[position] = tag;
                _buffer[position + 1] = (byte)value.Length;
                _length = position + 2 + value.Length;
                return;
            }
        }
        WriteUtf8StringField(tag, value);
    }

    private void WriteUtf8StringField(byte tag, string value)
    {
        if (value.Length * MaxUtf8BytesPerChar < 0x80)
        {
            // Short string: its length fits one varint byte whatever the chars are, so encode first and write the
            // length after, in one pass.
            EnsureCapacity(2 + (value.Length * MaxUtf8BytesPerChar));
            int position = _length;
            _buffer[position] = tag;
            int written = Encoding.UTF8.GetBytes(value, _buffer.AsSpan(position + 2));
            _buffer[position + 1] = (byte)written;
            _length = position + 2 + written;
        }
        else
        {
            int byteCount = Encoding.UTF8.GetByteCount(value);
            EnsureCapacity(1 + 5 + byteCount);
            _buffer[_length++] = tag;
            _length += WriteVarint(_buffer.AsSpan(_length), (uint)byteCount);
            _length += Encoding.UTF8.GetBytes(value, _buffer.AsSpan(_length));
        }
    }

    /// <summary>google.protobuf.Timestamp: seconds since the Unix epoch (floored) and nanos in [0, 1e9).</summary>
    private static (long Seconds, int Nanos) ToTimestamp(DateTimeOffset time)
    {
        long seconds = Math.DivRem(time.UtcTicks - UnixEpochTicks, TimeSpan.TicksPerSecond, out long remainder);
        if (remainder < 0)
        {
            seconds--;
            remainder += TimeSpan.TicksPerSecond;
        }
        return (seconds, (int)remainder * 100);
    }

    /// <summary>Size of the Timestamp message's body: each field only when not zero.</summary>
    private static int TimestampBodySize(long seconds, int nanos)
        => (seconds != 0 ? 1 + VarintSize((ulong)seconds) : 0) + (nanos != 0 ? 1 + VarintSize((uint)nanos) : 0);

    private void WriteTimestampField(byte tag, long seconds, int nanos)
    {
        EnsureCapacity(2 + 17);
        int position = _length;
        int cursor = position + 2;
        _buffer[position] = tag;
        if (seconds != 0)
        {
            _buffer[cursor++] = TagSeconds;
            cursor += WriteVarint(_buffer.AsSpan(cursor), (ulong)seconds);
        }
        if (nanos != 0)
        {
            _buffer[cursor++] = TagNanos;
            cursor += WriteVarint(_buffer.AsSpan(cursor), (uint)nanos);
        }
        _buffer[position + 1] = (byte)(cursor - position - 2);
        _length = cursor;
    }

    /// <summary>Writes the tag and reserves room for the varint length of a body of about <paramref name="expectedBodyLength"/> bytes.</summary>
    private int BeginLengthDelimited(byte tag, long expectedBodyLength, out int reserved)
    {
        reserved = VarintSize((ulong)expectedBodyLength);
        EnsureCapacity(1 + reserved);
        _buffer[_length] = tag;
        _length += 1 + reserved;
        return _length;
    }

    /// <summary>Writes the body's length into the reserved room, first moving the body if its length needs another
    /// number of bytes than were reserved.</summary>
    private void EndLengthDelimited(int bodyStart, int reserved)
    {
        int bodyLength = _length - bodyStart;
        int size = VarintSize((uint)bodyLength);
        int prefixStart = bodyStart - reserved;
        if (size != reserved)
        {
            EnsureCapacity(size - reserved);
            _buffer.AsSpan(bodyStart, bodyLength).CopyTo(_buffer.AsSpan(prefixStart + size));
            _length += size - reserved;
        }
        WriteVarint(_buffer.AsSpan(prefixStart), (uint)bodyLength);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void EnsureCapacity(int additional)
    {
        if (_buffer.Length - _length < additional)
        {
            Grow(additional);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Grow(int additional)
    {
        int required = checked(_length + additional);
        var larger = ArrayPool<byte>.Shared.Rent(Math.Max(required, _buffer.Length * 2));
        _buffer.AsSpan(0, _length).CopyTo(larger);
        if (_buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
        }
        _buffer = larger;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int VarintSize(ulong value) => (BitOperations.Log2(value | 1) / 7) + 1; // 7 bits per byte

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int WriteVarint(Span<byte> destination, ulong value)
    {
        int i = 0;
        while (value >= 0x80)
        {
            destination[i++] = (byte)(value | 0x80);
            value >>= 7;
        }
        destination[i++] = (byte)value;
        return i;
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void ThrowNullData() => throw new ArgumentException("Usage event data keys and values must not be null.", "data");
}
