using System.Diagnostics;
using System.Globalization;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Text;
using AlphaMesh.Core;

namespace AlphaMesh.Ingest.Internal;

/// <summary>The per-batch constants of event validation, computed once per request.</summary>
internal readonly struct EventChecks
{
    // The range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z.
    public const long MinTimestampSeconds = -62_135_596_800;
    public const long MaxTimestampSeconds = 253_402_300_799;

    public EventChecks(in IngestContext context, ReadOnlySpan<byte> tenant, string customerName)
    {
        if (context.Limits is null)
            ThrowHelper.ThrowArgument(nameof(context), "The context has no limits.");
        if (context.PartitionCount <= 0)
            ThrowHelper.ThrowArgumentOutOfRange(nameof(context), "The partition count must be greater than 0.");
        Limits = context.Limits;
        PartitionCount = context.PartitionCount;
        NowUnixNanos = context.NowUnixNanos;
        // IngestLimits.Validate keeps both limits within 100 years, so these cannot overflow for any
        // receive time this century; saturate anyway rather than trust a caller-made context.
        Earliest = Int128.Max(NowUnixNanos - ((Int128)Limits.BackdatingLimit.Ticks * 100), long.MinValue);
        Latest = Int128.Min(NowUnixNanos + ((Int128)Limits.MaxFutureSkew.Ticks * 100), long.MaxValue);
        CustomerName = customerName;
        TenantSeed = Partitioning.TenantSeed(tenant);
    }

    /// <summary>The tenant's part of the routing hash, computed once per request rather than per event.</summary>
    public long TenantSeed { get; }

    public IngestLimits Limits { get; }
    public int PartitionCount { get; }
    public long NowUnixNanos { get; }
    public Int128 Earliest { get; }
    public Int128 Latest { get; }

    /// <summary>What the customer is called on this wire ("customer" in protobuf, "subject" in CloudEvents), for messages.</summary>
    public string CustomerName { get; }
}

/// <summary>
/// Validates one parsed event and either appends its record to the batch or records its rejection.
/// Shared by both parsers, so that both wires refuse exactly the same events with the same codes.
/// </summary>
internal static class EventEncoder
{
    private enum Problem : byte
    {
        None,
        MissingId,
        IdTooLong,
        IdNotUtf8,
        MissingType,
        TypeTooLong,
        TypeNotUtf8,
        MissingCustomer,
        CustomerTooLong,
        CustomerNotUtf8,
        TimeUnparsable,
        TimeNanosOutOfRange,
        TimeOutOfRange,
        TimeTooOld,
        TimeInFuture,
        DataNotObject,
        DataBase64,
        TooManyDataEntries,
        KeyNotUtf8,
        EmptyKey,
        KeyTooLong,
        ValueNotData,
        ValueNotUtf8,
        ValueTooLong,
        InvalidNumber,
        DuplicateKey,
    }

    /// <summary>
    /// Checks the event (the first problem found, in this order: id, type, customer, time, data shape
    /// and entry count, then each entry: key, value, duplicate key) and appends its record or its rejection.
    /// </summary>
    public static void Add(EncodedBatch batch, ReadOnlySpan<byte> source, in EventDraft draft, ReadOnlySpan<byte> tenant,
        in EventChecks checks, int index)
    {
        var entries = draft.DataCount <= checks.Limits.MaxDataEntries
            ? batch.DataSlots(draft.DataCount).Slice(0, draft.DataCount)
            : default;
        var problem = Validate(batch, source, draft, entries, checks, out int entry, out long eventTime, out int dataBytes);
        if (problem != Problem.None)
        {
            Reject(batch, source, draft, entries, checks, index, problem, entry);
            return;
        }

        var id = draft.Id.Of(source);
        var type = draft.Type.Of(source);
        var customer = draft.Customer.Of(source);
        int partition = Partitioning.PartitionOf(checks.TenantSeed, customer, checks.PartitionCount);
        var record = batch.BeginRecord(EventRecord.MaxEncodedSize(tenant.Length, id.Length, type.Length, customer.Length, dataBytes, entries.Length));
        int written = EventRecord.WriteHead(record, eventTime, checks.NowUnixNanos, tenant, id, type, customer);
        foreach (ref readonly var slot in entries)
            written += EventRecord.WriteDataEntry(record.Slice(written), slot.Key.Of(source), slot.Value.Of(source));
        EventRecord.SetDataCount(record, entries.Length);
        batch.CommitRecord(written, partition);
    }

