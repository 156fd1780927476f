using AlphaMesh.Aggregator.Internal;

namespace AlphaMesh.Aggregator.Tests;

public sealed class PeriodTotalsTests
{
    [Fact]
    public void GetOrAdd_SameKeyTwice_OneTotalListedOnceUnderItsMeter()
    {
        var totals = new PeriodTotals();
        var first = totals.GetOrAdd(1, "acme", "calls", "c1", Aggregation.Count, out bool added);
        var again = totals.GetOrAdd(1, "acme", "calls", "c1", Aggregation.Count, out bool addedAgain);
        totals.GetOrAdd(2, "acme", "tokens", "c1", Aggregation.Count, out _);

        Assert.True(added);
        Assert.False(addedAgain);
        Assert.Same(first, again);
        Assert.Equal([new CustomerTotal("c1", first)], totals.ForMeter("acme", "calls").ToArray());
        Assert.Equal(0, totals.ForMeter("acme", "nope").Count);
        Assert.Equal(0, totals.ForMeter("globex", "calls").Count);
    }

    [Fact]
    public async Task ForMeter_WhileFourWritersAdd_EverySnapshotIsAWholePrefixOfEachWritersTotals()
    {
        // Four writers (as four partition loops) add 20,000 customers each to one meter while a reader takes snapshots:
        // every snapshot must hold no null and, per writer, its first n totals in order (the list only grows).
        const int Writers = 4, PerWriter = 20_000;
        var totals = new PeriodTotals();
        var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(() =>
        {
            for (int i = 0; i < PerWriter; i++)
                totals.GetOrAdd((UInt128)((w * PerWriter) + i + 1), "acme", "calls", $"{w}:{i}", Aggregation.Count, out _);
        })).ToArray();
        int snapshots = 0;
        while (!writers.All(t => t.IsCompleted) || snapshots == 0)
        {
            CheckSnapshot(totals.ForMeter("acme", "calls"));
            snapshots++;
        }
        await Task.WhenAll(writers);

        var all = totals.ForMeter("acme", "calls");
        Assert.Equal(Writers * PerWriter, all.Count);
        CheckSnapshot(all);
        Assert.True(snapshots > 0);

        static void CheckSnapshot(ArraySegment<CustomerTotal> snapshot)
        {
            var next = new int[Writers];
            foreach (var (customer, total) in snapshot)
            {
                Assert.NotNull(total);
                int w = (int)((total.Key - 1) / PerWriter), i = (int)((total.Key - 1) % PerWriter);
                Assert.Equal(next[w], i);
                Assert.Equal($"{w}:{i}", customer);
                next[w]++;
            }
        }
    }

    [Fact]
    public async Task TryGet_WhileFourWritersAddAndGrowTheTable_FindsEveryTotalAddedBeforeTheRead()
    {
        // Writers publish how many totals they have added after each add; a reader that saw n must find the first n
        // (the same objects) whatever growth happens meanwhile, and must never find a key nobody added.
        const int Writers = 4, PerWriter = 50_000;
        var totals = new PeriodTotals();
        var added = new PeriodTotal[Writers * PerWriter];
        var progress = new int[Writers];
        static UInt128 Key(int w, int i) => new((ulong)(w + 1) << 40, ((ulong)i * 0x9E3779B97F4A7C15UL) ^ (ulong)w);
        var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(() =>
        {
            for (int i = 0; i < PerWriter; i++)
            {
                added[(w * PerWriter) + i] = totals.GetOrAdd(Key(w, i), "acme", "calls", $"{w}:{i}", Aggregation.Count, out _);
                Volatile.Write(ref progress[w], i + 1);
            }
        })).ToArray();
        var random = new Random(3);
        int checks = 0;
        while (!writers.All(t => t.IsCompleted) || checks == 0)
        {
            int w = random.Next(Writers);
            int seen = Volatile.Read(ref progress[w]);
            if (seen == 0)
                continue;
            int i = random.Next(seen);
            Assert.True(totals.TryGet(Key(w, i), out var found), $"writer {w}'s total {i} of {seen} not found");
            Assert.Same(added[(w * PerWriter) + i], found);
            Assert.False(totals.TryGet(Key(w, PerWriter + i), out _));
            checks++;
        }
        await Task.WhenAll(writers);
        for (int w = 0; w < Writers; w++)
        {
            for (int i = 0; i < PerWriter; i++)
                Assert.True(totals.TryGet(Key(w, i), out var found) && ReferenceEquals(found, added[(w * PerWriter) + i]));
        }
        Assert.True(checks > 0);
    }
}
