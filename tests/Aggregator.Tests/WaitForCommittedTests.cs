using System.Runtime.CompilerServices;
using System.Text;
using AlphaMesh.Aggregator.Internal;
using AlphaMesh.Core;

namespace AlphaMesh.Aggregator.Tests;

/// <summary>
/// "Every event acknowledged before the question is in the answer", held against an oracle while writers commit:
/// the number of events whose commit had completed before each question.
/// </summary>
public sealed class WaitForCommittedTests
{
    private const int Writers = 4, PerWriter = 2_500, Customers = 40;
    private static readonly DateTime Noon = new(2026, 3, 10, 12, 0, 0, DateTimeKind.Utc);

    /// <summary>
    /// Writers append small batches of events of varying size and wait for each commit, on 4 KiB log pages with two
    /// in memory (a page ends, with padding, every few commits, and an aggregator that falls behind reads from the
    /// files), while the test asks again and again for the count of every event. The aggregators apply 16 records
    /// per round, so that their loops take a new committed position often.
    /// </summary>
    [Theory]
    [InlineData(true)] // the query waits for the committed events itself
    [InlineData(false)] // IAggregator.WaitForCommittedAsync, then a query that does not wait
    public async Task Query_WhileWritersCommit_CountsEveryEventAcknowledgedBeforeIt(bool queryWaits)
    {
        await using var harness = new Harness(partitions: 2, configure: o => o.BatchSize = 16, configureLog: o =>
        {
            o.PageSizeBytes = 4 << 10;
            o.MemoryBytesPerPartition = 8 << 10;
        });
        await harness.MeterAsync("acme", "calls", Aggregation.Count);
        await harness.StartAsync();
        var query = new UsageQuery
        {
            Tenant = "acme",
            MeterKey = "calls",
            From = new DateTimeOffset(2026, 3, 1, 0, 0, 0, TimeSpan.Zero),
            To = new DateTimeOffset(2026, 4, 1, 0, 0, 0, TimeSpan.Zero),
            WindowSize = WindowSize.Month,
            WaitForCommitted = queryWaits,
        };

        var acknowledged = new StrongBox<long>();
        var writing = Task.WhenAll(Enumerable.Range(0, Writers).Select(w => Task.Run(() => WriteAsync(harness.Log, w, acknowledged))));

        int questions = 0;
        decimal counted;
        bool last;
        do
        {
            last = writing.IsCompleted;
            long before = Volatile.Read(ref acknowledged.Value);
            if (!queryWaits)
                await harness.Aggregator.WaitForCommittedAsync();
            counted = Total(await harness.Aggregator.Usage.QueryAsync(query));
            questions++;
            Assert.True(counted >= before, $"Question {questions} counted {counted} events, but {before} were acknowledged before it was asked.");
            Assert.True(counted <= Writers * PerWriter, $"Question {questions} counted {counted} events of {Writers * PerWriter} appended.");
        }
        while (!last);
        await writing;

        Assert.Equal(Writers * PerWriter, counted);
    }

    /// <summary>Appends one writer's events in batches of 1 to 8 to the partition of the batch's customers, and adds
    /// each batch to the acknowledged count once its commit completed.</summary>
    private static async Task WriteAsync(IEventLog log, int writer, StrongBox<long> acknowledged)
    {
        var random = new Random(writer);
        var byPartition = new List<string>[log.PartitionCount];
        for (int p = 0; p < byPartition.Length; p++)
            byPartition[p] = [];
        for (int c = 0; c < Customers; c++)
        {
            string customer = "c" + c;
            byPartition[Partitioning.PartitionOf(Encoding.UTF8.GetBytes("acme"), Encoding.UTF8.GetBytes(customer), log.PartitionCount)].Add(customer);
        }

        var batch = new TestBatch();
        int sequence = 0;
        while (sequence < PerWriter)
        {
            int p = random.Next(byPartition.Length);
            int size = Math.Min(random.Next(1, 9), PerWriter - sequence);
            long ingest = Windows.FromDateTimeOffset(DateTimeOffset.UtcNow);
            batch.Clear();
            for (int i = 0; i < size; i++)
            {
                string customer = byPartition[p][random.Next(byPartition[p].Count)];
                // Filler of varying length, so that batches end at every offset of a page.
                var e = new TestEvent("acme", $"w{writer}-{sequence++}", "api_call", customer, Noon.AddSeconds(random.Next(3600)),
                    ("pad", new string('x', random.Next(200))));
                batch.Add(e.Encode(ingest));
            }
            var partition = log.GetPartition(p);
            long end;
            while (!partition.TryAppend(batch, out end))
                await partition.WaitForRoomAsync();
            await partition.WaitForCommitAsync(end);
            Interlocked.Add(ref acknowledged.Value, size);
        }
    }

    private static decimal Total(UsageResult result)
    {
        decimal total = 0;
        foreach (var row in result.Rows)
            total += row.Value;
        return total;
    }
}
