using System.Globalization;

namespace AlphaMesh.PeerBaselines;

/// <summary>Usage a system answered, held against the generator's oracle.</summary>
/// <param name="Exact">Every customer's count and sum equal the oracle's, and no customer is missing or extra.</param>
/// <param name="CustomersWrong">Customers whose count or sum differ, plus missing and unexpected ones.</param>
/// <param name="Customers">Customers the oracle has usage for.</param>
/// <param name="Counted">The sum of the counts the system answered.</param>
/// <param name="Expected">The oracle's total count: the distinct events.</param>
/// <param name="SumDifference">The system's total sum minus the oracle's.</param>
internal readonly record struct UsageComparison(bool Exact, int CustomersWrong, int Customers, long Counted, long Expected, decimal SumDifference)
{
    public static UsageComparison Compare(IReadOnlyDictionary<string, CustomerUsage> expected, IReadOnlyDictionary<string, CustomerUsage> actual)
    {
        int wrong = 0;
        long counted = 0, expectedCount = 0;
        decimal sumDifference = 0;
        foreach (var (customer, want) in expected)
        {
            expectedCount += want.Count;
            sumDifference -= want.Sum;
            if (!actual.TryGetValue(customer, out var got) || got != want)
                wrong++;
        }
        foreach (var (customer, got) in actual)
        {
            counted += got.Count;
            sumDifference += got.Sum;
            // A customer the oracle has no events for is wrong unless the system reports nothing for it.
            if (!expected.ContainsKey(customer) && got != default)
                wrong++;
        }
        return new UsageComparison(wrong == 0, wrong, expected.Count, counted, expectedCount, sumDifference);
    }

    /// <summary>One line for the table: "yes" or what is off.</summary>
    public string Describe() => Exact
        ? "yes"
        : string.Create(CultureInfo.InvariantCulture,
            $"no: {CustomersWrong:N0} of {Customers:N0} customers wrong, {Counted - Expected:+#,0;-#,0;0} events, sum {SumDifference:+#,0.00;-#,0.00;0}");
}
