using System.Runtime.CompilerServices;

namespace AlphaMesh.Ingest.Internal;

internal enum WireType : byte
{
    Varint = 0,
    Fixed64 = 1,
    LengthDelimited = 2,
    StartGroup = 3,
    EndGroup = 4,
    Fixed32 = 5,
}

internal enum WireError : byte
{
    None,
    TruncatedVarint,
    TruncatedField,
    InvalidFieldNumber,
    InvalidWireType,
    UnexpectedEndGroup,
    UnterminatedGroup,
    GroupTooDeep,
}

/// <summary>
/// Reads protobuf wire format from a span, one field at a time. Positions are absolute in the whole
/// request, so that a nested message is read by a reader over the same span and the fields it finds
/// can be recorded as <see cref="ByteRange"/>s of the request. Every method returns false on malformed
/// input and leaves the reason in <see cref="Error"/>; nothing throws.
/// </summary>
internal ref struct ProtoWireReader
{
    // Groups are a deprecated proto2 feature nobody sends us; bounding their nesting keeps skipping
    // a hostile request from recursing deeply.
    private const int MaxGroupDepth = 32;

    private readonly ReadOnlySpan<byte> _buffer;
    private readonly int _end;
    private int _position;

    public ProtoWireReader(ReadOnlySpan<byte> buffer, ByteRange range)
    {
        _buffer = buffer;
        _position = range.Offset;
        _end = range.Offset + range.Length;
        Error = WireError.None;
    }

    public readonly bool End => _position >= _end;

    /// <summary>Where the reader is (or where the error was found), absolute in the buffer.</summary>
    public readonly int Position => _position;

    public WireError Error { get; private set; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryReadTag(out int field, out WireType wireType)
    {
        field = 0;
        wireType = 0;
        if (!TryReadVarint(out ulong tag))
            return false;
        if (tag > uint.MaxValue || (tag >> 3) == 0)
            return Fail(WireError.InvalidFieldNumber);
        if ((tag & 7) > 5)
            return Fail(WireError.InvalidWireType);
        field = (int)(tag >> 3);
        wireType = (WireType)(tag & 7);
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryReadVarint(out ulong value)
    {
        // One-byte varints (small tags, lengths and numbers) are the common case.
        if (_position < _end && _buffer[_position] < 0x80)
        {
            value = _buffer[_position++];
            return true;
        }
        return TryReadVarintSlow(out value);
    }

    /// <summary>Reads a length-delimited field's payload as a range of the buffer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryReadLengthDelimited(out ByteRange range)
    {
        range = default;
        if (!TryReadVarint(out ulong length))
            return false;
        if (length > (ulong)(_end - _position))
            return Fail(WireError.TruncatedField);
        range = new ByteRange(_position, (int)length);
        _position += (int)length;
        return true;
    }

    /// <summary>Skips the value of a field the reader does not know.</summary>
    public bool TrySkip(int field, WireType wireType) => TrySkip(field, wireType, 0);

    private bool TrySkip(int field, WireType wireType, int depth)
    {
        switch (wireType)
        {
            case WireType.Varint:
                return TryReadVarint(out _);
            case WireType.Fixed64:
                return TrySkipBytes(8);
            case WireType.Fixed32:
                return TrySkipBytes(4);
            case WireType.LengthDelimited:
                return TryReadLengthDelimited(out _);
            case WireType.StartGroup:
                return TrySkipGroup(field, depth + 1);
            default:
                // An end-group tag where no group was started.
                return Fail(WireError.UnexpectedEndGroup);
        }
    }

    private bool TrySkipGroup(int groupField, int depth)
    {
        if (depth > MaxGroupDepth)
            return Fail(WireError.GroupTooDeep);
        while (!End)
        {
            if (!TryReadTag(out int field, out var wireType))
                return false;
            if (wireType == WireType.EndGroup)
                return field == groupField || Fail(WireError.UnexpectedEndGroup);
            if (!TrySkip(field, wireType, depth))
                return false;
        }
        return Fail(WireError.UnterminatedGroup);
    }

    private bool TrySkipBytes(int count)
    {
        if (_end - _position < count)
            return Fail(WireError.TruncatedField);
        _position += count;
        return true;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool TryReadVarintSlow(out ulong value)
    {
        value = 0;
        for (int shift = 0, i = _position; i < _end && shift < 70; shift += 7, i++)
        {
            byte b = _buffer[i];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                _position = i + 1;
                return true;
            }
        }
        value = 0;
        return Fail(WireError.TruncatedVarint);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Fail(WireError error)
    {
        Error = error;
        return false;
    }

    /// <summary>Says what went wrong, for the error of a malformed request.</summary>
    public readonly string Describe() => Error switch
    {
        WireError.TruncatedVarint => $"a varint at byte {_position} is truncated or longer than 10 bytes",
        WireError.TruncatedField => $"a field at byte {_position} is longer than the rest of its message",
        WireError.InvalidFieldNumber => $"a tag at byte {_position} has field number 0 or is out of range",
        WireError.InvalidWireType => $"a tag at byte {_position} has an invalid wire type",
        WireError.UnexpectedEndGroup => $"an end-group tag at byte {_position} does not close an open group",
        WireError.UnterminatedGroup => $"a group that ends at byte {_position} was never closed",
        WireError.GroupTooDeep => $"groups at byte {_position} are nested more than {MaxGroupDepth} deep",
        _ => "the request is not valid protobuf",
    };
}
