using AlphaMesh.Client.Internal;

namespace AlphaMesh.Client.Tests;

public sealed class UuidV7Tests
{
    [Fact]
    public void Create_ManyIds_LayoutMatchesGuidCreateVersion7()
    {
        var now = DateTimeOffset.UtcNow;
        var reference = Guid.CreateVersion7(now);
        var ids = new HashSet<Guid>();
        for (int i = 0; i < 10_000; i++) // crosses several refills of the random buffer
        {
            var id = UuidV7.Create(now);
            Assert.Equal(7, id.Version);
            Assert.Equal(reference.Variant >> 2, id.Variant >> 2); // RFC 9562 variant 0b10 (the next two bits are random)
            Assert.Equal(reference.ToString()[..13], id.ToString()[..13]); // the same 48-bit millisecond timestamp
            Assert.True(ids.Add(id));
        }
    }
}
