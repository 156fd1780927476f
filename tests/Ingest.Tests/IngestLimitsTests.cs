namespace AlphaMesh.Ingest.Tests;

public sealed class IngestLimitsTests
{
    [Fact]
    public void Validate_Defaults_DoesNotThrow() => new IngestLimits().Validate();

    public static TheoryData<string, Action<IngestLimits>> Nonsense => new()
    {
        { "MaxEventsPerBatch", l => l.MaxEventsPerBatch = 0 },
        { "MaxRequestBytes", l => l.MaxRequestBytes = -1 },
        { "MaxIdBytes", l => l.MaxIdBytes = 0 },
        { "MaxTypeBytes", l => l.MaxTypeBytes = 0 },
        { "MaxCustomerBytes", l => l.MaxCustomerBytes = 0 },
        { "MaxDataEntries", l => l.MaxDataEntries = 0 },
        { "MaxDataEntries", l => l.MaxDataEntries = 70_000 },
        { "MaxDataKeyBytes", l => l.MaxDataKeyBytes = 0 },
        { "MaxDataValueBytes", l => l.MaxDataValueBytes = 0 },
        { "BackdatingLimit", l => l.BackdatingLimit = TimeSpan.Zero },
        { "BackdatingLimit", l => l.BackdatingLimit = TimeSpan.MaxValue },
        { "MaxFutureSkew", l => l.MaxFutureSkew = TimeSpan.FromSeconds(-1) },
    };

    [Theory]
    [MemberData(nameof(Nonsense))]
    public void Validate_Nonsense_ThrowsNamingTheSetting(string setting, Action<IngestLimits> change)
    {
        var limits = new IngestLimits();
        change(limits);
        var ex = Assert.Throws<InvalidOperationException>(limits.Validate);
        Assert.Contains($"AlphaMesh:Ingest:{setting} ", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_ZeroFutureSkew_IsAllowed() => new IngestLimits { MaxFutureSkew = TimeSpan.Zero }.Validate();
}