    /// <summary>Up to this many data entries the duplicate-key check compares keys pair by pair (at most 28 pairs).</summary>
    internal const int PairwiseDuplicateCheckEntries = 8;

    private static Problem Validate(EncodedBatch batch, ReadOnlySpan<byte> source, in EventDraft draft, ReadOnlySpan<DataSlot> entries,
        in EventChecks checks, out int entry, out long eventTime, out int dataBytes)
    {
        var limits = checks.Limits;
        entry = -1;
        eventTime = 0;
        dataBytes = 0;

        var problem = CheckString(draft.Id.Of(source), limits.MaxIdBytes, Problem.MissingId);
        if (problem != Problem.None)
            return problem;
        problem = CheckString(draft.Type.Of(source), limits.MaxTypeBytes, Problem.MissingType);
        if (problem != Problem.None)
            return problem;
        problem = CheckString(draft.Customer.Of(source), limits.MaxCustomerBytes, Problem.MissingCustomer);
        if (problem != Problem.None)
            return problem;

        problem = CheckTime(draft, checks, out eventTime);
        if (problem != Problem.None)
            return problem;

        if (draft.DataIsNotObject)
            return Problem.DataNotObject;
        if (draft.DataIsBase64)
            return Problem.DataBase64;
        if (draft.DataCount > limits.MaxDataEntries)
            return Problem.TooManyDataEntries;
        for (int i = 0; i < entries.Length; i++)
        {
            entry = i;
            ref readonly var slot = ref entries[i];
            var key = slot.Key.Of(source);
            var value = slot.Value.Of(source);
            if (!Utf8Text.IsValid(key))
                return Problem.KeyNotUtf8;
            if (key.IsEmpty)
                return Problem.EmptyKey;
            if (key.Length > limits.MaxDataKeyBytes)
                return Problem.KeyTooLong;
            if (slot.Kind is DataValueKind.Null or DataValueKind.Object or DataValueKind.Array)
                return Problem.ValueNotData;
            if (!Utf8Text.IsValid(value))
                return Problem.ValueNotUtf8;
            if (value.Length > limits.MaxDataValueBytes)
                return Problem.ValueTooLong;
            if (NumberText.IsInvalidNumber(value, slot.Kind))
                return Problem.InvalidNumber;
            dataBytes += key.Length + value.Length;
        }
        entry = FindDuplicateKey(batch, source, entries);
        return entry >= 0 ? Problem.DuplicateKey : Problem.None;
    }

    /// <summary>The three identifying strings share their checks; the problems are laid out in the same
    /// order for each (missing, too long, not UTF-8), so one offset from the "missing" problem names them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Problem CheckString(ReadOnlySpan<byte> value, int limit, Problem missing)
    {
        if (value.IsEmpty)
            return missing;
        if (value.Length > limit)
            return missing + 1;
        if (!Utf8Text.IsValid(value))
            return missing + 2;
        return Problem.None;
    }

    private static Problem CheckTime(in EventDraft draft, in EventChecks checks, out long eventTime)
    {
        eventTime = checks.NowUnixNanos;
        switch (draft.Time)
        {
            case TimeState.Absent:
                return Problem.None;
            case TimeState.Unparsable:
                return Problem.TimeUnparsable;
        }
        if ((uint)draft.Nanos > 999_999_999)
            return Problem.TimeNanosOutOfRange;
        if (draft.Seconds is < EventChecks.MinTimestampSeconds or > EventChecks.MaxTimestampSeconds)
            return Problem.TimeOutOfRange;
        // Int128, because a valid Timestamp (years 1..9999) does not fit in long nanoseconds; such a
        // time is simply too old or too far in the future.
        Int128 time = ((Int128)draft.Seconds * 1_000_000_000) + draft.Nanos;
        if (time < checks.Earliest)
            return Problem.TimeTooOld;
        if (time > checks.Latest)
            return Problem.TimeInFuture;
        eventTime = (long)time;
        return Problem.None;
    }

