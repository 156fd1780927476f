using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text.Unicode;

namespace AlphaMesh.Ingest.Internal;

/// <summary>
/// UTF-8 validity of an event's strings (id, type, customer, data keys and values), with a quick answer for the
/// usual case: short ASCII text. <see cref="Utf8.IsValid"/> is vectorized for long text, but for the dozen short
/// strings of each event its set-up cost more than the check.
/// </summary>
internal static class Utf8Text
{
    private const int ShortBytes = 64;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsValid(ReadOnlySpan<byte> text) => IsShortAscii(text) || Utf8.IsValid(text);

    /// <summary>True when the text is at most 64 bytes and all ASCII (no byte has its high bit set); false says
    /// nothing either way.</summary>
    private static bool IsShortAscii(ReadOnlySpan<byte> text)
    {
        ref byte start = ref MemoryMarshal.GetReference(text);
        int length = text.Length;
        if (length >= 8)
        {
            if (length > ShortBytes)
                return false;
            // Whole 8-byte words, then the last 8 bytes (which may overlap the words before them).
            ulong bits = Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref start, length - 8));
            for (int i = 0; i < length - 8; i += 8)
                bits |= Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref start, i));
            return (bits & 0x8080_8080_8080_8080UL) == 0;
        }
        if (length >= 4)
        {
            uint bits = Unsafe.ReadUnaligned<uint>(ref start) | Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref start, length - 4));
            return (bits & 0x8080_8080U) == 0;
        }
        uint any = 0;
        for (int i = 0; i < length; i++)
            any |= Unsafe.Add(ref start, i);
        return any < 0x80;
    }
}
