using System.Diagnostics.Metrics;
using AlphaMesh.Aggregator;
using AlphaMesh.Core;
using AlphaMesh.Server.Internal;
using Microsoft.Extensions.DependencyInjection;

namespace AlphaMesh.Server.Tests;

/// <summary>
/// The aggregator's instruments, observed through a <see cref="MeterListener"/>. The aggregator is a stub here: the
/// window in which a real one replays its log after a crash is too short and too timing-dependent to scrape reliably,
/// and the end-to-end counts are covered with a real server in <see cref="MetricsEndpointTests"/>.
/// </summary>
public sealed class AggregatorInstrumentsTests
{
    [Fact]
    public void Observe_PartitionReplaying_LeavesCountersOutButNotLagOrStopped()
    {
        var aggregator = new StubAggregator { Replaying = true };

        var observed = Observe(aggregator);

        Assert.DoesNotContain(observed, m => m.Name is "alphamesh.aggregator.duplicates" or "alphamesh.aggregator.invalid_events" or "alphamesh.aggregator.malformed_records");
        Assert.Equal(2, observed.Count(m => m.Name == "alphamesh.aggregator.lag"));
        Assert.Equal(2, observed.Count(m => m.Name == "alphamesh.aggregator.stopped"));
    }

    [Fact]
    public void Observe_Recovered_CountsPerTenantAndMeterWithoutZeros()
    {
        var aggregator = new StubAggregator { Replaying = false };

        var observed = Observe(aggregator);

        var duplicates = observed.Where(m => m.Name == "alphamesh.aggregator.duplicates").ToList();
        Assert.Equal([("tenant=acme", 7L)], duplicates.Select(m => (m.Tags, m.Value)));
        var invalid = observed.Where(m => m.Name == "alphamesh.aggregator.invalid_events").ToList();
        Assert.Equal([("tenant=acme,meter=tokens", 3L)], invalid.Select(m => (m.Tags, m.Value)));
        Assert.Equal(5, observed.Single(m => m.Name == "alphamesh.aggregator.malformed_records").Value);
        Assert.Equal([("partition=0", 0L), ("partition=1", 100L)], observed.Where(m => m.Name == "alphamesh.aggregator.lag").Select(m => (m.Tags, m.Value)));
    }

    private static List<(string Name, string Tags, long Value)> Observe(IAggregator aggregator)
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var meters = services.GetRequiredService<IMeterFactory>();
        _ = new AggregatorInstruments(meters, aggregator);
        var observed = new List<(string, string, long)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            // Only this factory's meter: other tests' servers in the process publish instruments of the same name.
            if (instrument.Meter.Name == AlphaMeshMetrics.MeterName && instrument.Meter.Scope == meters && instrument.Name.StartsWith("alphamesh.aggregator.", StringComparison.Ordinal))
                l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
            observed.Add((instrument.Name, string.Join(",", tags.ToArray().Select(t => $"{t.Key}={t.Value}")), value)));
        listener.Start();
        listener.RecordObservableInstruments();
        return observed;
    }

    /// <summary>Two partitions; acme has 7 duplicates and 3 invalid events for "tokens", none for "calls"; globex none.</summary>
    private sealed class StubAggregator : IAggregator
    {
        public bool Replaying { get; init; }

        public IReadOnlyDictionary<string, TenantCounters> GetAllCounters() => new Dictionary<string, TenantCounters>
        {
            ["acme"] = new(7, new Dictionary<string, long> { ["tokens"] = 3, ["calls"] = 0 }),
            ["globex"] = new(0, new Dictionary<string, long> { ["calls"] = 0 }),
        };

        public IReadOnlyList<PartitionProgress> GetProgress() =>
        [
            new(0, 500, 500, Stopped: false, CheckpointedAt: null, Replaying: false),
            new(1, 400, 500, Stopped: false, CheckpointedAt: null, Replaying),
        ];

        public long MalformedRecords => 5;
        public IUsageQuery Usage => throw new NotSupportedException();
        public IEntitlementService Entitlements => throw new NotSupportedException();
        public AggregatorStoppedException? Failure => null;
        public TenantCounters GetCounters(string tenant) => GetAllCounters()[tenant];
        public ValueTask CheckpointAsync(CancellationToken cancellationToken = default) => throw new NotSupportedException();
        public ValueTask WaitForCommittedAsync(CancellationToken cancellationToken = default) => throw new NotSupportedException();
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
