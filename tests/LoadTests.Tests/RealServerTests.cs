using System.Globalization;
using System.Text.Json;
using AlphaMesh.Client;
using AlphaMesh.Tests.Shared;

namespace AlphaMesh.LoadTests.Tests;

/// <summary>The real server as a child process (started by the harness's own <see cref="ServerHost"/>) on a fresh
/// data directory, with a billing database of its own on the test PostgreSQL.</summary>
public sealed class RealServerFixture : IAsyncLifetime
{
    private readonly TestDatabase _database = new();

    internal ServerHost Server { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await _database.InitializeAsync();
        Server = await ServerHost.StartOwnedAsync(Path.Combine(AppContext.BaseDirectory, "AlphaMesh.Server.dll"),
            [$"--AlphaMesh:Billing:ConnectionString={_database.ConnectionString}", "--AlphaMesh:EventLog:Partitions=2"], keepData: false);
    }

    public async Task DisposeAsync()
    {
        if (Server is not null)
            await Server.DisposeAsync();
        await _database.DisposeAsync();
    }
}

/// <summary>The harness against the real server: a whole short run, and the exactness check catching an event the
/// ledger does not have.</summary>
public sealed class RealServerTests(RealServerFixture fixture) : IClassFixture<RealServerFixture>, IDisposable
{
    private readonly string _results = Directory.CreateTempSubdirectory("alphamesh-load-results-").FullName;

    public void Dispose() => Directory.Delete(_results, recursive: true);

