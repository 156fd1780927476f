using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Text.Json;

namespace AlphaMesh.Ingest.Internal;

/// <summary>What shape of CloudEvents JSON a request body must have, by its content type.</summary>
internal enum CloudEventsMode
{
    /// <summary><c>application/cloudevents+json</c>: one event object.</summary>
    Single,

    /// <summary><c>application/cloudevents-batch+json</c>: an array of event objects.</summary>
    Batch,

    /// <summary><c>application/json</c>: either one object or an array of them.</summary>
    Auto,
}

/// <summary>
/// Parses CloudEvents JSON (structured mode, one event or a batch) into an <see cref="EncodedBatch"/> with a
/// <see cref="Utf8JsonReader"/>: no DOM, no strings. Each event's strings are unescaped into the batch's
/// scratch buffer, because the record needs them raw and the attributes may come in any order (data
/// before id); the record is written when the event's object ends.
/// <para>
/// Attributes: <c>id</c>, <c>type</c>, <c>subject</c> (the customer), <c>time</c> (RFC 3339) must be strings;
/// <c>source</c> must be a string if present (it is not stored); <c>specversion</c>, if present, must be "1.0";
/// <c>data</c> is an object of string, number or boolean values. Other attributes (extensions) are ignored.
/// <c>data_base64</c> (binary data) is refused as <c>invalid_data</c>. A <c>null</c> attribute counts as absent,
/// as the CloudEvents JSON format says; an attribute given twice keeps its last value. A wrong type of a
/// known attribute or a specversion other than "1.0" makes the request malformed, as does invalid JSON;
/// problems of values are per-event rejections.
/// </para>
/// </summary>
internal static class CloudEventsBatchParser
{
    private enum Attribute : byte
    {
        Unknown,
        Id,
        Type,
        Subject,
        Time,
        Source,
        SpecVersion,
        Data,
        DataBase64,
    }

    public static bool TryParse(ReadOnlySpan<byte> json, CloudEventsMode mode, ReadOnlySpan<byte> tenantUtf8, in IngestContext context,
        EncodedBatch batch, out string? error)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var checks = new EventChecks(context, tenantUtf8, "subject");
        if (batch.PartitionCount != checks.PartitionCount)
            ThrowHelper.ThrowArgument(nameof(batch), "The batch was rented for a different partition count.");
        batch.Clear();

        if (json.Length > checks.Limits.MaxRequestBytes)
            return Fail(batch, $"the request is {json.Length} bytes; the limit is {checks.Limits.MaxRequestBytes}", out error);