    /// <summary>The index of the first entry whose key an earlier entry has, or -1. A few entries (the usual
    /// event) are compared pair by pair, which is cheaper than hashing their keys; more go through an
    /// open-addressing table of entry numbers keyed by a hash of the key: linear in the entry count, no allocation.</summary>
    private static int FindDuplicateKey(EncodedBatch batch, ReadOnlySpan<byte> source, ReadOnlySpan<DataSlot> entries)
    {
        if (entries.Length < 2)
            return -1;
        if (entries.Length <= PairwiseDuplicateCheckEntries)
        {
            for (int i = 1; i < entries.Length; i++)
            {
                var key = entries[i].Key.Of(source);
                for (int j = 0; j < i; j++)
                {
                    if (entries[j].Key.Of(source).SequenceEqual(key))
                        return i;
                }
            }
            return -1;
        }
        // At most half full, so probes stay short.
        int size = (int)BitOperations.RoundUpToPowerOf2((uint)entries.Length * 2);
        var table = batch.KeyTable(size);
        int mask = size - 1;
        for (int i = 0; i < entries.Length; i++)
        {
            var key = entries[i].Key.Of(source);
            var hash = new HashCode();
            hash.AddBytes(key);
            int bucket = hash.ToHashCode() & mask;
            while (true)
            {
                int occupant = table[bucket];
                if (occupant == 0)
                {
                    table[bucket] = i + 1; // 0 marks an empty bucket
                    break;
                }
                if (entries[occupant - 1].Key.Of(source).SequenceEqual(key))
                    return i;
                bucket = (bucket + 1) & mask;
            }
        }
        return -1;
    }

