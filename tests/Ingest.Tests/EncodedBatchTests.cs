using System.Text;
using AlphaMesh.Ingest.Internal;
using static AlphaMesh.Ingest.Tests.TestSupport;

namespace AlphaMesh.Ingest.Tests;

public sealed class EncodedBatchTests
{
    private static EncodedBatch Parsed(int events, int partitions)
    {
        var batch = EncodedBatch.Rent(partitions);
        var json = "[" + string.Join(",", Enumerable.Range(0, events).Select(i => $$"""{"id":"e{{i}}","type":"t","subject":"c{{i % 11}}"}""")) + "]";
        Assert.True(CloudEventsBatchParser.TryParse(Encoding.UTF8.GetBytes(json), CloudEventsMode.Batch, Tenant, Context(partitions: partitions), batch, out var error), error);
        return batch;
    }

    [Fact]
    public void GetPartitionBatch_ParsedRequest_EachPartitionHoldsItsEventsInRequestOrder()
    {
        var batch = Parsed(500, 4);
        var ids = Decode(batch);
        for (int p = 0; p < 4; p++)
        {
            var expected = Enumerable.Range(0, 500).Where(i => PartitionOf($"c{i % 11}", 4) == p).Select(i => $"e{i}");
            Assert.Equal(expected, ids.Where(e => e.Partition == p).Select(e => e.Id));
        }
        batch.Return();
    }

    [Fact]
    public void GetPartitionBatch_SamePartition_ReturnsTheSameReusedObject()
    {
        var batch = Parsed(10, 4);
        Assert.Same(batch.GetPartitionBatch(1), batch.GetPartitionBatch(1));
        batch.Return();
    }

    [Fact]
    public void GetRecord_IndexBeyondCount_Throws()
    {
        var batch = Parsed(3, 1);
        var records = batch.GetPartitionBatch(0);
        Assert.Equal(3, records.Count);
        Assert.Throws<ArgumentOutOfRangeException>(() => records.GetRecord(3));
        batch.Return();
    }

    [Fact]
    public void Return_Twice_Throws()
    {
        var batch = EncodedBatch.Rent(2);
        batch.Return();
        Assert.Throws<InvalidOperationException>(batch.Return);
    }

    [Fact]
    public void Rent_AfterReturn_ReusesAnEmptiedBatchWithTheRequestedPartitions()
    {
        var first = Parsed(50, 4);
        first.BatchId = "b";
        first.Return();
        var second = EncodedBatch.Rent(3);
        Assert.Equal(3, second.PartitionCount);
        AssertEmpty(second);
        second.Return();
    }

    [Fact]
    public void Rent_ZeroPartitions_Throws()
        => Assert.Throws<ArgumentOutOfRangeException>(() => EncodedBatch.Rent(0));

    [Fact]
    public void TryParse_BatchOfOtherPartitionCount_Throws()
    {
        var batch = EncodedBatch.Rent(2);
        Assert.Throws<ArgumentException>(() => CloudEventsBatchParser.TryParse("[]"u8, CloudEventsMode.Batch, Tenant, Context(partitions: 3), batch, out _));
        batch.Return();
    }
}
