using AlphaMesh.Aggregator.Internal;

namespace AlphaMesh.Aggregator.Tests;

public sealed class HotPathTests
{
    private static readonly DateTime Noon = new(2026, 3, 10, 12, 0, 0, DateTimeKind.Utc);

    [Fact]
    public async Task Apply_KnownSeries_AllocatesNothing()
    {
        await using var harness = new Harness(partitions: 1, o =>
        {
            // The dedupe log wraps its memory during the warm-up, so that FASTER has allocated every page buffer it
            // will use (a page is allocated once, on first use, then recycled).
            o.AggregatesMemoryBytes = 1 << 20;
            o.DedupeMemoryBytes = 64 << 10;
            o.AggregatesIndexBytes = 1 << 20;
            o.DedupeIndexBytes = 1 << 20;
        });
        foreach (var aggregation in Enum.GetValues<Aggregation>())
            await harness.MeterAsync("acme", aggregation.ToString(), aggregation, "tokens", WindowSize.Minute, "api_call", "region");
        var partition = PartitionAggregator.OpenDetached(harness.Log.GetPartition(0), harness.Catalog, harness.Options());
        long ingest = Windows.FromDateTimeOffset(DateTimeOffset.UtcNow);
        var records = Enumerable.Range(0, 8000).Select(i => new TestEvent("acme", $"e{i}", "api_call", "c1", Noon.AddMilliseconds(i),
            ("tokens", "1.5"), ("region", "eu")).Encode(ingest)).ToArray();
        try
        {
            for (int i = 0; i < 7000; i++)
                partition.Apply(records[i]); // warms up: series, totals, JIT

            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 7000; i < 8000; i++)
                partition.Apply(records[i]);
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

            // FASTER allocates a few hundred bytes when it flushes a page (here a 4 KB page every ~100 events), never
            // per operation; any object allocated per event (24 bytes at least) would pass 24,000 bytes here.
            Assert.True(allocated < 16 * 1000, $"{allocated} bytes allocated for 1000 events");
        }
        finally
        {
            await partition.CrashAsync();
        }
    }

    [Fact]
    public async Task ApplyStaged_MalformedAndResentRecordsInOneStage_CountedEachInItsPlace()
    {
        await using var harness = new Harness(partitions: 1);
        await harness.MeterAsync("acme", "calls", Aggregation.Count);
        var partition = PartitionAggregator.OpenDetached(harness.Log.GetPartition(0), harness.Catalog, harness.Options());
        try
        {
            long ingest = Windows.FromDateTime(Noon);
            var first = new TestEvent("acme", "e1", "api_call", "c1", Noon).Encode(ingest);
            var malformed = first.AsSpan(0, first.Length - 1).ToArray(); // the customer's last byte is missing

            partition.Stage(first);
            partition.Stage(malformed);
            partition.Stage(first);
            partition.Stage(new TestEvent("acme", "e2", "api_call", "c2", Noon).Encode(ingest));
            Assert.False(partition.HasCustomer("acme", "c1")); // staged, not applied yet
            partition.ApplyStaged();

            Assert.Equal(1, partition.MalformedRecords);
            Assert.Equal(1, partition.Duplicates("acme"));
            Assert.True(partition.HasCustomer("acme", "c1"));
            Assert.True(partition.HasCustomer("acme", "c2"));
        }
        finally
        {
            await partition.CrashAsync();
        }
    }

    [Fact]
    public async Task CompactDedupe_ExpiredIds_AreDroppedAndLiveOnesKept()
    {
        await using var harness = new Harness(partitions: 1, o => o.DedupeRetention = TimeSpan.FromHours(1));
        await harness.MeterAsync("acme", "calls", Aggregation.Count);
        var partition = PartitionAggregator.OpenDetached(harness.Log.GetPartition(0), harness.Catalog, harness.Options());
        try
        {
            long old = Windows.FromDateTime(Noon.AddDays(-3));
            for (int i = 0; i < 2000; i++)
                partition.Apply(new TestEvent("acme", $"old{i}", "api_call", "c1", Noon.AddDays(-3)).Encode(old));
            long now = Windows.FromDateTime(Noon);
            partition.Apply(new TestEvent("acme", "fresh", "api_call", "c1", Noon).Encode(now));
            long begin = partition.DedupeLogBegin;

            partition.CompactDedupeNow();

            Assert.True(partition.DedupeLogBegin > begin);
            // The live id still dedupes; an expired one is forgotten (ingest would have rejected it as too old).
            partition.Apply(new TestEvent("acme", "fresh", "api_call", "c1", Noon).Encode(now));
            Assert.Equal(1, partition.Duplicates("acme"));
            partition.Apply(new TestEvent("acme", "old0", "api_call", "c1", Noon.AddDays(-3)).Encode(old));
            Assert.Equal(1, partition.Duplicates("acme"));
        }
        finally
        {
            await partition.CrashAsync();
        }
    }
}