        var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow });
        int eventCount = 0;
        try
        {
            if (!reader.Read())
                return Fail(batch, "the body is empty", out error);
            if (reader.TokenType == JsonTokenType.StartObject)
            {
                if (mode == CloudEventsMode.Batch)
                    return Fail(batch, "expected a JSON array of events (application/cloudevents-batch+json), found an object", out error);
                if (!TryParseEvent(ref reader, tenantUtf8, checks, batch, 0, out error))
                    return Fail(batch, error, out error);
                eventCount = 1;
            }
            else if (reader.TokenType == JsonTokenType.StartArray)
            {
                if (mode == CloudEventsMode.Single)
                    return Fail(batch, "expected one JSON event object (application/cloudevents+json), found an array", out error);
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                {
                    if (reader.TokenType != JsonTokenType.StartObject)
                        return Fail(batch, $"event {eventCount}: must be a JSON object, found {TokenName(reader.TokenType)}", out error);
                    if (eventCount == checks.Limits.MaxEventsPerBatch)
                        return Fail(batch, $"the request has more than {checks.Limits.MaxEventsPerBatch} events; the limit is {checks.Limits.MaxEventsPerBatch}", out error);
                    if (!TryParseEvent(ref reader, tenantUtf8, checks, batch, eventCount, out error))
                        return Fail(batch, error, out error);
                    eventCount++;
                }
            }
            else
            {
                return Fail(batch, $"expected a JSON object or array of events, found {TokenName(reader.TokenType)}", out error);
            }
            // The reader throws on anything but whitespace after the top-level value.
            if (reader.Read())
                return Fail(batch, "unexpected content after the JSON value", out error);
        }
        catch (JsonException ex)
        {
            return Fail(batch, $"invalid JSON: {ex.Message}", out error);
        }
        batch.Complete(eventCount);
        error = null;
        return true;
    }

    /// <summary>Reads one event object (the reader is on its StartObject; it ends on its EndObject).</summary>
    private static bool TryParseEvent(ref Utf8JsonReader reader, ReadOnlySpan<byte> tenant, in EventChecks checks, EncodedBatch batch,
        int index, [NotNullWhen(false)] out string? error)
    {
        var draft = default(EventDraft);
        batch.ResetScratch();
        while (Read(ref reader) != JsonTokenType.EndObject)
        {
            var attribute = Classify(ref reader);
            var token = Read(ref reader);
            if (token == JsonTokenType.Null)
                continue;
            switch (attribute)
            {
                case Attribute.Id:
                    if (token != JsonTokenType.String)
                        return WrongType(index, "id", token, out error);
                    draft.Id = CopyString(ref reader, batch);
                    break;
                case Attribute.Type:
                    if (token != JsonTokenType.String)
                        return WrongType(index, "type", token, out error);
                    draft.Type = CopyString(ref reader, batch);
                    break;
                case Attribute.Subject:
                    if (token != JsonTokenType.String)
                        return WrongType(index, "subject", token, out error);
                    draft.Customer = CopyString(ref reader, batch);
                    break;
                case Attribute.Time:
                    if (token != JsonTokenType.String)
                        return WrongType(index, "time", token, out error);
                    draft.TimeText = CopyString(ref reader, batch);
                    draft.Time = Rfc3339.TryParse(draft.TimeText.Of(batch.Scratch), out draft.Seconds, out draft.Nanos)
                        ? TimeState.Present
                        : TimeState.Unparsable;
                    break;
                case Attribute.Source:
                    if (token != JsonTokenType.String)
                        return WrongType(index, "source", token, out error);
                    break;
                case Attribute.SpecVersion:
                    if (token != JsonTokenType.String || !reader.ValueTextEquals("1.0"u8))
                        return EventFail(index, "'specversion' must be \"1.0\"", out error);
                    break;
                case Attribute.Data:
                    // The last "data" wins, as for every other attribute.
                    draft.DataCount = 0;
                    draft.DataIsNotObject = token != JsonTokenType.StartObject;
                    if (draft.DataIsNotObject)
                        reader.Skip();
                    else
                        ReadData(ref reader, checks, batch, ref draft);
                    break;
                case Attribute.DataBase64:
                    // Binary data cannot be metered; ignoring it like an extension would silently drop
                    // the event's properties, so the event is refused instead.
                    draft.DataIsBase64 = true;
                    reader.Skip();
                    break;
                default:
                    // An extension attribute: skip its value, whatever it is.
                    reader.Skip();
                    break;
            }
        }
        EventEncoder.Add(batch, batch.Scratch, draft, tenant, checks, index);
        error = null;
        return true;
    }

    /// <summary>Reads the data object's entries into the batch's data slots (the reader ends on its EndObject).</summary>
    private static void ReadData(ref Utf8JsonReader reader, in EventChecks checks, EncodedBatch batch, ref EventDraft draft)
    {
        int maxEntries = checks.Limits.MaxDataEntries;
        while (Read(ref reader) != JsonTokenType.EndObject)
        {
            // Past the limit only count (and skip): the event is rejected for the count anyway.
            bool keep = draft.DataCount < maxEntries;
            var entry = default(DataSlot);
            if (keep)
                entry.Key = CopyString(ref reader, batch);
            switch (Read(ref reader))
            {
                case JsonTokenType.String:
                    if (keep)
                        entry.Value = CopyString(ref reader, batch);
                    entry.Kind = DataValueKind.Text;
                    break;
                case JsonTokenType.Number:
                    // Stored as its exact source text (a JSON number is never escaped).
                    if (keep)
                        entry.Value = CopyRaw(reader.ValueSpan, batch);
                    entry.Kind = DataValueKind.Number;
                    break;
                case JsonTokenType.True:
                    if (keep)
                        entry.Value = CopyRaw("true"u8, batch);
                    entry.Kind = DataValueKind.Text;
                    break;
                case JsonTokenType.False:
                    if (keep)
                        entry.Value = CopyRaw("false"u8, batch);
                    entry.Kind = DataValueKind.Text;
                    break;
                case JsonTokenType.Null:
                    entry.Kind = DataValueKind.Null;
                    break;
                case JsonTokenType.StartObject:
                    entry.Kind = DataValueKind.Object;
                    reader.Skip();
                    break;
                default:
                    entry.Kind = DataValueKind.Array;
                    reader.Skip();
                    break;
            }
            if (keep)
                batch.DataSlots(draft.DataCount + 1)[draft.DataCount] = entry;
            draft.DataCount++;
        }
    }

    /// <summary>Reads the next token. With the whole body in hand the reader throws on bad or truncated
    /// JSON rather than returning false, so false here cannot happen; treat it as truncation anyway.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static JsonTokenType Read(ref Utf8JsonReader reader)
    {
        if (!reader.Read())
            ThrowTruncated();
        return reader.TokenType;
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowTruncated() => throw new JsonException("The JSON ends in the middle of a value.");

    private static Attribute Classify(ref Utf8JsonReader reader)
    {
        // ValueTextEquals compares the unescaped name, so "\u0069d" is "id" as JSON says.
        if (reader.ValueTextEquals("id"u8))
            return Attribute.Id;
        if (reader.ValueTextEquals("type"u8))
            return Attribute.Type;
        if (reader.ValueTextEquals("subject"u8))
            return Attribute.Subject;
        if (reader.ValueTextEquals("time"u8))
            return Attribute.Time;
        if (reader.ValueTextEquals("data"u8))
            return Attribute.Data;
        if (reader.ValueTextEquals("source"u8))
            return Attribute.Source;
        if (reader.ValueTextEquals("specversion"u8))
            return Attribute.SpecVersion;
        if (reader.ValueTextEquals("data_base64"u8))
            return Attribute.DataBase64;
        return Attribute.Unknown;
    }

    /// <summary>Unescapes the current string (or property name) into the scratch buffer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ByteRange CopyString(ref Utf8JsonReader reader, EncodedBatch batch)
        => reader.ValueIsEscaped ? CopyEscaped(ref reader, batch) : CopyRaw(reader.ValueSpan, batch);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ByteRange CopyRaw(ReadOnlySpan<byte> value, EncodedBatch batch)
    {
        value.CopyTo(batch.BeginScratch(value.Length));
        return batch.CommitScratch(value.Length);
    }

    private static ByteRange CopyEscaped(ref Utf8JsonReader reader, EncodedBatch batch)
    {
        // Unescaped text is never longer than its escaped form.
        var destination = batch.BeginScratch(reader.ValueSpan.Length);
        int written;
        try
        {
            written = reader.CopyString(destination);
        }
        catch (InvalidOperationException)
        {
            // An escape that is not valid UTF-16 (a lone surrogate such as "\ud800") has no UTF-8 form.
            // It is a problem of this value, not of the request: store one byte that is never valid UTF-8,
            // so that validation rejects the event as invalid_utf8 like an invalid protobuf string.
            destination[0] = 0xFF;
            written = 1;
        }
        return batch.CommitScratch(written);
    }

    private static string TokenName(JsonTokenType token) => token switch
    {
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.String => "a string",
        JsonTokenType.Number => "a number",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        _ => token.ToString(),
    };

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool WrongType(int index, string attribute, JsonTokenType token, out string error)
        => EventFail(index, $"'{attribute}' must be a string, found {TokenName(token)}", out error);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool EventFail(int index, string reason, out string error)
    {
        error = $"event {index}: {reason}";
        return false;
    }

    /// <summary>Leaves nothing behind: a malformed request is refused as a whole.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool Fail(EncodedBatch batch, string reason, out string? error)
    {
        batch.Clear();
        error = reason;
        return false;
    }
}
