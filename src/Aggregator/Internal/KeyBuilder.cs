using System.Buffers.Binary;
using System.IO.Hashing;
using System.Runtime.CompilerServices;
using System.Text;

namespace AlphaMesh.Aggregator.Internal;

/// <summary>
/// Builds the bytes that identify a stored thing and hashes them to 128 bits (XxHash128). Every identity starts
/// with a kind byte and length-prefixes each field, so that two different identities never share their bytes
/// (("ab","c") and ("a","bc") differ). The hot path builds from the record's UTF-8 spans, the query and check
/// paths from strings; both produce the same bytes, hence the same hash. 128 bits make a collision among even
/// billions of keys improbable beyond concern (about 2^-64 at 2^32 keys).
/// </summary>
internal ref struct KeyBuilder
{
    public const byte Dedupe = (byte)'D';
    public const byte Series = (byte)'S';
    public const byte Marker = (byte)'U';
    public const byte MeterLookup = (byte)'M';
    public const byte Tenant = (byte)'T';
    public const byte Entitlement = (byte)'E';

    private readonly Span<byte> _buffer;
    private int _length;

    public KeyBuilder(Span<byte> buffer, byte kind)
    {
        _buffer = buffer;
        _buffer[0] = kind;
        _length = 1;
    }

    /// <summary>Bytes needed for a field of <paramref name="length"/> bytes.</summary>
    public static int FieldSize(int length) => 4 + length;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Field(scoped ReadOnlySpan<byte> value)
    {
        BinaryPrimitives.WriteInt32LittleEndian(_buffer.Slice(_length), value.Length);
        value.CopyTo(_buffer.Slice(_length + 4));
        _length += 4 + value.Length;
    }

    public void Field(string value)
    {
        int length = Encoding.UTF8.GetBytes(value, _buffer.Slice(_length + 4));
        BinaryPrimitives.WriteInt32LittleEndian(_buffer.Slice(_length), length);
        _length += 4 + length;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Byte(byte value) => _buffer[_length++] = value;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Int64(long value)
    {
        BinaryPrimitives.WriteInt64LittleEndian(_buffer.Slice(_length), value);
        _length += 8;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Hash128(UInt128 value)
    {
        BinaryPrimitives.WriteUInt128LittleEndian(_buffer.Slice(_length), value);
        _length += 16;
    }

    public readonly UInt128 Hash() => XxHash128.HashToUInt128(_buffer.Slice(0, _length));

    /// <summary>The key of (tenant, meter, customer) in the current-period totals.</summary>
    public static UInt128 EntitlementKey(string tenant, string meterKey, string customer)
    {
        int size = 1 + FieldSize(Encoding.UTF8.GetMaxByteCount(tenant.Length)) + FieldSize(Encoding.UTF8.GetMaxByteCount(meterKey.Length))
            + FieldSize(Encoding.UTF8.GetMaxByteCount(customer.Length));
        Span<byte> buffer = size <= 2048 ? stackalloc byte[2048] : new byte[size];
        var builder = new KeyBuilder(buffer, Entitlement);
        builder.Field(tenant);
        builder.Field(meterKey);
        builder.Field(customer);
        return builder.Hash();
    }

    public static UInt128 TenantKey(string tenant)
    {
        int size = 1 + FieldSize(Encoding.UTF8.GetMaxByteCount(tenant.Length));
        Span<byte> buffer = size <= 1024 ? stackalloc byte[1024] : new byte[size];
        var builder = new KeyBuilder(buffer, Tenant);
        builder.Field(tenant);
        return builder.Hash();
    }
}
