using AlphaMesh.Aggregator.Internal;

namespace AlphaMesh.Aggregator.Tests;

public sealed class MeterTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "alphamesh-meter-tests", Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_directory))
            Directory.Delete(_directory, recursive: true);
    }

    private static MeterDefinition Valid() => new()
    {
        Tenant = "acme",
        Key = "tokens",
        EventType = "api_call",
        Aggregation = Aggregation.Sum,
        ValueProperty = "tokens",
        GroupBy = ["region"],
    };

    public static TheoryData<MeterDefinition, string> InvalidDefinitions() => new()
    {
        { Valid() with { Key = "" }, "key is required" },
        { Valid() with { Key = "has space" }, "must be 1 to 64 characters" },
        { Valid() with { EventType = "" }, "eventType is required" },
        { Valid() with { ValueProperty = null }, "valueProperty is required for Sum" },
        { Valid() with { GroupBy = ["a", "b", "c", "d", "e", "f", "g", "h", "i"] }, "at most 8" },
        { Valid() with { GroupBy = ["a", "a"] }, "appears twice" },
        { Valid() with { WindowSize = WindowSize.Month }, "MONTH is a query roll-up" },
        { Valid() with { Aggregation = (Aggregation)42 }, "is not one of" },
    };

    [Theory]
    [MemberData(nameof(InvalidDefinitions))]
    public void Validate_InvalidDefinition_NamesTheProblem(MeterDefinition definition, string expected)
        => Assert.Contains(definition.Validate(), e => e.Contains(expected, StringComparison.Ordinal));

    [Fact]
    public void Validate_CountWithoutValueProperty_IsValid()
        => Assert.Empty((Valid() with { Aggregation = Aggregation.Count, ValueProperty = null }).Validate());

    [Fact]
    public async Task Create_ThenReopen_KeepsMeterAndCreationTime()
    {
        string path = Path.Combine(_directory, "meters.json");
        var catalog = MeterCatalogs.OpenFile(path, new FixedTime(new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero)));
        long version = catalog.Version;

        var created = await catalog.CreateAsync(Valid());

        Assert.True(catalog.Version > version);
        var reopened = MeterCatalogs.OpenFile(path);
        var found = reopened.Find("acme", "tokens");
        Assert.NotNull(found);
        Assert.True(found.SameDefinitionAs(created));
        Assert.Equal(created.CreatedAt, found.CreatedAt);
        Assert.Null(reopened.Find("globex", "tokens"));
        Assert.Single(reopened.List("acme"));
        Assert.Contains("\"SUM\"", File.ReadAllText(path), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Create_SameKeyOtherDefinition_Conflicts()
    {
        var catalog = MeterCatalogs.OpenFile(Path.Combine(_directory, "meters.json"));
        var first = await catalog.CreateAsync(Valid());

        Assert.Same(first, await catalog.CreateAsync(Valid())); // the same again is idempotent
        await Assert.ThrowsAsync<MeterConflictException>(() => catalog.CreateAsync(Valid() with { Aggregation = Aggregation.Max }).AsTask());
        await Assert.ThrowsAsync<MeterValidationException>(() => catalog.CreateAsync(Valid() with { Key = "" }).AsTask());
    }

    [Theory]
    [InlineData("12.5", 12.5)]
    [InlineData("-3", -3)]
    [InlineData("0.0001", 0.0001)]
    [InlineData("1e3", 1000)]
    public void TryParseDecimal_Number_Parses(string text, double expected)
    {
        Assert.True(PartitionAggregator.TryParseDecimal(System.Text.Encoding.UTF8.GetBytes(text), out decimal value));
        Assert.Equal((decimal)expected, value);
    }

    [Fact]
    public void TryParseDecimal_RandomNumbers_SameBitsAsUtf8Parser()
    {
        // The oracle is the parser the aggregator used alone before the common shape got its own path: the decimal,
        // its scale (trailing zeros) and sign must not change, or stored sums and printed values would.
        var random = new Random(11);
        for (int trial = 0; trial < 100_000; trial++)
        {
            string text = (random.Next(3) == 0 ? "-" : "") + new string('0', random.Next(3)) + random.NextInt64(0, 1_000_000_000_000)
                + (random.Next(2) == 0 ? "." + random.NextInt64(0, 1_000_000).ToString(System.Globalization.CultureInfo.InvariantCulture) + new string('0', random.Next(3)) : "");
            var bytes = System.Text.Encoding.ASCII.GetBytes(text);
            Assert.True(System.Buffers.Text.Utf8Parser.TryParse(bytes, out decimal expected, out int consumed) && consumed == bytes.Length, text);

            Assert.True(PartitionAggregator.TryParseDecimal(bytes, out decimal value), text);

            Assert.Equal(decimal.GetBits(expected), decimal.GetBits(value));
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("abc")]
    [InlineData("12abc")]
    [InlineData("1e400")]
    public void TryParseDecimal_NotANumber_Fails(string text)
        => Assert.False(PartitionAggregator.TryParseDecimal(System.Text.Encoding.UTF8.GetBytes(text), out _));
}
