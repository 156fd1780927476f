using System.Buffers;
using System.Diagnostics;
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

    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private byte[] _buffer;
    private int _length;
    private List<(int Index, TaskCompletionSource Task)>? _trackers;

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

    /// <summary>Completes (never faults) when the batch was acknowledged or failed for good.</summary>
    public Task Finished => _completion.Task;

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
            // Upper bound of the body, to reserve the length prefix before the body is written.
            long bound = StringFieldBound(id?.Length ?? GeneratedIdLength) + StringFieldBound(type.Length)
                + StringFieldBound(customer.Length) + 2 + 17;
            foreach (var pair in data)
            {
                if (pair.Key is null || pair.Value is null)
                {
                    ThrowNullData();
                }
                bound += 6 + StringFieldBound(pair.Key.Length) + StringFieldBound(pair.Value.Length);
            }
            if (bound > int.MaxValue / 2)
            {
                throw new ArgumentException("The usage event is too large.");
            }

            int bodyStart = BeginLengthDelimited(TagEvent, (uint)bound, out int reserved);
            DateTimeOffset now = default;
            if (id is null || time is null)
            {
                now = DateTimeOffset.UtcNow;
            }
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
            WriteTimestampField(TagTime, time ?? now);
            foreach (var pair in data)
            {
                long entryBound = StringFieldBound(pair.Key.Length) + StringFieldBound(pair.Value.Length);
                int entryStart = BeginLengthDelimited(TagData, (uint)entryBound, out int entryReserved);
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
        _completion.TrySetResult();
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
        _completion.TrySetResult();
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

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long StringFieldBound(int chars) => 1 + 5 + ((long)chars * MaxUtf8BytesPerChar);

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
        if (value.Length * MaxUtf8BytesPerChar < 0x80)
        {
            // Short string (the common case): its length fits one varint byte whatever the chars are,
            // so encode first and write the length after, in one pass.
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
    private void WriteTimestampField(byte tag, DateTimeOffset time)
    {
        long seconds = Math.DivRem(time.UtcTicks - UnixEpochTicks, TimeSpan.TicksPerSecond, out long remainder);
        if (remainder < 0)
        {
            seconds--;
            remainder += TimeSpan.TicksPerSecond;
        }
        int nanos = (int)remainder * 100;

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

    /// <summary>Writes the tag and reserves room for the varint length of a body of at most <paramref name="maxBodyLength"/> bytes.</summary>
    private int BeginLengthDelimited(byte tag, uint maxBodyLength, out int reserved)
    {
        reserved = VarintSize(maxBodyLength);
        EnsureCapacity(1 + reserved);
        _buffer[_length] = tag;
        _length += 1 + reserved;
        return _length;
    }

    /// <summary>Writes the body's length into the reserved room, moving the body left if it needed fewer bytes.</summary>
    private void EndLengthDelimited(int bodyStart, int reserved)
    {
        int bodyLength = _length - bodyStart;
        int size = VarintSize((uint)bodyLength);
        int prefixStart = bodyStart - reserved;
        if (size < reserved)
        {
            _buffer.AsSpan(bodyStart, bodyLength).CopyTo(_buffer.AsSpan(prefixStart + size));
            _length -= reserved - size;
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
    private static int VarintSize(uint value) => value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x20_0000 ? 3 : value < 0x1000_0000 ? 4 : 5;

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
