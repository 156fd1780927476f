using System.Runtime.CompilerServices;

namespace AlphaMesh.Core;

/// <summary>Unsigned LEB128 varints, as protobuf writes them.</summary>
public static class Varint
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Write(Span<byte> destination, uint value)
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

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Write(Span<byte> destination, ulong value)
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

    public static int SizeOf(ulong value)
    {
        int size = 1;
        while (value >= 0x80)
        {
            value >>= 7;
            size++;
        }
        return size;
    }

    /// <summary>Reads a 32-bit varint: at most 5 bytes and at most <see cref="uint.MaxValue"/>. A longer encoding
    /// is rejected (not truncated), so that a malformed length can never read as a small one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryRead(ReadOnlySpan<byte> source, out uint value, out int bytesRead)
    {
        if (!TryRead(source.Length > 5 ? source.Slice(0, 5) : source, out ulong wide, out bytesRead) || wide > uint.MaxValue)
        {
            value = 0;
            return false;
        }
        value = (uint)wide;
        return true;
    }

    /// <summary>Reads a 64-bit varint: at most 10 bytes, rejecting one that overflows 64 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryRead(ReadOnlySpan<byte> source, out ulong value, out int bytesRead)
    {
        value = 0;
        int shift = 0;
        for (int i = 0; i < source.Length && i < 10; i++)
        {
            byte b = source[i];
            // The tenth byte holds bit 63 only; more would overflow silently.
            if (i == 9 && b > 1)
                break;
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                bytesRead = i + 1;
                return true;
            }
            shift += 7;
        }
        bytesRead = 0;
        value = 0;
        return false;
    }
}
