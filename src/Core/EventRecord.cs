using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace AlphaMesh.Core;

/// <summary>
/// The binary format of one usage event in the event log (version 1). Everything the aggregator
/// needs, nothing it must look up:
/// <code>
/// offset  size  field
///  0      1     version (1)
///  1      1     flags (0; reserved)
///  2      8     event time, Unix nanoseconds, little endian
/// 10      8     ingest time, Unix nanoseconds, little endian
/// 18      2     number of data entries, little endian
/// 20      ...   tenant, id, type, customer: each a varint length then UTF-8 bytes
///         ...   data entries: varint key length, key, varint value length, value
/// </code>
/// The record's length is the log entry's length, so it is not stored.
/// </summary>
public static class EventRecord
{
    public const byte CurrentVersion = 1;
    public const int HeaderSize = 20;
    public const int MaxDataEntries = ushort.MaxValue;

    /// <summary>Upper bound of the encoded size for the given field sizes.</summary>
    public static int MaxEncodedSize(int tenantBytes, int idBytes, int typeBytes, int customerBytes, int dataBytes, int dataEntries)
        => HeaderSize + (4 * 5) + tenantBytes + idBytes + typeBytes + customerBytes + (dataEntries * 10) + dataBytes;

    /// <summary>Writes the header and the four identifying strings; returns the bytes written.
    /// Data entries follow through <see cref="WriteDataEntry"/>, then <see cref="SetDataCount"/>.</summary>
    public static int WriteHead(Span<byte> destination, long eventTimeUnixNanos, long ingestTimeUnixNanos,
        ReadOnlySpan<byte> tenant, ReadOnlySpan<byte> id, ReadOnlySpan<byte> type, ReadOnlySpan<byte> customer)
    {
        destination[0] = CurrentVersion;
        destination[1] = 0;
        BinaryPrimitives.WriteInt64LittleEndian(destination.Slice(2), eventTimeUnixNanos);
        BinaryPrimitives.WriteInt64LittleEndian(destination.Slice(10), ingestTimeUnixNanos);
        BinaryPrimitives.WriteUInt16LittleEndian(destination.Slice(18), 0);
        int written = HeaderSize;
        written += WriteField(destination.Slice(written), tenant);
        written += WriteField(destination.Slice(written), id);
        written += WriteField(destination.Slice(written), type);
        written += WriteField(destination.Slice(written), customer);
        return written;
    }

    /// <summary>Writes one data entry; returns the bytes written.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int WriteDataEntry(Span<byte> destination, ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        int written = WriteField(destination, key);
        return written + WriteField(destination.Slice(written), value);
    }

    public static void SetDataCount(Span<byte> record, int count)
        => BinaryPrimitives.WriteUInt16LittleEndian(record.Slice(18), checked((ushort)count));

    /// <summary>Overwrites the event time of an encoded record (for an event sent without one).</summary>
    public static void SetEventTime(Span<byte> record, long eventTimeUnixNanos)
        => BinaryPrimitives.WriteInt64LittleEndian(record.Slice(2), eventTimeUnixNanos);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int WriteField(Span<byte> destination, ReadOnlySpan<byte> value)
    {
        int written = Varint.Write(destination, (uint)value.Length);
        value.CopyTo(destination.Slice(written));
        return written + value.Length;
    }

    /// <summary>Reads a record; false when it is not a well-formed record of a known version.</summary>
    public static bool TryRead(ReadOnlySpan<byte> record, out EventRecordView view)
    {
        view = default;
        if (record.Length < HeaderSize || record[0] != CurrentVersion)
            return false;
        var rest = record.Slice(HeaderSize);
        int consumed = 0;
        if (!TryReadField(rest, ref consumed, out var tenant)
            || !TryReadField(rest, ref consumed, out var id)
            || !TryReadField(rest, ref consumed, out var type)
            || !TryReadField(rest, ref consumed, out var customer))
            return false;
        var data = rest.Slice(consumed);
        int count = BinaryPrimitives.ReadUInt16LittleEndian(record.Slice(18));
        // Check the data entries once, so that enumerating them later cannot fail.
        int offset = 0;
        for (int i = 0; i < count; i++)
        {
            if (!TryReadField(data, ref offset, out _) || !TryReadField(data, ref offset, out _))
                return false;
        }
        if (offset != data.Length)
            return false;
        view = new EventRecordView(
            BinaryPrimitives.ReadInt64LittleEndian(record.Slice(2)),
            BinaryPrimitives.ReadInt64LittleEndian(record.Slice(10)),
            tenant, id, type, customer, data, count);
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool TryReadField(ReadOnlySpan<byte> source, scoped ref int offset, out ReadOnlySpan<byte> value)
    {
        value = default;
        if (!Varint.TryRead(source.Slice(offset), out uint length, out int lengthBytes))
            return false;
        int start = offset + lengthBytes;
        if ((ulong)start + length > (ulong)source.Length)
            return false;
        value = source.Slice(start, (int)length);
        offset = start + (int)length;
        return true;
    }
}

/// <summary>A decoded view over an encoded <see cref="EventRecord"/>; valid while the record's bytes are.</summary>
public readonly ref struct EventRecordView
{
    public EventRecordView(long eventTimeUnixNanos, long ingestTimeUnixNanos, ReadOnlySpan<byte> tenant,
        ReadOnlySpan<byte> id, ReadOnlySpan<byte> type, ReadOnlySpan<byte> customer, ReadOnlySpan<byte> data, int dataCount)
    {
        EventTimeUnixNanos = eventTimeUnixNanos;
        IngestTimeUnixNanos = ingestTimeUnixNanos;
        Tenant = tenant;
        Id = id;
        Type = type;
        Customer = customer;
        DataBytes = data;
        DataCount = dataCount;
    }

    public long EventTimeUnixNanos { get; }
    public long IngestTimeUnixNanos { get; }
    public ReadOnlySpan<byte> Tenant { get; }
    public ReadOnlySpan<byte> Id { get; }
    public ReadOnlySpan<byte> Type { get; }
    public ReadOnlySpan<byte> Customer { get; }
    public ReadOnlySpan<byte> DataBytes { get; }
    public int DataCount { get; }

    public DateTime EventTimeUtc => DateTime.UnixEpoch.AddTicks(EventTimeUnixNanos / 100);

    public DataEnumerator Data => new(DataBytes, DataCount);

    /// <summary>Enumerates data entries without allocating.</summary>
    public ref struct DataEnumerator
    {
        private readonly ReadOnlySpan<byte> _data;
        private readonly int _count;
        private int _index;
        private int _offset;

        internal DataEnumerator(ReadOnlySpan<byte> data, int count)
        {
            _data = data;
            _count = count;
            _index = -1;
            _offset = 0;
            Key = default;
            Value = default;
        }

        public ReadOnlySpan<byte> Key { get; private set; }
        public ReadOnlySpan<byte> Value { get; private set; }

        public readonly DataEnumerator GetEnumerator() => this;

        public readonly DataEnumerator Current => this;

        public bool MoveNext()
        {
            if (++_index >= _count)
                return false;
            // The record was checked by TryRead, so these reads succeed.
            EventRecord.TryReadField(_data, ref _offset, out var key);
            EventRecord.TryReadField(_data, ref _offset, out var value);
            Key = key;
            Value = value;
            return true;
        }
    }
}
