namespace AlphaMesh.Core.Tests;

public sealed class VarintTests
{
    [Theory]
    [InlineData(0u)]
    [InlineData(1u)]
    [InlineData(127u)]
    [InlineData(128u)]
    [InlineData(16_383u)]
    [InlineData(16_384u)]
    [InlineData(uint.MaxValue)]
    public void TryRead_WrittenUInt32_RoundTrips(uint value)
    {
        var buffer = new byte[10];
        int written = Varint.Write(buffer, value);

        Assert.True(Varint.TryRead(buffer.AsSpan(0, written), out uint read, out int bytesRead));
        Assert.Equal(value, read);
        Assert.Equal(written, bytesRead);
    }

    [Theory]
    [InlineData(0ul)]
    [InlineData(ulong.MaxValue)]
    [InlineData(1ul << 63)]
    public void TryRead_WrittenUInt64_RoundTrips(ulong value)
    {
        var buffer = new byte[10];
        int written = Varint.Write(buffer, value);

        Assert.True(Varint.TryRead(buffer.AsSpan(0, written), out ulong read, out int bytesRead));
        Assert.Equal(value, read);
        Assert.Equal(written, bytesRead);
    }

    [Theory]
    [InlineData(new byte[] { 0x80, 0x80, 0x80, 0x80, 0x80, 0x00 })]
    [InlineData(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0x10 })]
    [InlineData(new byte[] { 0x80 })]
    [InlineData(new byte[0])]
    public void TryRead_UInt32Overlong_ReturnsFalse(byte[] source)
        => Assert.False(Varint.TryRead(source, out uint _, out _));

    [Theory]
    [InlineData(new byte[] { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02 })]
    [InlineData(new byte[] { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00 })]
    public void TryRead_UInt64Overflowing_ReturnsFalse(byte[] source)
        => Assert.False(Varint.TryRead(source, out ulong _, out _));
}
