using AlphaMesh.Aggregator;
using AlphaMesh.Core;
using AlphaMesh.Server.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace AlphaMesh.Server.Tests;

public sealed class AggregatorWiringTests
{
    [Fact]
    public void Build_DedupeRetentionBelowBackdatingLimit_FailsNamingBothSettings()
    {
        using var data = new TempDirectory();
        var settings = new ServerSettings(data.Path);
        settings.Extra["AlphaMesh:Aggregator:DedupeRetention"] = "10.00:00:00";
        settings.Extra["AlphaMesh:Ingest:BackdatingLimit"] = "20.00:00:00";

        var error = Assert.Throws<InvalidOperationException>(() => AlphaMeshHost.Build(settings.ToArgs()));

        Assert.Contains("AlphaMesh:Aggregator:DedupeRetention", error.Message, StringComparison.Ordinal);
        Assert.Contains("AlphaMesh:Ingest:BackdatingLimit", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Build_WindowRetentionShorterThanBillingLooksBack_FailsNamingBothSettings()
    {
        using var data = new TempDirectory();
        var settings = new ServerSettings(data.Path);
        settings.Extra["AlphaMesh:Aggregator:WindowRetention"] = "800.00:00:00";
        settings.Extra["AlphaMesh:Billing:LateUsageWindow"] = "90.00:00:00";

        var error = Assert.Throws<InvalidOperationException>(() => AlphaMeshHost.Build(settings.ToArgs()));

        Assert.Contains("AlphaMesh:Aggregator:WindowRetention (800.00:00:00) must be at least 853.00:00:00", error.Message, StringComparison.Ordinal);
        Assert.Contains("AlphaMesh:Billing:LateUsageWindow, 90.00:00:00", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Build_DefaultSettings_KeepsAggregatorStateAndMetersInDataDirectory()
    {
        using var data = new TempDirectory();
        await using (var server = await InProcessServer.StartAsync(dataDirectory: data.Path))
        {
            var options = server.App.Services.GetRequiredService<AggregatorOptions>();
            Assert.Equal(Path.Combine(data.Path, "aggregator"), options.Directory);
            await server.App.Services.GetRequiredService<IMeterCatalog>().CreateAsync(new MeterDefinition
            {
                Tenant = "acme",
                Key = "calls",
                EventType = "api_call",
                Aggregation = Aggregation.Count,
            });
        }
        Assert.True(File.Exists(Path.Combine(data.Path, "meters.json")));
        // Disposal took the aggregator's final checkpoint while the log was still open.
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(data.Path, "aggregator"), "checkpoint.manifest", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task Dispose_Server_DisposesAggregatorBeforeEventLog()
    {
        var order = new List<string>();
        using var data = new TempDirectory();
        var server = await InProcessServer.StartAsync(dataDirectory: data.Path, services: services =>
        {
            services.AddSingleton<IEventLog>(sp => new RecordingLog(EventLogFactory.OpenFasterLog(sp.GetRequiredService<EventLogOptions>()), order));
            services.AddSingleton<IAggregator>(sp => new RecordingAggregator(AggregatorFactory.StartAsync(
                sp.GetRequiredService<IEventLog>(), sp.GetRequiredService<IMeterCatalog>(), sp.GetRequiredService<AggregatorOptions>())
                .GetAwaiter().GetResult(), order));
        });

        await server.DisposeAsync();

        Assert.Equal(["aggregator", "log"], order);
    }

    private sealed class RecordingLog(IEventLog inner, List<string> order) : IEventLog
    {
        public int PartitionCount => inner.PartitionCount;
        public IPartitionLog GetPartition(int index) => inner.GetPartition(index);
        public ValueTask CommitAllAsync(CancellationToken cancellationToken = default) => inner.CommitAllAsync(cancellationToken);
        public async ValueTask DisposeAsync()
        {
            lock (order)
                order.Add("log");
            await inner.DisposeAsync();
        }
    }

    private sealed class RecordingAggregator(IAggregator inner, List<string> order) : IAggregator
    {
        public IUsageQuery Usage => inner.Usage;
        public IEntitlementService Entitlements => inner.Entitlements;
        public long MalformedRecords => inner.MalformedRecords;
        public TenantCounters GetCounters(string tenant) => inner.GetCounters(tenant);
        public IReadOnlyDictionary<string, TenantCounters> GetAllCounters() => inner.GetAllCounters();
        public IReadOnlyList<PartitionProgress> GetProgress() => inner.GetProgress();
        public ValueTask CheckpointAsync(CancellationToken cancellationToken = default) => inner.CheckpointAsync(cancellationToken);
        public ValueTask WaitForCommittedAsync(CancellationToken cancellationToken = default) => inner.WaitForCommittedAsync(cancellationToken);
        public AggregatorStoppedException? Failure => inner.Failure;
        public async ValueTask DisposeAsync()
        {
            lock (order)
                order.Add("aggregator");
            await inner.DisposeAsync();
        }
    }

    [Fact]
    public async Task StoppedPartition_UsageAndHealth_Answer503UnavailableAndUnhealthy()
    {
        // A test double that answers like a stopped partition from the first request, and names partition 1.
        // StoppedPartitionTests causes the real fault (a checkpoint that cannot write its state file).
        using var data = new TempDirectory();
        await using var server = await InProcessServer.StartAsync(dataDirectory: data.Path, services: services =>
            services.AddSingleton<IAggregator>(sp => new StoppedAggregator(AggregatorFactory.StartAsync(
                sp.GetRequiredService<IEventLog>(), sp.GetRequiredService<IMeterCatalog>(), sp.GetRequiredService<AggregatorOptions>())
                .GetAwaiter().GetResult())));
        using var api = new UsageApi(server);
        await api.CreateMeterAsync(new { key = "calls", eventType = "api_call", aggregation = "COUNT" });

        var (status, body) = await api.GetJsonAsync("/v1/meters/calls/usage?from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z");
        var grpc = await Assert.ThrowsAsync<Grpc.Core.RpcException>(async () => await api.Query.GetUsageAsync(new AlphaMesh.Usage.V1.GetUsageRequest
        {
            Meter = "calls",
            From = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(new DateTimeOffset(2026, 11, 1, 0, 0, 0, TimeSpan.Zero)),
            To = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(new DateTimeOffset(2026, 11, 2, 0, 0, 0, TimeSpan.Zero)),
        }, Requests.Auth(ServerSettings.ReadOnlyKey)));
        using var http = new HttpClient { BaseAddress = server.Settings.RestAddress };
        using var health = await http.GetAsync("/healthz");

        Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, status);
        Assert.Equal("unavailable", body.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains("partition 1 stopped", body.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal(Grpc.Core.StatusCode.Unavailable, grpc.StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, health.StatusCode);
    }

    private sealed class StoppedAggregator(IAggregator inner) : IAggregator, IUsageQuery
    {
        private readonly AggregatorStoppedException _failure = new(1, new IOException("No space left on device"));
        public IUsageQuery Usage => this;
        public IEntitlementService Entitlements => inner.Entitlements;
        public long MalformedRecords => inner.MalformedRecords;
        public TenantCounters GetCounters(string tenant) => inner.GetCounters(tenant);
        public IReadOnlyDictionary<string, TenantCounters> GetAllCounters() => inner.GetAllCounters();
        public IReadOnlyList<PartitionProgress> GetProgress() => inner.GetProgress();
        public ValueTask CheckpointAsync(CancellationToken cancellationToken = default) => inner.CheckpointAsync(cancellationToken);
        public ValueTask WaitForCommittedAsync(CancellationToken cancellationToken = default) => inner.WaitForCommittedAsync(cancellationToken);
        public AggregatorStoppedException? Failure => _failure;
        public ValueTask<UsageResult> QueryAsync(UsageQuery query, CancellationToken cancellationToken = default) => ValueTask.FromException<UsageResult>(_failure);
        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
