using System.Runtime.CompilerServices;

namespace AlphaMesh.Rating.Internal;

/// <summary>
/// The sum of invoice line amounts, kept as an integer: a decimal addition costs several nanoseconds, an integer one
/// less than one, and an invoice adds each usage line twice (to the total and, against a minimum commitment, to the
/// usage total). The result is the decimal that adding the amounts one by one from 0m would give, bit for bit: when
/// every amount is non-negative with a mantissa under 2^64 and the sum fits a decimal's 96 bits, that addition is exact
/// in any order and its scale is the largest of the amounts' scales. Any other amount (negative, negative zero, over
/// 2^64 units) makes <see cref="TryGetTotal"/> fail, and the caller adds the decimals in order as before.
/// </summary>
internal struct AmountSum
{
    private const uint SignBit = 0x8000_0000;

    // A scale up to 9 keeps the rescaled sum of up to 2^20 amounts inside 128 bits (2^20 * 2^64 * 10^9 < 2^114).
    private const int MaxScale = 9;
    private const int MaxCount = 1 << 20;

    private UInt128 _units; // the sum so far, in units of 10^-_scale
    private int _scale;
    private int _count;
    private bool _inexact;

    /// <summary>Adds <paramref name="amount"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Add(decimal amount)
    {
        ref var bits = ref Unsafe.As<decimal, DecimalBits>(ref amount);
        int scale = (bits.Flags >> 16) & 0xFF;
        if (((uint)bits.Flags & SignBit) != 0 || bits.Hi32 != 0 || scale > MaxScale || ++_count > MaxCount)
        {
            _inexact = true;
            return;
        }

        UInt128 units = bits.Lo64;
        if (scale > _scale)
        {
            _units *= Pow10(scale - _scale);
            _scale = scale;
        }
        else if (scale < _scale)
        {
            units *= Pow10(_scale - scale);
        }

        _units += units;
    }

    /// <summary>The sum as a decimal, when every amount could be summed as an integer and the sum fits.</summary>
    public readonly bool TryGetTotal(out decimal total)
    {
        if (_inexact || _units >> 96 != 0)
        {
            total = default;
            return false;
        }

        ulong low = (ulong)_units;
        total = new decimal((int)(uint)low, (int)(uint)(low >> 32), (int)(uint)(_units >> 64), isNegative: false, (byte)_scale);
        return true;
    }

    private static ulong Pow10(int exponent)
    {
        ulong result = 1;
        for (int i = 0; i < exponent; i++)
        {
            result *= 10;
        }

        return result;
    }

    /// <summary>System.Decimal's fields in memory order (flags: sign bit and scale; then the mantissa's high 32 and low 64 bits).</summary>
    internal readonly struct DecimalBits
    {
        public readonly int Flags;
        public readonly uint Hi32;
        public readonly ulong Lo64;
    }
}
