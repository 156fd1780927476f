using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Unicode;

namespace AlphaMesh.Ingest.Internal;

/// <summary>
/// Parses an <c>alphamesh.usage.v1.IngestRequest</c> straight from its bytes into an <see cref="EncodedBatch"/>,
/// without the generated message types (which would allocate a string per field and a dictionary per event).
/// Protobuf rules: fields in any order, unknown fields skipped by wire type, the last of a repeated scalar
/// field wins, repeated occurrences of an embedded message (the time) merge, a map entry may omit its key
/// or value (= ""). A wrong wire type on a known field makes the request malformed. Two map entries with
/// the same key are refused as <c>duplicate_data_key</c> rather than merged last-wins as the generated
/// parser would: a property with two values is ambiguous, and JSON events are refused for it too.
/// </summary>
internal static class ProtobufBatchParser
{
    // Field numbers of usage.proto.
    private const int RequestBatchId = 1;
    private const int RequestEvents = 2;
    private const int EventId = 1;
    private const int EventType = 2;
    private const int EventCustomer = 3;
    private const int EventTime = 4;
    private const int EventData = 5;
    private const int TimestampSeconds = 1;
    private const int TimestampNanos = 2;
    private const int MapKey = 1;
    private const int MapValue = 2;

    /// <summary>
    /// Parses the request. Malformed (not protobuf, wrong wire type, truncated, too many events, ...):
    /// false with the reason in <paramref name="error"/>, and the batch holds nothing. Otherwise true:
    /// every valid event is a record, every invalid one a rejection.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> request, ReadOnlySpan<byte> tenantUtf8, in IngestContext context,
        EncodedBatch batch, out string? error)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var checks = new EventChecks(context, tenantUtf8, "customer");
        if (batch.PartitionCount != checks.PartitionCount)
            ThrowHelper.ThrowArgument(nameof(batch), "The batch was rented for a different partition count.");
        batch.Clear();

        if (request.Length > checks.Limits.MaxRequestBytes)
            return Fail(batch, $"the request is {request.Length} bytes; the limit is {checks.Limits.MaxRequestBytes}", out error);

        var reader = new ProtoWireReader(request, new ByteRange(0, request.Length));
        var batchId = default(ByteRange);
        int eventCount = 0;
        while (!reader.End)
        {
            if (!reader.TryReadTag(out int field, out var wireType))
                return Fail(batch, reader.Describe(), out error);
            switch (field)
            {
                case RequestBatchId:
                    if (wireType != WireType.LengthDelimited)
                        return Fail(batch, WrongWireType("batch_id", RequestBatchId, wireType), out error);
                    if (!reader.TryReadLengthDelimited(out batchId))
                        return Fail(batch, reader.Describe(), out error);
                    break;
                case RequestEvents:
                    if (wireType != WireType.LengthDelimited)
                        return Fail(batch, WrongWireType("events", RequestEvents, wireType), out error);
                    if (!reader.TryReadLengthDelimited(out var eventRange))
                        return Fail(batch, reader.Describe(), out error);
                    if (eventCount == checks.Limits.MaxEventsPerBatch)
                        return Fail(batch, $"the request has more than {checks.Limits.MaxEventsPerBatch} events; the limit is {checks.Limits.MaxEventsPerBatch}", out error);
                    if (!TryParseEvent(request, eventRange, tenantUtf8, checks, batch, eventCount, out error))
                        return Fail(batch, error, out error);
                    eventCount++;
                    break;
                default:
                    if (!reader.TrySkip(field, wireType))
                        return Fail(batch, reader.Describe(), out error);
                    break;
            }
        }

        var batchIdBytes = batchId.Of(request);
        if (!Utf8.IsValid(batchIdBytes))
            return Fail(batch, "batch_id is not valid UTF-8", out error);
        batch.BatchId = batchIdBytes.IsEmpty ? "" : Encoding.UTF8.GetString(batchIdBytes);
        batch.Complete(eventCount);
        error = null;
        return true;
    }

    private static bool TryParseEvent(ReadOnlySpan<byte> request, ByteRange range, ReadOnlySpan<byte> tenant, in EventChecks checks,
        EncodedBatch batch, int index, [NotNullWhen(false)] out string? error)
    {
        var draft = default(EventDraft);
        int maxEntries = checks.Limits.MaxDataEntries;
        var reader = new ProtoWireReader(request, range);
        while (!reader.End)
        {
            if (!reader.TryReadTag(out int field, out var wireType))
                return EventFail(index, reader.Describe(), out error);
            if (field is >= EventId and <= EventData && wireType != WireType.LengthDelimited)
                return EventFail(index, WrongWireType(EventFieldName(field), field, wireType), out error);
            ByteRange value;
            switch (field)
            {
                case EventId:
                    if (!reader.TryReadLengthDelimited(out draft.Id))
                        return EventFail(index, reader.Describe(), out error);
                    break;
                case EventType:
                    if (!reader.TryReadLengthDelimited(out draft.Type))
                        return EventFail(index, reader.Describe(), out error);
                    break;
                case EventCustomer:
                    if (!reader.TryReadLengthDelimited(out draft.Customer))
                        return EventFail(index, reader.Describe(), out error);
                    break;
                case EventTime:
                    if (!reader.TryReadLengthDelimited(out value))
                        return EventFail(index, reader.Describe(), out error);
                    // A present but empty Timestamp is the epoch, as in protobuf; it is then too old.
                    draft.Time = TimeState.Present;
                    if (!TryParseTimestamp(request, value, ref draft, out error))
                        return EventFail(index, error, out error);
                    break;
                case EventData:
                    if (!reader.TryReadLengthDelimited(out value))
                        return EventFail(index, reader.Describe(), out error);
                    if (!TryParseMapEntry(request, value, out var entry, out error))
                        return EventFail(index, error, out error);
                    // Past the limit only count: the event is rejected for the count anyway.
                    if (draft.DataCount < maxEntries)
                        batch.DataSlots(draft.DataCount + 1)[draft.DataCount] = entry;
                    draft.DataCount++;
                    break;
                default:
                    if (!reader.TrySkip(field, wireType))
                        return EventFail(index, reader.Describe(), out error);
                    break;
            }
        }
        EventEncoder.Add(batch, request, draft, tenant, checks, index);
        error = null;
        return true;
    }

    /// <summary>Merges a google.protobuf.Timestamp into the draft's time: fields present overwrite.</summary>
    private static bool TryParseTimestamp(ReadOnlySpan<byte> request, ByteRange range, ref EventDraft draft, [NotNullWhen(false)] out string? error)
    {
        var reader = new ProtoWireReader(request, range);
        while (!reader.End)
        {
            if (!reader.TryReadTag(out int field, out var wireType))
                return TimeFail(reader.Describe(), out error);
            if (field is TimestampSeconds or TimestampNanos)
            {
                if (wireType != WireType.Varint)
                    return TimeFail(WrongWireType(field == TimestampSeconds ? "seconds" : "nanos", field, wireType), out error);
                if (!reader.TryReadVarint(out ulong number))
                    return TimeFail(reader.Describe(), out error);
                // int64 and int32 are two's complement varints; an int32 keeps its low 32 bits.
                if (field == TimestampSeconds)
                    draft.Seconds = (long)number;
                else
                    draft.Nanos = (int)number;
            }
            else if (!reader.TrySkip(field, wireType))
            {
                return TimeFail(reader.Describe(), out error);
            }
        }
        error = null;
        return true;
    }

    private static bool TryParseMapEntry(ReadOnlySpan<byte> request, ByteRange range, out DataSlot entry, [NotNullWhen(false)] out string? error)
    {
        // An omitted key or value is "": an empty range at the entry's start.
        entry = new DataSlot { Key = new ByteRange(range.Offset, 0), Value = new ByteRange(range.Offset, 0), Kind = DataValueKind.Text };
        var reader = new ProtoWireReader(request, range);
        while (!reader.End)
        {
            if (!reader.TryReadTag(out int field, out var wireType))
                return DataFail(reader.Describe(), out error);
            if (field is MapKey or MapValue)
            {
                if (wireType != WireType.LengthDelimited)
                    return DataFail(WrongWireType(field == MapKey ? "key" : "value", field, wireType), out error);
                if (!reader.TryReadLengthDelimited(out var value))
                    return DataFail(reader.Describe(), out error);
                if (field == MapKey)
                    entry.Key = value;
                else
                    entry.Value = value;
            }
            else if (!reader.TrySkip(field, wireType))
            {
                return DataFail(reader.Describe(), out error);
            }
        }
        error = null;
        return true;
    }

    private static string EventFieldName(int field) => field switch
    {
        EventId => "id",
        EventType => "type",
        EventCustomer => "customer",
        EventTime => "time",
        _ => "data",
    };

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static string WrongWireType(string name, int field, WireType wireType)
        => $"field {name} ({field}) has wire type {(int)wireType} ({wireType}); expected {(name is "seconds" or "nanos" ? "0 (Varint)" : "2 (LengthDelimited)")}";

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool EventFail(int index, string reason, out string error)
    {
        error = $"event {index}: {reason}";
        return false;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool TimeFail(string reason, out string error)
    {
        error = $"time: {reason}";
        return false;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool DataFail(string reason, out string error)
    {
        error = $"data entry: {reason}";
        return false;
    }

    /// <summary>Leaves nothing behind: a malformed request is refused as a whole.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool Fail(EncodedBatch batch, string reason, out string? error)
    {
        batch.Clear();
        error = $"malformed request: {reason}";
        return false;
    }
}