    [Fact]
    public async Task RunAsync_SteadyWithTwoTenants_ExactAndReportWritten()
    {
        var server = fixture.Server;
        var error = new StringWriter();
        var options = LoadOptions.Parse(
            ["steady", "--rate", "3000", "--duration", "3", "--warmup", "1", "--tenants", "2", "--customers", "50", "--batch", "100",
             "--endpoint", server.Grpc.ToString(), "--rest", server.Rest.ToString(), "--key", server.AdminKey,
             "--server-pid", server.Pid!.Value.ToString(CultureInfo.InvariantCulture), "--results", _results], error);
        Assert.True(options is not null, error.ToString());
        var output = new StringWriter();

        var (exitCode, directory) = await Harness.RunAsync(options, output, live: false, "load-tests/run.sh steady (test)", "test");

        Assert.True(exitCode == 0, output.ToString());
        using var report = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(directory!, "report.json")));
        var root = report.RootElement;
        var exactness = root.GetProperty("exactness");
        Assert.Equal(0, exactness.GetProperty("lost").GetInt64());
        Assert.Equal(0, exactness.GetProperty("doubled").GetInt64());
        Assert.Equal(0, exactness.GetProperty("mismatched").GetInt64());
        // About 12,000 events over warm-up and measurement; at least the measured ones were checked.
        Assert.True(exactness.GetProperty("events").GetInt64() >= root.GetProperty("counters").GetProperty("acknowledged").GetInt64());
        Assert.True(root.GetProperty("counters").GetProperty("acknowledged").GetInt64() > 0);
        Assert.True(root.GetProperty("timeline").GetArrayLength() >= 4);
        Assert.True(root.GetProperty("server").GetProperty("cpuSeconds").GetDouble() > 0);
        Assert.Contains("made through the tenants API", output.ToString(), StringComparison.Ordinal);
        Assert.Contains("EXACTNESS lost 0, doubled 0, mismatched 0", output.ToString(), StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(directory!, "latency.svg")));
        Assert.True(File.Exists(Path.Combine(directory!, "report.md")));
    }

    [Fact]
    public async Task Compare_AnEventTheLedgerDoesNotHave_Doubled()
    {
        var server = fixture.Server;
        using var api = new UsageApi(server.Rest);
        var tenants = await api.PrepareTenantsAsync(server.AdminKey, "default", 2, "cmp-" + Guid.NewGuid().ToString("N")[..8]);
        foreach (var tenant in tenants)
            await api.CreateMetersAsync(tenant);
        string[] customers = ["c0", "c1", "c2", "c3", "c4", "c5", "c6"];
        var ledgers = tenants.Select(_ => new Ledger(customers.Length, LoadMeters.Models.Length)).ToArray();
        var clients = tenants.Select(t => new UsageClient(new UsageClientOptions { Endpoint = server.Grpc, ApiKey = t.Key })).ToArray();
        var from = DateTimeOffset.UtcNow.AddDays(-1);
        try
        {
            var acknowledged = new List<Task>();
            for (int i = 0; i < 300; i++)
            {
                int tenant = i % 2, customer = i % customers.Length, model = i % 3;
                decimal tokens = LoadGenerator.TokenValues[i];
                acknowledged.Add(clients[tenant].TrackAsync(LoadMeters.EventType, customers[customer], Data(tokens, model)));
                ledgers[tenant].Add(customer, model, tokens);
            }
            await Task.WhenAll(acknowledged);
            var expected = new Dictionary<SeriesKey, decimal>();
            for (int t = 0; t < tenants.Count; t++)
                ledgers[t].AddExpectedSeries(tenants[t].Id, customers, LoadMeters.Models, expected);

            var (before, _) = await api.ReadUsageAsync(tenants, from, DateTimeOffset.UtcNow.AddDays(1));
            var exact = ExactnessResult.Compare(expected, before);
            Assert.True(exact.Exact, exact.Summary + "\n" + string.Join("\n", exact.Examples));
            Assert.Equal(300, exact.Events);

            // One more event, acknowledged by the server but never written into the ledger.
            await clients[1].TrackAsync(LoadMeters.EventType, customers[2], Data(1.5m, 0));
            var (after, _) = await api.ReadUsageAsync(tenants, from, DateTimeOffset.UtcNow.AddDays(1));
            var result = ExactnessResult.Compare(expected, after);

            Assert.Equal(0, result.Lost);
            Assert.Equal(1, result.Doubled);
            // Its customer's COUNT, SUM and SUM by model series.
            Assert.Equal(3, result.Mismatched);
            Assert.All(result.Examples, e => Assert.StartsWith($"{tenants[1].Id}/c2/", e, StringComparison.Ordinal));
        }
        finally
        {
            foreach (var client in clients)
                await client.DisposeAsync();
        }
    }

    [Fact]
    public async Task StopAsync_KeyRefused_EveryEventCountedAsFailedAndNoneBooked()
    {
        var server = fixture.Server;
        var error = new StringWriter();
        var options = LoadOptions.Parse(
            ["steady", "--rate", "0", "--clients", "1", "--tenants", "1", "--batch", "100", "--buffer", "1000",
             "--endpoint", server.Grpc.ToString(), "--rest", server.Rest.ToString(), "--key", server.AdminKey], error);
        Assert.True(options is not null, error.ToString());
        await using var load = new LoadGenerator(options, server.Grpc, [new LoadTenant("nobody", "not-a-key")], ["c0", "c1", "c2"]);

        load.Start();
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (load.Snapshot().Failed == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "no batch failed within a minute");
            await Task.Delay(20);
        }
        bool flushed = await load.StopAsync(TimeSpan.FromSeconds(60));

        var counters = load.Snapshot();
        Assert.True(flushed);
        Assert.True(counters.Offered >= 100);
        Assert.Equal(0, counters.Acknowledged);
        Assert.Equal(counters.Offered, counters.Failed);
        var only = Assert.Single(load.Errors);
        Assert.Equal(("failed:Unauthenticated", counters.Offered), (only.Key, only.Value));
        Assert.Empty(load.ExpectedSeries());
    }

    private static KeyValuePair<string, string>[] Data(decimal tokens, int model)
        => [new("tokens", tokens.ToString(CultureInfo.InvariantCulture)), new(LoadMeters.ModelProperty, LoadMeters.Models[model])];
}
