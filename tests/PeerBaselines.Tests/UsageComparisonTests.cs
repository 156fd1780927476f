namespace AlphaMesh.PeerBaselines.Tests;

/// <summary>Holding a system's answer against the oracle: what makes a run "exact" in the table.</summary>
public sealed class UsageComparisonTests
{
    private static Dictionary<string, CustomerUsage> Oracle() => new()
    {
        ["a"] = new(3, 12.30m),
        ["b"] = new(1, 0.01m),
        ["c"] = new(5, 100m),
    };

    [Fact]
    public void Compare_SameValuesOtherScale_Exact()
    {
        var answer = new Dictionary<string, CustomerUsage> { ["a"] = new(3, 12.3m), ["b"] = new(1, 0.010m), ["c"] = new(5, 100.00m) };

        var result = UsageComparison.Compare(Oracle(), answer);

        Assert.True(result.Exact);
        Assert.Equal("yes", result.Describe());
        Assert.Equal(9, result.Counted);
        Assert.Equal(0m, result.SumDifference);
    }

    [Fact]
    public void Compare_DoubledEvent_NotExactWithDifference()
    {
        var answer = Oracle();
        answer["a"] = new(4, 16.40m); // one event of 4.10 counted twice

        var result = UsageComparison.Compare(Oracle(), answer);

        Assert.False(result.Exact);
        Assert.Equal(1, result.CustomersWrong);
        Assert.Equal("no: 1 of 3 customers wrong, +1 events, sum +4.10", result.Describe());
    }

    [Fact]
    public void Compare_MissingAndUnexpectedCustomers_BothWrong()
    {
        var answer = Oracle();
        answer.Remove("b");
        answer["z"] = new(2, 1m);

        var result = UsageComparison.Compare(Oracle(), answer);

        Assert.False(result.Exact);
        Assert.Equal(2, result.CustomersWrong);
        Assert.Equal("no: 2 of 3 customers wrong, +1 events, sum +0.99", result.Describe());
    }

    [Fact]
    public void Compare_UnexpectedCustomerWithNothing_Exact()
    {
        var answer = Oracle();
        answer["z"] = default;

        Assert.True(UsageComparison.Compare(Oracle(), answer).Exact);
    }

    [Fact]
    public void Compare_RandomChanges_CountsEveryChangedCustomer()
    {
        var random = new Random(5);
        for (int round = 0; round < 200; round++)
        {
            var oracle = new Dictionary<string, CustomerUsage>();
            int customers = random.Next(1, 200);
            for (int c = 0; c < customers; c++)
                oracle["c" + c] = new(random.Next(1, 1000), random.Next(1, 100_000) / 100m);
            var answer = new Dictionary<string, CustomerUsage>(oracle);
            var changed = new HashSet<string>();
            long countDelta = 0;
            decimal sumDelta = 0;
            for (int k = random.Next(0, 5); k > 0; k--)
            {
                string customer = "c" + random.Next(customers);
                if (!changed.Add(customer))
                    continue;
                int dc = random.Next(2) == 0 ? 0 : random.Next(-1, 3);
                decimal ds = random.Next(2) == 0 && dc != 0 ? 0 : random.Next(1, 500) / 100m;
                answer[customer] = new(answer[customer].Count + dc, answer[customer].Sum + ds);
                countDelta += dc;
                sumDelta += ds;
            }

            var result = UsageComparison.Compare(oracle, answer);

            Assert.Equal(changed.Count == 0, result.Exact);
            Assert.Equal(changed.Count, result.CustomersWrong);
            Assert.Equal(oracle.Values.Sum(u => u.Count) + countDelta, result.Counted);
            Assert.Equal(sumDelta, result.SumDifference);
        }
    }
}
