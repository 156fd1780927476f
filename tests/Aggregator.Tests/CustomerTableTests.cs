using AlphaMesh.Aggregator.Internal;

namespace AlphaMesh.Aggregator.Tests;

public sealed class CustomerTableTests
{
    private static Series NewSeries(string tenant, string customer, int meter) => new()
    {
        Id = (UInt128)meter,
        Tenant = tenant,
        MeterKey = $"m{meter}",
        Customer = customer,
        GroupValues = [],
        CustomerTotal = false,
    };

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void SetNewest_RandomCustomersOfSeveralTenants_FindsEachCustomersNewestAsADictionaryWould(int seed)
    {
        // Three tenants share customer names (the same name of two tenants is two customers); a customer gets a newer
        // series again and again; 30,000 customers make the table grow many times.
        var random = new Random(seed);
        var table = new CustomerTable();
        var oracle = new Dictionary<(string, string), Series>();
        string[] tenants = ["acme", "globex", "initech"];
        for (int i = 0; i < 60_000; i++)
        {
            string tenant = tenants[random.Next(tenants.Length)];
            // New string instances: the table compares names by content, not by reference.
            string customer = new([.. $"customer-{random.Next(30_000)}"]);
            var series = NewSeries(tenant, customer, i);
            Assert.Same(oracle.GetValueOrDefault((tenant, customer)), table.Find(tenant, customer));
            table.SetNewest(series);
            oracle[(tenant, customer)] = series;
        }

        foreach (var ((tenant, customer), newest) in oracle)
            Assert.Same(newest, table.Find(tenant, new string([.. customer])));
        for (int i = 0; i < 1_000; i++)
        {
            string customer = $"customer-{30_000 + i}";
            Assert.Null(table.Find("acme", customer));
        }
        Assert.Null(table.Find("umbrella", "customer-1"));
    }
}
