namespace AlphaMesh.PeerBaselines.Tests;

/// <summary>The generator every system's run shares, and its oracle, against a plain recount of the events.</summary>
public sealed class EventSetTests
{
    private static readonly DateTimeOffset s_base = new(2026, 11, 25, 10, 0, 0, TimeSpan.Zero);

    public static TheoryData<int, int, double, int> Shapes => new()
    {
        { 1, 1, 0.0, 1 },
        { 1_000, 1, 0.5, 2 },
        { 10_000, 7, 0.01, 3 },
        { 50_000, 1_000, 0.01, 4 },
        { 20_000, 50_000, 0.2, 5 },
        { 5_000, 100, 0.9, 6 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Generate_Oracle_EqualsRecountOfDistinctIds(int count, int customers, double rate, int seed)
    {
        var set = EventSet.Generate(count, customers, rate, seed, s_base);

        // Independent of the generator's bookkeeping: the first event of each id, grouped by customer name.
        var firsts = set.Events.GroupBy(e => e.Id).Select(g => g.First()).ToList();
        var expected = firsts.GroupBy(e => set.Customers[e.Customer])
            .ToDictionary(g => g.Key, g => new CustomerUsage(g.LongCount(), g.Sum(e => decimal.Parse(EventSet.AmountText(e.AmountMinor), System.Globalization.CultureInfo.InvariantCulture))));

        Assert.Equal(count, set.Events.Length);
        Assert.Equal(firsts.Count, set.Distinct);
        Assert.Equal(count - firsts.Count, set.Duplicates);
        Assert.Equal(expected.Count, set.Oracle.Count);
        foreach (var (customer, usage) in expected)
            Assert.Equal(usage, set.Oracle[customer]);
    }

    [Fact]
    public void Generate_Duplicate_RepeatsAnEarlierEventWhole()
    {
        var set = EventSet.Generate(100_000, 500, 0.01, 11, s_base);

        var first = new Dictionary<string, GeneratedEvent>();
        int repeats = 0;
        foreach (var e in set.Events)
        {
            if (first.TryGetValue(e.Id, out var original))
            {
                Assert.Equal(original, e);
                repeats++;
            }
            else
            {
                first[e.Id] = e;
            }
        }
        Assert.Equal(set.Duplicates, repeats);
        // 1% of 100,000 is 1,000 expected (standard deviation about 31); the seed fixes the draw.
        Assert.InRange(repeats, 800, 1_200);
        Assert.All(set.Events, e => Assert.InRange(e.AmountMinor, 1, EventSet.MaxAmountMinor));
        Assert.All(set.Events, e => Assert.InRange(e.SecondsAfterBase, 0, EventSet.TimeSpreadSeconds - 1));
    }

    [Fact]
    public void Generate_SameSeed_SameEvents()
    {
        var a = EventSet.Generate(20_000, 300, 0.01, 42, s_base);
        var b = EventSet.Generate(20_000, 300, 0.01, 42, s_base);
        var c = EventSet.Generate(20_000, 300, 0.01, 43, s_base);

        Assert.Equal(a.Events, b.Events);
        Assert.NotEqual(a.Events[0].Id, c.Events[0].Id);
    }

    [Theory]
    [InlineData(0, 10, 0.01, "count")]
    [InlineData(10, 0, 0.01, "customers")]
    [InlineData(10, 10, 1.0, "duplicateRate")]
    [InlineData(10, 10, -0.1, "duplicateRate")]
    [InlineData(10, 10, double.NaN, "duplicateRate")]
    public void Generate_BadArgument_ThrowsNamingIt(int count, int customers, double rate, string parameter)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => EventSet.Generate(count, customers, rate, 1, s_base));
        Assert.Equal(parameter, error.ParamName);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    public void Lanes_EveryEventOnceInOrder_CustomerInOneLane(int lanes)
    {
        var set = EventSet.Generate(30_000, 250, 0.05, 9, s_base);

        var split = set.Lanes(lanes);

        Assert.Equal(lanes, split.Length);
        Assert.Equal(Enumerable.Range(0, set.Events.Length), split.SelectMany(l => l).Order());
        var laneOfCustomer = new Dictionary<int, int>();
        for (int l = 0; l < split.Length; l++)
        {
            Assert.True(split[l].SequenceEqual(split[l].Order()), $"lane {l} is not in event order");
            foreach (int i in split[l])
                Assert.Equal(l, laneOfCustomer.TryAdd(set.Events[i].Customer, l) ? l : laneOfCustomer[set.Events[i].Customer]);
        }
    }
}
