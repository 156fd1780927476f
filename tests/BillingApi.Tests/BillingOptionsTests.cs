namespace AlphaMesh.BillingApi.Tests;

public sealed class BillingOptionsTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(-5)]
    [InlineData(10_001)]
    public void Validate_ChunkSizeOutOfRange_ThrowsNamingTheSettingAndItsRange(int chunkSize)
    {
        var options = new BillingOptions { BillingRunChunkSize = chunkSize };

        var error = Assert.Throws<InvalidOperationException>(options.Validate);

        Assert.Contains($"AlphaMesh:Billing:BillingRunChunkSize ({chunkSize})", error.Message, StringComparison.Ordinal);
        Assert.Contains("from 1 to 10,000", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(1000)]
    [InlineData(10_000)]
    public void Validate_ChunkSizeInRange_Passes(int chunkSize) => new BillingOptions { BillingRunChunkSize = chunkSize }.Validate();
}
