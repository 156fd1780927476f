using System.Text;
using System.Text.Unicode;
using AlphaMesh.Ingest.Internal;

namespace AlphaMesh.Ingest.Tests;

public sealed class Utf8TextTests
{
    [Theory]
    [InlineData("")]
    [InlineData("a")]
    [InlineData("abc")]
    [InlineData("abcd")]
    [InlineData("abcdefg")]
    [InlineData("abcdefgh")]
    [InlineData("01a21703-8267-73e2-a0b1-123456789abc")]
    [InlineData("straße")]
    [InlineData("日本語")]
    [InlineData("😀🚀")]
    public void IsValid_ValidText_True(string text) => Assert.True(Utf8Text.IsValid(Encoding.UTF8.GetBytes(text)));

    [Theory]
    [InlineData(new byte[] { 0x80 })]
    [InlineData(new byte[] { (byte)'a', 0xC3 })]
    [InlineData(new byte[] { (byte)'a', (byte)'b', (byte)'c', (byte)'d', (byte)'e', (byte)'f', (byte)'g', 0xFF })]
    [InlineData(new byte[] { 0xED, 0xA0, 0x80 })] // a surrogate half
    [InlineData(new byte[] { 0xC0, 0xAF })] // an overlong encoding
    public void IsValid_InvalidBytes_False(byte[] bytes) => Assert.False(Utf8Text.IsValid(bytes));

    [Fact]
    public void IsValid_RandomBytesOfEveryShortLength_AgreesWithUtf8IsValid()
    {
        var random = new Random(5);
        byte[] multiByte = Encoding.UTF8.GetBytes("ß日😀");
        int invalid = 0;
        for (int trial = 0; trial < 200_000; trial++)
        {
            var bytes = new byte[random.Next(0, 100)];
            for (int i = 0; i < bytes.Length; i++)
                bytes[i] = (byte)random.Next(0x20, 0x7F);
            // Now and then a high byte anywhere (often invalid), or a valid multi-byte character.
            int changes = random.Next(4) == 0 ? random.Next(1, 3) : 0;
            for (int c = 0; c < changes && bytes.Length > 0; c++)
            {
                int at = random.Next(bytes.Length);
                if (random.Next(2) == 0)
                    bytes[at] = (byte)random.Next(0x80, 0x100);
                else
                    multiByte.AsSpan(0, Math.Min(multiByte.Length, bytes.Length - at)).CopyTo(bytes.AsSpan(at));
            }

            bool expected = Utf8.IsValid(bytes);
            Assert.Equal(expected, Utf8Text.IsValid(bytes));
            invalid += expected ? 0 : 1;
        }
        Assert.True(invalid > 10_000, $"only {invalid} invalid inputs");
    }
}
