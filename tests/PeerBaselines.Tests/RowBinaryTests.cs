using System.Buffers;
using System.Text;

namespace AlphaMesh.PeerBaselines.Tests;

/// <summary>ClickHouse's RowBinary String: an unsigned LEB128 length, then the UTF-8 bytes.</summary>
public sealed class RowBinaryTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(127)]
    [InlineData(128)]
    [InlineData(300)]
    [InlineData(16_384)]
    public void WriteString_AnyLength_LengthPrefixDecodes(int length)
    {
        string value = new string('x', length - Math.Min(length, 1)) + (length > 0 ? "é" : "");
        var body = new ArrayBufferWriter<byte>();

        ClickHouseTarget.WriteString(body, value);

        // Decode the prefix independently: 7 bits per byte, low group first, high bit set on all but the last.
        var bytes = body.WrittenSpan;
        int decoded = 0, shift = 0, position = 0;
        while (true)
        {
            byte b = bytes[position++];
            decoded |= (b & 0x7F) << shift;
            shift += 7;
            if ((b & 0x80) == 0)
                break;
        }
        Assert.Equal(Encoding.UTF8.GetByteCount(value), decoded);
        Assert.Equal(value, Encoding.UTF8.GetString(bytes[position..]));
    }
}
