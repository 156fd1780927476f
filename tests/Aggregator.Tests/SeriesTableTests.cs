using AlphaMesh.Aggregator.Internal;

namespace AlphaMesh.Aggregator.Tests;

public sealed class SeriesTableTests
{
    private static Series NewSeries(UInt128 id) => new()
    {
        Id = id,
        Tenant = "acme",
        MeterKey = "calls",
        Customer = $"c{id}",
        GroupValues = [],
        CustomerTotal = false,
    };

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Add_ManyIdsWithCollidingLowBits_FindsEachAndOnlyThose(int seed)
    {
        var random = new Random(seed);
        var table = new SeriesTable();
        var oracle = new Dictionary<UInt128, Series>();
        for (int i = 0; i < 20_000; i++)
        {
            // Half the ids share their low 16 bits with another, so probes run long and wrap around the table's end.
            ulong low = random.Next(2) == 0 ? (ulong)random.NextInt64() : (ulong)random.Next(64) | 0xFFFF_0000UL;
            var id = new UInt128((ulong)random.NextInt64(), low);
            if (oracle.ContainsKey(id))
                continue;
            var series = NewSeries(id);
            table.Add(series);
            oracle.Add(id, series);
        }

        Assert.Equal(oracle.Count, table.Count);
        foreach (var (id, series) in oracle)
        {
            Assert.True(table.TryGet(id, out var found));
            Assert.Same(series, found);
        }
        for (int i = 0; i < 1_000; i++)
        {
            var absent = new UInt128((ulong)random.NextInt64(), (ulong)random.NextInt64());
            Assert.Equal(oracle.ContainsKey(absent), table.TryGet(absent, out _));
        }
        Assert.Equal(oracle.Values.OrderBy(s => s.Id), table.Values.OrderBy(s => s.Id));
    }

    [Fact]
    public void Add_SameIdTwice_Throws()
    {
        var table = new SeriesTable();
        table.Add(NewSeries(42));

        var error = Assert.Throws<ArgumentException>(() => table.Add(NewSeries(42)));

        Assert.Contains("42", error.Message);
        Assert.Equal(1, table.Count);
    }
}
