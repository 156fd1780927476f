using System.Runtime.CompilerServices;

namespace AlphaMesh.Ingest.Internal;

/// <summary>Where a field's bytes are within the event's source: the request itself for protobuf (its
/// strings are raw bytes), the batch's scratch buffer for JSON (its strings must be unescaped first).</summary>
internal readonly record struct ByteRange(int Offset, int Length)
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ReadOnlySpan<byte> Of(ReadOnlySpan<byte> source) => source.Slice(Offset, Length);
}

/// <summary>How a data value was given, which decides how it is checked.</summary>
internal enum DataValueKind : byte
{
    /// <summary>A string: checked as a number only when it claims to be one.</summary>
    Text,

    /// <summary>A JSON number token: always claims to be a number; stored as its source text.</summary>
    Number,

    /// <summary>JSON <c>null</c>: refused as <c>invalid_data</c>.</summary>
    Null,

    /// <summary>A JSON object: refused as <c>invalid_data</c>.</summary>
    Object,

    /// <summary>A JSON array: refused as <c>invalid_data</c>.</summary>
    Array,
}

internal struct DataSlot
{
    public ByteRange Key;
    public ByteRange Value;
    public DataValueKind Kind;
}

internal enum TimeState : byte
{
    /// <summary>No time was sent: the event happened when it was received.</summary>
    Absent,

    /// <summary><see cref="EventDraft.Seconds"/> and <see cref="EventDraft.Nanos"/> hold the time (still to be range-checked).</summary>
    Present,

    /// <summary>A JSON time that is not RFC 3339; <see cref="EventDraft.TimeText"/> says where it is.</summary>
    Unparsable,
}

/// <summary>
/// One event as a parser found it, before validation: where its fields are (in the source span the
/// parser passes along) and what its time was. Its data entries are in <see cref="EncodedBatch.DataSlots"/>.
/// A mutable struct on the parser's stack, reset per event.
/// </summary>
internal struct EventDraft
{
    public ByteRange Id;
    public ByteRange Type;
    public ByteRange Customer;
    public TimeState Time;
    public long Seconds;
    public int Nanos;
    public ByteRange TimeText;

    /// <summary>Data entries seen; may exceed the slots stored (which stop at the limit).</summary>
    public int DataCount;

    /// <summary>JSON only: <c>data</c> was present but neither an object nor null.</summary>
    public bool DataIsNotObject;

    /// <summary>JSON only: the event carries <c>data_base64</c>, which cannot be metered.</summary>
    public bool DataIsBase64;
}