    /// <summary>Builds the message of a refused event. Cold: strings are made only for rejected events.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Reject(EncodedBatch batch, ReadOnlySpan<byte> source, in EventDraft draft, ReadOnlySpan<DataSlot> entries,
        in EventChecks checks, int index, Problem problem, int entry)
    {
        var limits = checks.Limits;
        string customer = checks.CustomerName;
        var slot = entry >= 0 ? entries[entry] : default;
        (string Code, string Message) rejection = problem switch
        {
            Problem.MissingId => (RejectionCodes.MissingId, "id is missing or empty"),
            Problem.IdTooLong => (RejectionCodes.IdTooLong, $"id is {draft.Id.Length} bytes; the limit is {limits.MaxIdBytes}"),
            Problem.IdNotUtf8 => (RejectionCodes.InvalidUtf8, "id is not valid UTF-8"),
            Problem.MissingType => (RejectionCodes.MissingType, "type is missing or empty"),
            Problem.TypeTooLong => (RejectionCodes.TypeTooLong, $"type is {draft.Type.Length} bytes; the limit is {limits.MaxTypeBytes}"),
            Problem.TypeNotUtf8 => (RejectionCodes.InvalidUtf8, "type is not valid UTF-8"),
            Problem.MissingCustomer => (RejectionCodes.MissingCustomer, $"{customer} is missing or empty"),
            Problem.CustomerTooLong => (RejectionCodes.CustomerTooLong, $"{customer} is {draft.Customer.Length} bytes; the limit is {limits.MaxCustomerBytes}"),
            Problem.CustomerNotUtf8 => (RejectionCodes.InvalidUtf8, $"{customer} is not valid UTF-8"),
            Problem.TimeUnparsable => (RejectionCodes.InvalidTime,
                $"time '{Text(draft.TimeText.Of(source), 64)}' is not an RFC 3339 timestamp (e.g. 2024-05-01T12:30:00.5Z; at most 9 fractional digits)"),
            Problem.TimeNanosOutOfRange => (RejectionCodes.InvalidTime, $"time has nanos {draft.Nanos}; they must be within 0..999999999"),
            Problem.TimeOutOfRange => (RejectionCodes.InvalidTime,
                $"time has seconds {draft.Seconds}, outside the range of a timestamp (0001-01-01T00:00:00Z..9999-12-31T23:59:59Z)"),
            Problem.TimeTooOld => (RejectionCodes.TimeTooOld,
                $"time {FormatTime(draft.Seconds, draft.Nanos)} is older than the backdating limit of {limits.BackdatingLimit} before the server's time {FormatTime(checks.NowUnixNanos)}"),
            Problem.TimeInFuture => (RejectionCodes.TimeInFuture,
                $"time {FormatTime(draft.Seconds, draft.Nanos)} is later than the allowed clock skew of {limits.MaxFutureSkew} after the server's time {FormatTime(checks.NowUnixNanos)}"),
            Problem.DataNotObject => (RejectionCodes.InvalidData, "data must be an object of string, number or boolean values"),
            Problem.DataBase64 => (RejectionCodes.InvalidData, "data_base64 is not supported; send data as an object of string, number or boolean values"),
            Problem.TooManyDataEntries => (RejectionCodes.TooManyDataEntries, $"data has {draft.DataCount} entries; the limit is {limits.MaxDataEntries}"),
            Problem.KeyNotUtf8 => (RejectionCodes.InvalidUtf8, $"data entry {entry} has a key that is not valid UTF-8"),
            Problem.EmptyKey => (RejectionCodes.EmptyDataKey, $"data entry {entry} has an empty key"),
            Problem.KeyTooLong => (RejectionCodes.DataKeyTooLong,
                $"data key '{Text(slot.Key.Of(source), 32)}' is {slot.Key.Length} bytes; the limit is {limits.MaxDataKeyBytes}"),
            Problem.ValueNotData => (RejectionCodes.InvalidData,
                $"data '{Text(slot.Key.Of(source), 64)}' is {KindName(slot.Kind)}; values must be strings, numbers or booleans"),
            Problem.ValueNotUtf8 => (RejectionCodes.InvalidUtf8, $"data '{Text(slot.Key.Of(source), 64)}' has a value that is not valid UTF-8"),
            Problem.ValueTooLong => (RejectionCodes.DataValueTooLong,
                $"data '{Text(slot.Key.Of(source), 64)}' value is {slot.Value.Length} bytes; the limit is {limits.MaxDataValueBytes}"),
            Problem.InvalidNumber => (RejectionCodes.InvalidNumber,
                $"data '{Text(slot.Key.Of(source), 64)}' value '{Text(slot.Value.Of(source), 64)}' is a number that is not a finite decimal"),
            Problem.DuplicateKey => (RejectionCodes.DuplicateDataKey, $"data key '{Text(slot.Key.Of(source), 64)}' appears more than once"),
            _ => throw new UnreachableException($"Unknown problem {problem}."),
        };
        batch.AddRejection(index, rejection.Code, rejection.Message);
    }

    private static string KindName(DataValueKind kind) => kind switch
    {
        DataValueKind.Null => "null",
        DataValueKind.Object => "an object",
        _ => "an array",
    };

    /// <summary>The bytes as text for a message, cut at <paramref name="maxChars"/> characters.</summary>
    private static string Text(ReadOnlySpan<byte> utf8, int maxChars)
    {
        string text = Encoding.UTF8.GetString(utf8);
        return text.Length <= maxChars ? text : string.Concat(text.AsSpan(0, maxChars), "...");
    }

    private static string FormatTime(long unixNanos)
        => FormatTime(Math.DivRem(unixNanos, 1_000_000_000, out long nanos) - (nanos < 0 ? 1 : 0), (int)(nanos < 0 ? nanos + 1_000_000_000 : nanos));

    private static string FormatTime(long unixSeconds, int nanos)
        => string.Create(CultureInfo.InvariantCulture, $"{DateTime.UnixEpoch.AddSeconds(unixSeconds):yyyy-MM-ddTHH:mm:ss}.{nanos:D9}Z");
}
