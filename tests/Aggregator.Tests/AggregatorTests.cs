using System.Globalization;
using AlphaMesh.Aggregator.Internal;

namespace AlphaMesh.Aggregator.Tests;

public sealed class AggregatorTests
{
    private static readonly DateTime Noon = new(2026, 3, 10, 12, 0, 0, DateTimeKind.Utc);

    private static UsageQuery Query(string tenant, string meter, WindowSize? size = null, string? customer = null,
        string[]? groupBy = null, Dictionary<string, string>? filters = null) => new()
        {
            Tenant = tenant,
            MeterKey = meter,
            Customer = customer,
            From = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero),
            To = new DateTimeOffset(2026, 4, 1, 0, 0, 0, TimeSpan.Zero),
            WindowSize = size,
            GroupBy = groupBy,
            Filters = filters,
        };

    /// <summary>One meter per aggregation over the same randomized events.</summary>
    private static async Task<List<MeterDefinition>> AllMetersAsync(Harness harness)
    {
        var meters = new List<MeterDefinition>();
        foreach (var aggregation in Enum.GetValues<Aggregation>())
        {
            var window = aggregation == Aggregation.UniqueCount ? WindowSize.Minute : WindowSize.Hour;
            string property = aggregation == Aggregation.UniqueCount ? "user" : "tokens";
            meters.Add(await harness.MeterAsync("acme", aggregation.ToString().ToLowerInvariant(), aggregation, property, window, "api_call", "region", "model"));
        }
        // Same tenant, another meter key over the same type without grouping, and the other tenant's meter.
        meters.Add(await harness.MeterAsync("acme", "sum-flat", Aggregation.Sum, window: WindowSize.Day));
        meters.Add(await harness.MeterAsync("globex", "sum", Aggregation.Sum, window: WindowSize.Minute));
        return meters;
    }

    /// <summary>The query shapes compared for every meter: base windows, one customer by day with every group,
    /// month with a filter, and day grouped in another key order.</summary>
    private static IEnumerable<UsageQuery> Shapes(MeterDefinition meter)
    {
        yield return Query(meter.Tenant, meter.Key);
        if (meter.GroupBy.Count == 0)
        {
            yield return Query(meter.Tenant, meter.Key, WindowSize.Month);
            yield return Query(meter.Tenant, meter.Key, WindowSize.Day, customer: "c1");
            yield break;
        }
        yield return Query(meter.Tenant, meter.Key, WindowSize.Day, customer: "c1", groupBy: ["region", "model"]);
        yield return Query(meter.Tenant, meter.Key, WindowSize.Month, groupBy: ["model"], filters: new() { ["region"] = "eu" });
        yield return Query(meter.Tenant, meter.Key, WindowSize.Day, groupBy: ["model", "region"]);
        yield return Query(meter.Tenant, meter.Key, WindowSize.Month, customer: "c2");
    }

    private static async Task AssertMatchesOracleAsync(Harness harness, List<MeterDefinition> meters)
    {
        await harness.Aggregator.WaitForCommittedAsync();
        var all = harness.Aggregator.GetAllCounters();
        foreach (var meter in meters)
        {
            foreach (var query in Shapes(meter))
            {
                var expected = Oracle.Usage(harness.Appended, meter, query);
                var result = await harness.Aggregator.Usage.QueryAsync(query);
                var actual = Oracle.Actual(result);
                Assert.True(expected.Count > 0 || meter.Tenant == "globex", $"{meter.Key}: the oracle has no rows; the test data misses this case");
                Assert.Equal(expected.OrderBy(r => r.Key, StringComparer.Ordinal), actual.OrderBy(r => r.Key, StringComparer.Ordinal));
                // UNIQUE_COUNT rows count values, not events (see UsageRow.EventCount).
                if (meter.Aggregation != Aggregation.UniqueCount)
                {
                    Assert.Equal(Oracle.EventCounts(harness.Appended, meter, query).OrderBy(r => r.Key, StringComparer.Ordinal),
                        Oracle.ActualEventCounts(result).OrderBy(r => r.Key, StringComparer.Ordinal));
                }
            }
            var counters = harness.Aggregator.GetCounters(meter.Tenant);
            Assert.Equal(Oracle.Valid(harness.Appended, meter).Invalid, counters.InvalidByMeter.GetValueOrDefault(meter.Key));
            // The all-tenants snapshot (metrics) agrees with the per-tenant one.
            Assert.Equal(Oracle.Valid(harness.Appended, meter).Invalid, all[meter.Tenant].InvalidByMeter.GetValueOrDefault(meter.Key));
        }
        foreach (string tenant in new[] { "acme", "globex" })
        {
            int duplicates = harness.Appended.Count(e => e.Tenant == tenant) - Oracle.Unique(harness.Appended).Count(e => e.Tenant == tenant);
            Assert.Equal(duplicates, harness.Aggregator.GetCounters(tenant).Duplicates);
            Assert.Equal(duplicates, all.TryGetValue(tenant, out var counted) ? counted.Duplicates : 0);
        }
        Assert.All(harness.Aggregator.GetProgress(), p =>
        {
            Assert.False(p.Replaying);
            Assert.False(p.Stopped);
            Assert.Equal(0, p.LagBytes);
        });
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task Query_EveryAggregationOnRandomEvents_EqualsOracle(int seed)
    {
        await using var harness = new Harness();
        var meters = await AllMetersAsync(harness);
        await harness.StartAsync();
        var random = new Random(seed);
        var first = RandomEvents.Generate(random, 600);
        // Half in one append, then the rest with resends of the first half in later batches.
        await harness.AppendAsync(first);
        await harness.AppendAsync(RandomEvents.Generate(random, 600, first, "f"));

        await AssertMatchesOracleAsync(harness, meters);
    }

    [Fact]
    public async Task Query_EachCustomerOfEachMeter_EqualsOracleBeforeAndAfterRestart()
    {
        // A customer's series of every meter (and group values) hang together in the directory; a query of one customer
        // reads only those. Every customer of both tenants, also one no tenant has, and the chains rebuilt by recovery.
        await using var harness = new Harness(configure: o => o.CheckpointInterval = TimeSpan.FromHours(1));
        var meters = await AllMetersAsync(harness);
        await harness.StartAsync();
        var random = new Random(11);
        // Recovery reads a full state file, then a file of changes, then replays the rest of the log.
        await harness.AppendAsync(RandomEvents.Generate(random, 800));
        await harness.Aggregator.CheckpointAsync();
        await harness.AppendAsync(RandomEvents.Generate(random, 20, idPrefix: "g"));
        await harness.Aggregator.CheckpointAsync();
        await harness.AppendAsync(RandomEvents.Generate(random, 200, idPrefix: "h"));

        for (int restart = 0; restart < 2; restart++)
        {
            if (restart == 1)
                await harness.CrashAndRestartAsync();
            foreach (var meter in meters)
            {
                foreach (string customer in new[] { "c0", "c1", "c2", "c3", "c4", "c5", "nobody" })
                {
                    string[]? groupBy = meter.GroupBy.Count > 0 ? ["model", "region"] : null;
                    var query = Query(meter.Tenant, meter.Key, customer: customer, groupBy: groupBy);
                    var result = await harness.Aggregator.Usage.QueryAsync(query);
                    var expected = Oracle.Usage(harness.Appended, meter, query);
                    Assert.Equal(expected.OrderBy(r => r.Key, StringComparer.Ordinal), Oracle.Actual(result).OrderBy(r => r.Key, StringComparer.Ordinal));
                    bool known = harness.Appended.Any(e => e.Tenant == meter.Tenant && e.Customer == customer);
                    Assert.True(known || result.Rows.Count == 0, $"{meter.Key} {customer}");
                    Assert.Equal(known, result.CustomerKnown);
                }
            }
        }
    }

    [Fact]
    public async Task Recover_FullStateFileOfManySeries_AddsThemWithoutLongProbes()
    {
        // A full state file lists the series in the slot order of the table that wrote it; recovery must size its table
        // first (SeriesTable.EnsureCapacity), or these inserts pile up into long runs (quadratic time). 24,000 series
        // fill the table to 73 %, where step-by-step growth passes over about 70 slots per series (SeriesTableTests).
        await using var harness = new Harness(partitions: 1, o => o.CheckpointInterval = TimeSpan.FromHours(1));
        await harness.MeterAsync("acme", "calls", Aggregation.Count, valueProperty: null);
        await harness.StartAsync();
        const int Customers = 24_000;
        await harness.AppendAsync(Enumerable.Range(0, Customers).Select(i => new TestEvent("acme", $"e{i}", "api_call", $"c{i}", Noon)));
        await harness.RestartAsync(); // the final checkpoint writes the full state file

        long probes = await harness.Host.Partitions[0].Submit(0, (p, _) => ValueTask.FromResult(p.SeriesInsertProbes));
        Assert.True(probes < 3L * Customers, $"{probes} slots passed over adding {Customers} series");
        // A sample of customers, one query each: after a restart each series' window is read back from the store's
        // files one pending read at a time, which for all 24,000 took minutes on a busy machine.
        for (int i = 0; i < Customers; i += 997)
        {
            var row = Assert.Single((await harness.Aggregator.Usage.QueryAsync(Query("acme", "calls", customer: $"c{i}"))).Rows);
            Assert.Equal(1m, row.Value);
        }
    }

    [Fact]
    public async Task Recover_CheckpointThenMoreEventsThenCrash_EqualsOracle()
    {
        await using var harness = new Harness();
        var meters = await AllMetersAsync(harness);
        await harness.StartAsync();
        var random = new Random(42);
        var first = RandomEvents.Generate(random, 500);
        await harness.AppendAsync(first);
        await harness.Aggregator.CheckpointAsync();
        await harness.AppendAsync(RandomEvents.Generate(random, 500, first, "f"));

        await harness.CrashAndRestartAsync(); // no checkpoint: the second half is replayed from the log
        await harness.Aggregator.WaitForCommittedAsync();

        await AssertMatchesOracleAsync(harness, meters);
    }

    [Fact]
    public async Task Recover_LogOnlyCheckpointsAfterAnIndexCheckpoint_EqualsOracle()
    {
        // Only the first checkpoint writes the stores' indexes; the later ones write their logs alone, and recovery
        // replays the stores' logs since the index checkpoint into the index.
        await using var harness = new Harness(configure: o => o.IndexCheckpointLogBytes = long.MaxValue);
        var meters = await AllMetersAsync(harness);
        await harness.StartAsync();
        var random = new Random(7);
        var first = RandomEvents.Generate(random, 300);
        await harness.AppendAsync(first);
        await harness.Aggregator.CheckpointAsync(); // index and log
        for (int round = 0; round < 3; round++)
        {
            await harness.AppendAsync(RandomEvents.Generate(random, 300, first, $"r{round}"));
            await harness.Aggregator.CheckpointAsync(); // log only
        }
        await harness.AppendAsync(RandomEvents.Generate(random, 300, first, "last"));
        var manifest = CheckpointManifest.TryRead(Path.Combine(Path.GetFullPath(harness.Options().Directory), "p0"));
        Assert.NotNull(manifest);
        Assert.NotEqual(manifest.Dedupe.Index, manifest.Dedupe.Log);

        await harness.CrashAndRestartAsync();
        await harness.Aggregator.WaitForCommittedAsync();
        await AssertMatchesOracleAsync(harness, meters);

        await harness.RestartAsync(); // graceful: the final checkpoint (with the index: the first of this run)
        await harness.Aggregator.WaitForCommittedAsync();
        await AssertMatchesOracleAsync(harness, meters);
    }

    [Fact]
    public async Task Recover_CheckpointFailedAfterDedupeCompaction_PreviousCheckpointRecoversAndCountsNothingTwice()
    {
        // A checkpoint compacts the dedupe log, FASTER's checkpoints of both stores complete (FASTER then truncates
        // the dedupe log below its new beginning), and the checkpoint fails before its manifest is written (here:
        // the state file's path is taken by a directory; a full disk or a crash does the same). The manifest still
        // names the previous checkpoint, which needs the dedupe log from the old beginning: its segments must still
        // be there, or the partition cannot recover.
        var retention = TimeSpan.FromSeconds(2);
        await using var harness = new Harness(partitions: 1, o =>
        {
            o.SegmentSizeBytes = 16 << 10;
            o.DedupeCompactionBytes = 16 << 10;
            // Short, so that the first half's ids have expired (by ingest time) when the second checkpoint compacts.
            o.DedupeRetention = retention;
        });
        var meters = await AllMetersAsync(harness);
        await harness.StartAsync();
        var random = new Random(11);
        var first = RandomEvents.Generate(random, 1500);
        await harness.AppendAsync(first);
        await harness.Aggregator.CheckpointAsync();
        await Task.Delay(retention + TimeSpan.FromMilliseconds(200));
        var second = RandomEvents.Generate(random, 1500, first, "s");
        await harness.AppendAsync(second);

        string partitionDirectory = Path.Combine(harness.Options().Directory, "p0");
        var manifest = CheckpointManifest.TryRead(partitionDirectory);
        Assert.NotNull(manifest);
        Directory.CreateDirectory(Path.Combine(partitionDirectory, $"state-{manifest.Sequence + 1:D10}.bin"));
        var partition = harness.Host.Partitions[0];
        long beginBefore = partition.DedupeLogBegin;

        // Opening a directory for writing: EACCES, which .NET reports as UnauthorizedAccessException.
        await Assert.ThrowsAsync<UnauthorizedAccessException>(async () => await harness.Aggregator.CheckpointAsync());

        // The failed checkpoint did compact past a whole segment, and the manifest still names the previous one.
        long segment = harness.Options().SegmentSizeBytes;
        Assert.True(partition.DedupeLogBegin / segment > beginBefore / segment,
            $"the dedupe log's beginning moved from {beginBefore} to {partition.DedupeLogBegin}, within one segment");
        Assert.Equal(manifest, CheckpointManifest.TryRead(partitionDirectory));

        Directory.Delete(Path.Combine(partitionDirectory, $"state-{manifest.Sequence + 1:D10}.bin"));
        await harness.CrashAndRestartAsync();
        await harness.Aggregator.WaitForCommittedAsync();
        await AssertMatchesOracleAsync(harness, meters);

        // Every event resent, in another order and split, before a checkpoint compacts again: all duplicates.
        await harness.AppendAsync(Enumerable.Reverse(second).Concat(first));
        await AssertMatchesOracleAsync(harness, meters);
        // The next checkpoints succeed, and remove the segments that no checkpoint needs any more. (FASTER truncates
        // in an epoch action that may run after the checkpoint's PurgeExcept; the one after removes them then.)
        List<int> kept = [];
        for (int attempt = 0; attempt < 20; attempt++)
        {
            await harness.AppendAsync([new TestEvent("acme", $"after{attempt}", "api_call", "c1", Noon)]);
            await harness.Aggregator.CheckpointAsync();
            long firstNeeded = harness.Host.Partitions[0].DedupeLogBegin / segment;
            var segments = Directory.EnumerateFiles(Path.Combine(partitionDirectory, "dedupe"), "hlog.*")
                .Select(f => int.Parse(Path.GetExtension(f)[1..], CultureInfo.InvariantCulture)).ToList();
            Assert.NotEmpty(segments);
            kept = [.. segments.Where(s => s < firstNeeded)];
            if (kept.Count == 0)
                break;
            await Task.Delay(50);
        }
        Assert.True(kept.Count == 0, $"segments {string.Join(", ", kept)} kept, below the log's beginning");
    }

    private static List<TestEvent> NewIds(string prefix, int count, DateTime time) =>
        [.. Enumerable.Range(0, count).Select(i => new TestEvent("acme", $"{prefix}{i}", "api_call", $"c{i % 7}", time))];

    /// <summary>A started harness of one partition with a COUNT meter, whose ids and windows are kept for
    /// <paramref name="retention"/>, and whose dedupe log is compacted from 4 KiB on.</summary>
    private static async Task<Harness> StartRetentionHarnessAsync(TimeSpan retention, WindowSize window = WindowSize.Hour)
    {
        var harness = new Harness(partitions: 1, o =>
        {
            o.DedupeCompactionBytes = 4 << 10;
            o.DedupeRetention = retention;
            o.WindowRetention = retention;
        });
        await harness.MeterAsync("acme", "calls", Aggregation.Count, window: window);
        await harness.StartAsync();
        return harness;
    }

    [Fact]
    public async Task CompactDedupe_LiveIdsPastTheThreshold_MovesNothing()
    {
        // Every id is younger than the retention: however long the dedupe log, a checkpoint has nothing to drop.
        // (Compacting a share of the log instead copied a quarter of the live ids to the tail at every checkpoint.)
        await using var harness = new Harness(partitions: 1, o => o.DedupeCompactionBytes = 16 << 10);
        await harness.MeterAsync("acme", "calls", Aggregation.Count);
        await harness.StartAsync();
        var partition = harness.Host.Partitions[0];
        long begin = partition.DedupeLogBegin;
        for (int round = 0; round < 5; round++)
        {
            await harness.AppendAsync(NewIds($"r{round}-", 2000, Noon));
            long tail = partition.DedupeLogTail;
            await harness.Aggregator.CheckpointAsync();
            Assert.Equal(begin, partition.DedupeLogBegin);
            Assert.Equal(tail, partition.DedupeLogTail);
        }
        Assert.True(partition.DedupeLogTail - begin > 8 * (16 << 10), "the log never outgrew the compaction threshold");
    }

    [Fact]
    public async Task CompactDedupe_IdsARetentionOld_DropsThemAndMovesOnlyTheLiveOnes()
    {
        var retention = TimeSpan.FromSeconds(2);
        await using var harness = await StartRetentionHarnessAsync(retention);
        var partition = harness.Host.Partitions[0];
        // Old events, and three timed an hour ahead: an id is kept for the retention after the later of its times.
        var old = NewIds("old", 3000, DateTime.UtcNow.AddMinutes(-1));
        var ahead = NewIds("ahead", 3, DateTime.UtcNow.AddHours(1));
        await harness.AppendAsync(old.Concat(ahead));
        long oldTail = partition.DedupeLogTail;
        await harness.Aggregator.CheckpointAsync(); // marks where the log stands
        Assert.Equal(64, partition.DedupeLogBegin); // FASTER's first address: nothing compacted yet

        await Task.Delay(retention + TimeSpan.FromMilliseconds(200));
        var fresh = NewIds("fresh", 500, DateTime.UtcNow);
        await harness.AppendAsync(fresh);
        long tail = partition.DedupeLogTail;
        await harness.Aggregator.CheckpointAsync();

        // Everything below the mark is gone, and only the three live ids moved to the tail (a record is 32 bytes:
        // header, 16-byte key, 8-byte expiry).
        Assert.Equal(oldTail, partition.DedupeLogBegin);
        Assert.Equal(3 * 32, partition.DedupeLogTail - tail);
        long duplicates = harness.Aggregator.GetCounters("acme").Duplicates;
        await harness.AppendAsync(ahead.Concat(fresh));
        Assert.Equal(duplicates + ahead.Count + fresh.Count, harness.Aggregator.GetCounters("acme").Duplicates);
    }

    [Fact]
    public async Task CompactWindows_WindowsARetentionOld_AreDroppedAndNewerOnesKept()
    {
        var retention = TimeSpan.FromSeconds(2);
        await using var harness = await StartRetentionHarnessAsync(retention, WindowSize.Minute);
        var start = DateTime.UtcNow;
        var old = NewIds("old", 300, start.AddMinutes(-2));
        await harness.AppendAsync(old);
        await harness.Aggregator.CheckpointAsync(); // writes the windows back, and marks where the log stands
        long oldTail = harness.Host.Partitions[0].AggregatesLogTail;

        await Task.Delay(retention + TimeSpan.FromMilliseconds(200));
        var fresh = NewIds("fresh", 300, DateTime.UtcNow);
        await harness.AppendAsync(fresh);
        await harness.Aggregator.CheckpointAsync();

        Assert.True(harness.Host.Partitions[0].AggregatesLogBegin >= oldTail,
            $"the aggregates log begins at {harness.Host.Partitions[0].AggregatesLogBegin}, below the windows a retention old (up to {oldTail})");
        var query = new UsageQuery
        {
            Tenant = "acme",
            MeterKey = "calls",
            From = new DateTimeOffset(start.AddHours(-1)),
            To = new DateTimeOffset(start.AddHours(1)),
        };
        var rows = (await harness.Aggregator.Usage.QueryAsync(query)).Rows;
        // Every customer's current window is kept (fresh); the old ones are gone.
        Assert.Equal(fresh.Count, rows.Sum(row => row.Value));
        Assert.All(rows, row => Assert.True(row.WindowStart >= new DateTimeOffset(start.AddMinutes(-1)), $"an old window is left: {row.WindowStart}"));
    }

    [Fact]
    public async Task Query_WindowsARetentionOldNotYetCompacted_AreNotAnswered()
    {
        // Compaction drops old windows only below a mark a retention old, some time after they expire; queries stop
        // answering them as soon as they are a retention past their end (of the latest ingest time applied).
        await using var harness = await StartRetentionHarnessAsync(TimeSpan.FromHours(1), WindowSize.Minute); // no checkpoint: nothing is compacted
        var noon = new DateTimeOffset(Noon);
        await harness.AppendAsync(NewIds("old", 70, Noon), ingestTime: noon.AddMinutes(1));
        await harness.AppendAsync(NewIds("mid", 5, Noon.AddMinutes(30)), ingestTime: noon.AddMinutes(31));
        var query = new UsageQuery { Tenant = "acme", MeterKey = "calls", From = noon.AddHours(-1), To = noon.AddHours(3) };
        Assert.Equal(75, (await harness.Aggregator.Usage.QueryAsync(query)).Rows.Sum(row => row.Value));

        // Ingested an hour after the old window ended, less a nanosecond: the window is still answered; then one past.
        await harness.AppendAsync(NewIds("fresh", 35, Noon.AddMinutes(61)), ingestTime: noon.AddMinutes(61).AddTicks(-1));
        var byHour = query with { WindowSize = WindowSize.Hour };
        Assert.Equal(110, (await harness.Aggregator.Usage.QueryAsync(query)).Rows.Sum(row => row.Value));
        Assert.Equal(110, (await harness.Aggregator.Usage.QueryAsync(byHour)).Rows.Sum(row => row.Value));
        await harness.AppendAsync(NewIds("later", 7, Noon.AddMinutes(61)), ingestTime: noon.AddMinutes(61));

        var rows = (await harness.Aggregator.Usage.QueryAsync(query)).Rows;
        Assert.Equal(47, rows.Sum(row => row.Value));
        Assert.Equal([noon.AddMinutes(30), noon.AddMinutes(61)], rows.Select(row => row.WindowStart).Distinct().Order());
        // The hour holding the cut (12:00: its first minute is past retention, its 12:30 is not) would be partial: it
        // is left out whole, not answered with part of its windows.
        var hours = (await harness.Aggregator.Usage.QueryAsync(byHour)).Rows;
        Assert.Equal(42, hours.Sum(row => row.Value));
        Assert.All(hours, row => Assert.Equal(noon.AddHours(1), row.WindowStart));
        Assert.Equal(64, harness.Host.Partitions[0].AggregatesLogBegin);
    }

    public static TheoryData<string, Action<AggregatorOptions>, string> InvalidOptions => new()
    {
        {
            "a window retention shorter than the dedupe retention", o => o.WindowRetention = TimeSpan.FromDays(30),
            "Aggregator.WindowRetention (30.00:00:00) must be at least Aggregator.DedupeRetention (35.00:00:00)"
        },
        // Expiry times add the retention to times in nanoseconds: "keep for ever" as 100,000 days would overflow.
        { "a retention of more than a century", o => o.WindowRetention = TimeSpan.FromDays(100_000), "must be at most 36500 days" },
        { "no cached windows", o => o.CachedWindows = 0, "Aggregator.CachedWindows must be positive, not 0" },
    };

    [Theory]
    [MemberData(nameof(InvalidOptions))]
    public async Task Start_InvalidOption_FailsNamingTheOptionAndItsLimit(string option, Action<AggregatorOptions> configure, string expected)
    {
        await using var harness = new Harness(partitions: 1, configure);
        var error = await Assert.ThrowsAsync<ArgumentException>(harness.StartAsync);
        Assert.True(error.Message.Contains(expected, StringComparison.Ordinal), $"{option}: {error.Message}");
    }

    [Fact]
    public async Task CompactDedupe_AfterRestarts_UsesTheMarksOfTheStateFile()
    {
        var retention = TimeSpan.FromSeconds(2);
        await using var harness = await StartRetentionHarnessAsync(retention);
        await harness.AppendAsync(NewIds("old", 2000, DateTime.UtcNow.AddMinutes(-1)));
        long oldTail = harness.Host.Partitions[0].DedupeLogTail;
        await harness.Aggregator.CheckpointAsync();
        await harness.RestartAsync(); // graceful: a final checkpoint, then the marks from its state file
        await harness.AppendAsync(NewIds("more", 100, DateTime.UtcNow.AddMinutes(-1)));
        await harness.Aggregator.CheckpointAsync();
        await harness.CrashAndRestartAsync(); // the marks of the last checkpoint

        await Task.Delay(retention + TimeSpan.FromMilliseconds(200));
        await harness.AppendAsync(NewIds("fresh", 100, DateTime.UtcNow));
        await harness.Aggregator.CheckpointAsync();

        Assert.True(harness.Host.Partitions[0].DedupeLogBegin >= oldTail,
            $"the dedupe log begins at {harness.Host.Partitions[0].DedupeLogBegin}, below the ids a retention old (up to {oldTail})");
    }

    /// <summary>Rewrites the state file of the partition's first checkpoint in format 1 (format 3 without the marks
    /// at its end), or with another format number.</summary>
    private static void RewriteStateFile(Harness harness, int format, bool dropMarks)
    {
        string directory = Path.Combine(harness.Options().Directory, "p0");
        var manifest = CheckpointManifest.TryRead(directory);
        Assert.NotNull(manifest);
        string path = Path.Combine(directory, manifest.StateFile);
        byte[] bytes = File.ReadAllBytes(path);
        Assert.Equal(3, BitConverter.ToInt32(bytes, 0));
        int length = bytes.Length;
        if (dropMarks)
        {
            // The marks end the file: the dedupe log's, then the aggregates log's, each a count and (address, ingest
            // time) pairs of 16 bytes. The first checkpoint takes one of each.
            Assert.Equal(1, BitConverter.ToInt32(bytes, length - 20));
            Assert.Equal(1, BitConverter.ToInt32(bytes, length - 40));
            length -= 40;
        }
        BitConverter.GetBytes(format).CopyTo(bytes, 0);
        File.WriteAllBytes(path, bytes[..length]);
    }

    [Fact]
    public async Task Recover_StateFileOfFormat1_ReadsItWithoutMarks()
    {
        await using var harness = new Harness(partitions: 1);
        var meters = await AllMetersAsync(harness);
        await harness.StartAsync();
        var random = new Random(21);
        var first = RandomEvents.Generate(random, 400);
        await harness.AppendAsync(first);
        await harness.Aggregator.CheckpointAsync();
        await harness.AppendAsync(RandomEvents.Generate(random, 400, first, "s"));
        await harness.Host.CrashAsync();
        RewriteStateFile(harness, format: 1, dropMarks: true);

        await harness.CrashAndRestartAsync();

        await AssertMatchesOracleAsync(harness, meters);
    }

    [Fact]
    public async Task Recover_StateFileOfUnknownFormat_FailsNamingTheFileAndFormat()
    {
        await using var harness = new Harness(partitions: 1);
        await harness.MeterAsync("acme", "calls", Aggregation.Count);
        await harness.StartAsync();
        await harness.AppendAsync(RandomEvents.Generate(new Random(3), 100));
        await harness.Aggregator.CheckpointAsync();
        await harness.Host.CrashAsync();
        RewriteStateFile(harness, format: 9, dropMarks: false);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(harness.CrashAndRestartAsync);
        Assert.Contains("state-0000000001.bin' has format 9; this version reads formats 1 to 3", error.Message);
    }

    private static string[] StateChain(Harness harness, out string directory)
    {
        directory = Path.Combine(harness.Options().Directory, "p0");
        var manifest = CheckpointManifest.TryRead(directory);
        Assert.NotNull(manifest);
        return manifest.StateFiles;
    }

    [Fact]
    public async Task Checkpoint_FewChangesAfterAFullStateFile_WritesOnlyTheChangesAndRecoversThem()
    {
        await using var harness = new Harness(partitions: 1);
        var meters = await AllMetersAsync(harness);
        await harness.StartAsync();
        var random = new Random(5);
        var many = Enumerable.Range(0, 300).SelectMany(c => RandomEvents.Generate(random, 4, idPrefix: $"m{c}-")
            .Select(e => e with { Customer = $"many{c}" })).Concat(RandomEvents.Generate(random, 300)).ToList();
        await harness.AppendAsync(many);
        await harness.Aggregator.CheckpointAsync();
        string full = Assert.Single(StateChain(harness, out string directory));

        // A few events: an existing customer's (one in a later window) and a new customer's.
        var few = new List<TestEvent>
        {
            new("acme", "few1", "api_call", "many7", Noon, ("tokens", "1.5"), ("region", "eu"), ("model", "m1"), ("user", "u1")),
            new("acme", "few2", "api_call", "many7", Noon.AddDays(2), ("tokens", "2.25"), ("region", "eu"), ("model", "m1"), ("user", "u2")),
            new("acme", "few3", "api_call", "newcomer", Noon, ("tokens", "0.1"), ("region", "us"), ("model", "m0"), ("user", "u1")),
            new("acme", "few4", "api_call", "newcomer", Noon, ("tokens", "0.2"), ("region", "us"), ("model", "m0"), ("user", "u3")),
        };
        await harness.AppendAsync(few);
        await harness.Aggregator.CheckpointAsync();

        var chain = StateChain(harness, out _);
        Assert.Equal(2, chain.Length);
        Assert.Equal(full, chain[0]);
        long fullBytes = new FileInfo(Path.Combine(directory, chain[0])).Length;
        long changesBytes = new FileInfo(Path.Combine(directory, chain[1])).Length;
        Assert.True(changesBytes * 20 < fullBytes, $"the changes took {changesBytes} bytes, the full state {fullBytes}");

        await harness.CrashAndRestartAsync();
        await AssertMatchesOracleAsync(harness, meters);
        // The current-period totals of the changed and the new customer came back from the second file.
        Assert.Equal(0.3m, harness.Aggregator.Entitlements.Check("acme", "newcomer", "sum-flat", Noon).Usage);
        decimal many7 = Oracle.Unique(harness.Appended)
            .Where(e => e.Tenant == "acme" && e.Type == "api_call" && e.Customer == "many7" && e.Time.Year == Noon.Year && e.Time.Month == Noon.Month)
            .Sum(e => decimal.TryParse(e.Get("tokens"), System.Globalization.CultureInfo.InvariantCulture, out var v) ? v : 0m);
        Assert.Equal(many7, harness.Aggregator.Entitlements.Check("acme", "many7", "sum-flat", Noon).Usage);
    }

    [Fact]
    public async Task Dispose_LoopStoppedByAFailedTimedCheckpoint_ClosesWithoutThrowingOrCheckpointing()
    {
        await using var harness = new Harness(partitions: 1, o => o.CheckpointInterval = TimeSpan.FromMilliseconds(100));
        var meters = await AllMetersAsync(harness);
        await harness.StartAsync();
        string directory = Path.Combine(harness.Options().Directory, "p0");
        for (int wait = 0; wait < 100 && CheckpointManifest.TryRead(directory) is null; wait++)
            await Task.Delay(20); // the first timed checkpoint after the start
        var manifest = CheckpointManifest.TryRead(directory);
        Assert.NotNull(manifest);
        // With nothing applied since, the next timed checkpoint writes the state file one past the manifest's last.
        string last = manifest.StateFiles[^1];
        long number = long.Parse(last["state-".Length..^".bin".Length], CultureInfo.InvariantCulture);
        string blocker = Path.Combine(directory, $"state-{number + 1:D10}.bin");
        Directory.CreateDirectory(blocker);

        await harness.AppendAsync(RandomEvents.Generate(new Random(17), 200), waitForAggregators: false);
        for (int wait = 0; wait < 200 && harness.Aggregator.Failure is null; wait++)
            await Task.Delay(20);
        Assert.IsType<UnauthorizedAccessException>(Assert.IsType<AggregatorStoppedException>(harness.Aggregator.Failure).InnerException);
        Assert.True(Assert.Single(harness.Aggregator.GetProgress()).Stopped);

        await harness.Aggregator.DisposeAsync(); // no exception, and no final checkpoint over the failed one
        Assert.Equal(manifest, CheckpointManifest.TryRead(directory));

        Directory.Delete(blocker);
        await harness.RestartAsync();
        await AssertMatchesOracleAsync(harness, meters);
    }

    [Fact]
    public async Task Checkpoint_AfterAFailedOne_StillWritesTheChangesOfBoth()
    {
        await using var harness = new Harness(partitions: 1);
        var meters = await AllMetersAsync(harness);
        await harness.StartAsync();
        var random = new Random(13);
        var first = RandomEvents.Generate(random, 600);
        await harness.AppendAsync(first);
        await harness.Aggregator.CheckpointAsync();
        StateChain(harness, out string directory);
        // Changes, then a checkpoint that fails writing its state file, then more changes and one that succeeds.
        await harness.AppendAsync(RandomEvents.Generate(random, 60, first, "a").Select(e => e with { Customer = e.Customer + "-a" }));
        string blocker = Path.Combine(directory, "state-0000000002.bin");
        Directory.CreateDirectory(blocker);
        await Assert.ThrowsAsync<UnauthorizedAccessException>(async () => await harness.Aggregator.CheckpointAsync());
        await harness.AppendAsync(RandomEvents.Generate(random, 60, first, "b"));
        await harness.Aggregator.CheckpointAsync();
        // A new name for the new attempt: a failed attempt's file may be named by a manifest it managed to write.
        Assert.Equal(["state-0000000001.bin", "state-0000000003.bin"], StateChain(harness, out _));
        Directory.Delete(blocker);

        await harness.CrashAndRestartAsync(); // nothing to replay: the state chain alone holds the "-a" customers
        await AssertMatchesOracleAsync(harness, meters);
        Assert.All(harness.Appended.Where(e => e.Customer.EndsWith("-a", StringComparison.Ordinal) && e.Tenant == "acme" && e.Type == "api_call"),
            e => Assert.True(harness.Host.Partitions[0].HasCustomer("acme", e.Customer), $"{e.Customer} lost"));
    }

    [Fact]
    public async Task Checkpoint_ChangesOutweighTheFullStateFile_WritesAFullOneAgain()
    {
        await using var harness = new Harness(partitions: 1);
        var meters = await AllMetersAsync(harness);
        await harness.StartAsync();
        var random = new Random(8);
        var lengths = new List<int>();
        for (int round = 0; round < 12; round++)
        {
            // New customers each round: every checkpoint's changes are as large as the first full file.
            var events = RandomEvents.Generate(random, round == 0 ? 300 : 150, idPrefix: $"r{round}-");
            await harness.AppendAsync(round == 0 ? events : events.Select(e => e with { Customer = $"{e.Customer}-{round}" }));
            await harness.Aggregator.CheckpointAsync();
            lengths.Add(StateChain(harness, out _).Length);
        }
        Assert.Equal(1, lengths[0]);
        Assert.Contains(2, lengths);
        Assert.Contains(1, lengths.Skip(1)); // a full file again, once the changes outweighed the first
        Assert.Equal(StateChain(harness, out string directory).Length, Directory.EnumerateFiles(directory, "state-*.bin").Count());

        await harness.CrashAndRestartAsync();
        await AssertMatchesOracleAsync(harness, meters);
    }

    [Fact]
    public async Task Recover_CrashBeforeAnyCheckpoint_ReplaysWholeLog()
    {
        await using var harness = new Harness();
        var meters = await AllMetersAsync(harness);
        await harness.StartAsync();
        await harness.AppendAsync(RandomEvents.Generate(new Random(7), 400));

        await harness.CrashAndRestartAsync();
        await harness.Aggregator.WaitForCommittedAsync();

        await AssertMatchesOracleAsync(harness, meters);
    }

    [Fact]
    public async Task Recover_GracefulRestartThenResends_CountsNothingTwice()
    {
        await using var harness = new Harness();
        var meters = await AllMetersAsync(harness);
        await harness.StartAsync();
        var first = RandomEvents.Generate(new Random(9), 400);
        await harness.AppendAsync(first);

        await harness.RestartAsync();
        await harness.AppendAsync(first.Take(200)); // the client resends after the restart

        await AssertMatchesOracleAsync(harness, meters);
    }

    [Fact]
    public async Task Checkpoint_AfterEvents_LetsTheLogDropConsumedRecords()
    {
        await using var harness = new Harness(partitions: 1);
        await harness.MeterAsync("acme", "calls", Aggregation.Count);
        await harness.StartAsync();
        await harness.AppendAsync(RandomEvents.Generate(new Random(5), 3000));
        long begin = harness.Log.GetPartition(0).BeginPosition;

        await harness.Aggregator.CheckpointAsync();

        Assert.True(harness.Log.GetPartition(0).BeginPosition > begin);
        Assert.True(File.Exists(Path.Combine(harness.Options().Directory, "p0", CheckpointManifest.FileName)));
    }

    [Fact]
    public async Task Loop_TimedCheckpointsWhileIdle_KeepsApplyingAndAnswering()
    {
        // The server's interval is seconds; a short one makes several ticks fall while the loop waits for records.
        await using var harness = new Harness(configure: o => o.CheckpointInterval = TimeSpan.FromMilliseconds(20));
        await harness.MeterAsync("acme", "calls", Aggregation.Count);
        await harness.StartAsync();

        for (int i = 0; i < 5; i++)
        {
            await harness.AppendAsync([new TestEvent("acme", $"e{i}", "api_call", "c1", Noon)]);
            await Task.Delay(100); // idle: ticks come, the first one after an event takes a checkpoint
        }

        var row = Assert.Single((await harness.Aggregator.Usage.QueryAsync(Query("acme", "calls"))).Rows);
        Assert.Equal(5m, row.Value);
        Assert.True(File.Exists(Path.Combine(harness.Options().Directory, "p0", CheckpointManifest.FileName))
            || File.Exists(Path.Combine(harness.Options().Directory, "p1", CheckpointManifest.FileName)), "no timed checkpoint was taken");
    }

    [Fact]
    public async Task Sum_TenEventsOfOneTenth_IsExactlyOne()
    {
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "tokens", Aggregation.Sum);
        await harness.StartAsync();

        await harness.AppendAsync(Enumerable.Range(0, 10).Select(i => new TestEvent("acme", $"e{i}", "api_call", "c1", Noon, ("tokens", "0.1"))));

        var row = Assert.Single((await harness.Aggregator.Usage.QueryAsync(Query("acme", "tokens"))).Rows);
        Assert.Equal(1m, row.Value);
        Assert.Equal("1.0", row.Value.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task Apply_DuplicatesInSameAndLaterBatches_SameUsage()
    {
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "tokens", Aggregation.Sum);
        await harness.StartAsync();
        var events = Enumerable.Range(0, 20).Select(i => new TestEvent("acme", $"e{i}", "api_call", "c" + (i % 3), Noon, ("tokens", "2.5"))).ToList();

        await harness.AppendAsync([.. events, .. events.Take(5)]);
        await harness.AppendAsync(events.Skip(10));

        var rows = (await harness.Aggregator.Usage.QueryAsync(Query("acme", "tokens"))).Rows;
        Assert.Equal(50m, rows.Sum(r => r.Value));
        Assert.Equal(15, harness.Aggregator.GetCounters("acme").Duplicates);
    }

    [Theory]
    [InlineData(11)]
    [InlineData(12)]
    public async Task Apply_LargeRecordsAndResendsCloseTogether_EqualsOracle(int seed)
    {
        // The loop stages up to 32 records before it applies them: an id resent within the same stage must still be a
        // duplicate, and a record larger than the stage's buffer (16 KiB) must be applied in its place in the order.
        await using var harness = new Harness(configureLog: o =>
        {
            o.PageSizeBytes = 2 << 20; // one append is one batch, and a batch must fit on a page
            o.MemoryBytesPerPartition = 8 << 20;
            o.SegmentSizeBytes = 8 << 20;
        });
        var meters = new List<MeterDefinition>
        {
            await harness.MeterAsync("acme", "tokens", Aggregation.Sum, window: WindowSize.Minute, groupBy: "region"),
            await harness.MeterAsync("acme", "latest", Aggregation.Latest, window: WindowSize.Hour),
        };
        await harness.StartAsync();
        var random = new Random(seed);
        var events = new List<TestEvent>();
        for (int i = 0; i < 400; i++)
        {
            if (events.Count > 0 && random.Next(4) == 0)
            {
                events.Add(events[Math.Max(0, events.Count - 1 - random.Next(40))]); // a resend a few records later
                continue;
            }
            var data = new List<(string, string)> { ("tokens", (random.Next(1, 1000) / 10m).ToString(System.Globalization.CultureInfo.InvariantCulture)), ("region", random.Next(2) == 0 ? "eu" : "us") };
            if (random.Next(8) == 0)
                data.Add(("note", new string('x', random.Next(16 << 10, 40 << 10))));
            events.Add(new TestEvent("acme", $"e{i}", "api_call", "c" + random.Next(5), Noon.AddSeconds(random.Next(600)), [.. data]));
        }

        await harness.AppendAsync(events);

        foreach (var meter in meters)
        {
            var query = Query(meter.Tenant, meter.Key);
            Assert.Equal(Oracle.Usage(harness.Appended, meter, query).OrderBy(r => r.Key, StringComparer.Ordinal),
                Oracle.Actual(await harness.Aggregator.Usage.QueryAsync(query)).OrderBy(r => r.Key, StringComparer.Ordinal));
        }
        Assert.Equal(events.Count - Oracle.Unique(events).Count, harness.Aggregator.GetCounters("acme").Duplicates);
    }

    [Fact]
    public async Task Query_OtherTenant_SeesNeitherUsageNorCustomers()
    {
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "tokens", Aggregation.Sum);
        await harness.MeterAsync("globex", "tokens", Aggregation.Sum);
        await harness.StartAsync();

        await harness.AppendAsync([
            new TestEvent("acme", "e1", "api_call", "shared", Noon, ("tokens", "5")),
            new TestEvent("globex", "e1", "api_call", "shared", Noon, ("tokens", "7")),
            new TestEvent("acme", "e2", "api_call", "acme-only", Noon, ("tokens", "1")),
        ]);

        var globex = await harness.Aggregator.Usage.QueryAsync(Query("globex", "tokens"));
        Assert.Equal(7m, Assert.Single(globex.Rows).Value);
        var foreign = await harness.Aggregator.Usage.QueryAsync(Query("globex", "tokens", customer: "acme-only"));
        Assert.Empty(foreign.Rows);
        Assert.False(foreign.CustomerKnown);
        Assert.True((await harness.Aggregator.Usage.QueryAsync(Query("acme", "tokens", customer: "acme-only"))).CustomerKnown);
        var missing = await Assert.ThrowsAsync<UsageQueryException>(() => harness.Aggregator.Usage.QueryAsync(Query("globex", "nope")).AsTask());
        Assert.Equal(UsageQueryError.MeterNotFound, missing.Error);
        Assert.Equal(0, harness.Aggregator.GetCounters("globex").Duplicates);
    }

    [Fact]
    public async Task Apply_LateEvent_LandsInTheWindowOfItsTime()
    {
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "tokens", Aggregation.Sum);
        await harness.StartAsync();
        await harness.AppendAsync([new TestEvent("acme", "now", "api_call", "c1", Noon, ("tokens", "1"))]);

        await harness.AppendAsync([new TestEvent("acme", "late", "api_call", "c1", Noon.AddDays(-20).AddMinutes(7), ("tokens", "4"))]);

        var rows = (await harness.Aggregator.Usage.QueryAsync(Query("acme", "tokens"))).Rows;
        Assert.Equal(2, rows.Count);
        Assert.Equal(new DateTimeOffset(Noon.AddDays(-20)), rows[0].WindowStart);
        Assert.Equal(4m, rows[0].Value);
        Assert.Equal(new DateTimeOffset(Noon), rows[1].WindowStart);
    }

    [Fact]
    public async Task Apply_NewestWindowCachedAcrossCheckpointAndCrash_EqualsOracle()
    {
        // The newest window of each series is kept in memory and written back to the store when a newer window
        // starts and before a checkpoint: a query, a checkpoint and a crash each at a moment when it holds changes.
        await using var harness = new Harness();
        var meters = new[]
        {
            await harness.MeterAsync("acme", "sum", Aggregation.Sum),
            await harness.MeterAsync("acme", "latest", Aggregation.Latest),
            await harness.MeterAsync("acme", "gauge", Aggregation.TimeWeightedSum),
        };
        await harness.StartAsync();
        int id = 0;
        List<TestEvent> Events(DateTime hour, int count) => [.. Enumerable.Range(0, count)
            .Select(i => new TestEvent("acme", $"e{id++}", "api_call", "c1", hour.AddMinutes(i), ("tokens", $"{i}.25")))];

        await harness.AppendAsync(Events(Noon, 5));
        await AssertUsageAsync();
        await harness.AppendAsync(Events(Noon.AddHours(1), 5)); // a newer window: the cached one is written back
        await harness.AppendAsync(Events(Noon, 1).Select(e => e with { Time = Noon.AddMinutes(59) })); // late, into the store
        await harness.Aggregator.CheckpointAsync(); // the newest window is written back before the store's checkpoint
        await harness.AppendAsync(Events(Noon.AddHours(1), 3).Select(e => e with { Time = e.Time.AddMinutes(30) }));
        await AssertUsageAsync();

        await harness.CrashAndRestartAsync(); // the changes after the checkpoint are replayed from the log
        await harness.Aggregator.WaitForCommittedAsync();
        await AssertUsageAsync();
        await harness.AppendAsync(Events(Noon.AddHours(1), 2).Select(e => e with { Time = e.Time.AddMinutes(40) }));
        await AssertUsageAsync();

        async Task AssertUsageAsync()
        {
            foreach (var meter in meters)
            {
                var query = Query("acme", meter.Key);
                var expected = Oracle.Usage(harness.Appended, meter, query);
                var actual = Oracle.Actual(await harness.Aggregator.Usage.QueryAsync(query));
                Assert.Equal(expected.OrderBy(r => r.Key, StringComparer.Ordinal), actual.OrderBy(r => r.Key, StringComparer.Ordinal));
            }
        }
    }

    [Fact]
    public async Task Apply_MoreActiveSeriesThanCachedWindows_KeepsTheLimitAndStaysExact()
    {
        // 8 cached windows for 36 series: a series' window is often taken back and read again from the store, also
        // while it holds changes (written back first), across checkpoints and a crash.
        await using var harness = new Harness(partitions: 1, o =>
        {
            o.CachedWindows = 8;
            o.CheckpointInterval = TimeSpan.FromHours(1);
        });
        var meters = new List<MeterDefinition>
        {
            await harness.MeterAsync("acme", "sum", Aggregation.Sum),
            await harness.MeterAsync("acme", "latest", Aggregation.Latest, window: WindowSize.Minute),
            await harness.MeterAsync("acme", "gauge", Aggregation.TimeWeightedSum, window: WindowSize.Minute),
        };
        await harness.StartAsync();
        var partition = harness.Host.Partitions[0];
        var random = new Random(5);
        int id = 0;
        List<TestEvent> Events(int count, int firstMinute, int minutes) => [.. Enumerable.Range(0, count).Select(_ =>
            new TestEvent("acme", $"e{id++}", "api_call", "c" + random.Next(12), Noon.AddMinutes(firstMinute + random.Next(minutes)).AddSeconds(random.Next(60)),
                ("tokens", (random.Next(1, 1000) / 100m).ToString(CultureInfo.InvariantCulture))))];
        async Task AssertExactAsync()
        {
            foreach (var meter in meters)
            {
                var query = Query(meter.Tenant, meter.Key);
                Assert.Equal(Oracle.Usage(harness.Appended, meter, query).OrderBy(r => r.Key, StringComparer.Ordinal),
                    Oracle.Actual(await harness.Aggregator.Usage.QueryAsync(query)).OrderBy(r => r.Key, StringComparer.Ordinal));
            }
            Assert.Equal(8, await partition.Submit(0, (p, _) => ValueTask.FromResult(p.HotWindowCount)));
        }

        for (int round = 0; round < 4; round++)
        {
            // Mostly newer windows, some late ones.
            await harness.AppendAsync(Events(150, round * 5, 8));
            await AssertExactAsync();
            if (round % 2 == 1)
                await harness.Aggregator.CheckpointAsync();
        }
        // Windows taken back after the last checkpoint (written to the store, not checkpointed) are lost with a crash
        // and replayed from the log.
        await harness.AppendAsync(Events(100, 15, 10));
        await harness.CrashAndRestartAsync();
        partition = harness.Host.Partitions[0];
        await AssertExactAsync();
        await harness.AppendAsync(Events(100, 20, 10));
        await AssertExactAsync();
    }

    [Fact]
    public async Task Query_MoreStoredWindowsThanOneBatchOfReads_EqualsOracleBeforeAndAfterRestart()
    {
        // 1,800 minute windows of 3 customers, more than a query's batch of 512 windows whose reads wait together;
        // after a crash restart every window is read back from the store's files.
        await using var harness = new Harness(partitions: 1, o => o.CheckpointInterval = TimeSpan.FromHours(1));
        var meters = new[]
        {
            await harness.MeterAsync("acme", "tokens", Aggregation.Sum, window: WindowSize.Minute),
            await harness.MeterAsync("acme", "peak", Aggregation.Max, window: WindowSize.Minute),
        };
        await harness.StartAsync();
        var random = new Random(11);
        await harness.AppendAsync([.. Enumerable.Range(0, 1800).Select(i => new TestEvent("acme", $"e{i}", "api_call", $"c{i % 3}",
            Noon.AddMinutes(i / 3).AddSeconds(i % 3), ("tokens", (random.Next(1, 500) / 100m).ToString(CultureInfo.InvariantCulture))))]);
        await harness.Aggregator.CheckpointAsync();
        for (int restart = 0; restart < 2; restart++)
        {
            foreach (var meter in meters)
            {
                foreach (var size in new WindowSize?[] { null, WindowSize.Hour })
                {
                    var query = Query("acme", meter.Key, size);
                    var actual = Oracle.Actual(await harness.Aggregator.Usage.QueryAsync(query));
                    Assert.Equal(size is null ? 1800 : 30, actual.Count); // 600 minutes, 10 hours
                    Assert.Equal(Oracle.Usage(harness.Appended, meter, query).OrderBy(r => r.Key, StringComparer.Ordinal),
                        actual.OrderBy(r => r.Key, StringComparer.Ordinal));
                }
            }
            await harness.CrashAndRestartAsync();
        }
    }

    [Fact]
    public async Task Apply_OneSeriesSeveralTimesInAStageWhileItsWindowIsOnDisk_EqualsOracleBeforeAndAfterRestart()
    {
        // A stage reads back the windows of series without a cache before applying; a series twice in one stage must
        // get one cache, not two (the second's owner would later clear the series' cache while it holds changes).
        await using var harness = new Harness(partitions: 1, o => o.CachedWindows = 4);
        var meter = await harness.MeterAsync("acme", "sum", Aggregation.Sum, window: WindowSize.Minute);
        await harness.StartAsync();
        int id = 0;
        TestEvent Event(string customer, int minute) => new("acme", $"e{id++}", "api_call", customer, Noon.AddMinutes(minute).AddSeconds(id % 60), ("tokens", "1"));
        await harness.AppendAsync(Enumerable.Range(0, 6).Select(c => Event($"c{c}", 0)));
        // Four other series move through 600 minutes: the c windows leave the cache and the store's memory.
        await harness.AppendAsync(Enumerable.Range(0, 2400).Select(i => Event($"f{i % 4}", 1 + (i / 4))));
        await harness.AppendAsync([Event("c0", 0), Event("c0", 0), Event("c1", 0), Event("c2", 0)]);
        await harness.AppendAsync([Event("c3", 0)]);
        await harness.AppendAsync([Event("c0", 0)]);
        await harness.AppendAsync([Event("c4", 0), Event("c5", 0), Event("c1", 0)]);
        var query = Query("acme", "sum");
        Assert.Equal(Oracle.Usage(harness.Appended, meter, query).OrderBy(r => r.Key, StringComparer.Ordinal),
            Oracle.Actual(await harness.Aggregator.Usage.QueryAsync(query)).OrderBy(r => r.Key, StringComparer.Ordinal));
        await harness.Aggregator.CheckpointAsync();
        await harness.CrashAndRestartAsync();
        Assert.Equal(Oracle.Usage(harness.Appended, meter, query).OrderBy(r => r.Key, StringComparer.Ordinal),
            Oracle.Actual(await harness.Aggregator.Usage.QueryAsync(query)).OrderBy(r => r.Key, StringComparer.Ordinal));
    }

    [Fact]
    public async Task Apply_LateEventsOfWindowsNoLongerInMemory_NoneWaitsAloneAndUsageEqualsOracle()
    {
        // A client resending old events after an outage: each updates a window that is no longer its series' newest, and
        // with many series no longer in the store's memory. A stage reads those windows together before it is applied,
        // copying them to the log's tail, so that no event's update waits for the store's files on its own. (UNIQUE_COUNT
        // is left out: its late values go through its markers and are not read ahead.) 64 KB of store memory: a stage's
        // copies (32 events, six meters) fit in it, the first windows of 256 customers do not.
        await using var harness = new Harness(partitions: 1, o => o.AggregatesMemoryBytes = 64 << 10);
        var meters = new List<MeterDefinition>();
        foreach (var aggregation in Enum.GetValues<Aggregation>().Where(a => a != Aggregation.UniqueCount))
            meters.Add(await harness.MeterAsync("acme", aggregation.ToString(), aggregation, window: WindowSize.Minute));
        await harness.StartAsync();
        var random = new Random(17);
        int id = 0;
        TestEvent Event(int customer, int minute) => new("acme", $"e{id++}", "api_call", $"c{customer}",
            Noon.AddMinutes(minute).AddSeconds(random.Next(60)), ("tokens", (random.Next(1, 100_000) / 100m).ToString(CultureInfo.InvariantCulture)));
        var customers = Enumerable.Range(0, 256).ToArray();
        await harness.AppendAsync(customers.Select(c => Event(c, 0)));
        await harness.AppendAsync(customers.Select(c => Event(c, 1))); // minute 0 leaves the cache for the store, and its memory
        var partition = harness.Host.Partitions[0];
        long waitsBefore = await partition.Submit(0, (p, _) => ValueTask.FromResult(p.AggregatesSingleWaits));

        await harness.AppendAsync(customers.Select(c => Event(c, 0)).Concat(customers.Select(c => Event(c, 0))));

        long waits = await partition.Submit(0, (p, _) => ValueTask.FromResult(p.AggregatesSingleWaits)) - waitsBefore;
        Assert.Equal(0, waits);
        foreach (var meter in meters)
        {
            var query = Query("acme", meter.Key);
            Assert.Equal(Oracle.Usage(harness.Appended, meter, query).OrderBy(r => r.Key, StringComparer.Ordinal),
                Oracle.Actual(await harness.Aggregator.Usage.QueryAsync(query)).OrderBy(r => r.Key, StringComparer.Ordinal));
        }
    }

    /// <summary>A started one-partition harness with a SUM meter of minute windows, and a maker of events: customer c's
    /// event in minute m after noon, each with a new id and its own value.</summary>
    private static async Task<(Harness Harness, MeterDefinition Meter, Func<int, int, TestEvent> Event)> MinuteSumHarnessAsync(int aggregatesMemoryBytes)
    {
        var harness = new Harness(partitions: 1, o => o.AggregatesMemoryBytes = aggregatesMemoryBytes);
        var meter = await harness.MeterAsync("acme", "sum", Aggregation.Sum, window: WindowSize.Minute);
        await harness.StartAsync();
        int id = 0;
        TestEvent Event(int customer, int minute) => new("acme", $"e{id++}", "api_call", $"c{customer}", Noon.AddMinutes(minute).AddSeconds(id % 60),
            ("tokens", ((id % 89) + 1).ToString(CultureInfo.InvariantCulture)));
        return (harness, meter, Event);
    }

    [Fact]
    public async Task Apply_AfterRestartLateThenNewestWindowsOfUncachedSeries_NoneWaitsAloneAndOnlyLateOnesCopied()
    {
        // After a restart no series has a cached window. Late events read their windows ahead (copied to the store's
        // tail, never cached); events of the newest windows read them back together and cache them (not copied).
        var (harness, meter, Event) = await MinuteSumHarnessAsync(aggregatesMemoryBytes: 64 << 10);
        await using var _ = harness;
        var customers = Enumerable.Range(0, 256).ToArray();
        await harness.AppendAsync(customers.Select(c => Event(c, 0)));
        await harness.AppendAsync(customers.Select(c => Event(c, 1)));
        await harness.Aggregator.CheckpointAsync();
        await harness.CrashAndRestartAsync();
        var partition = harness.Host.Partitions[0];
        Task<(long Waits, long Tail, int Cached)> Probe()
            => partition.Submit(0, (p, _) => ValueTask.FromResult((p.AggregatesSingleWaits, p.AggregatesLogTail, p.HotWindowCount)));

        var before = await Probe();
        await harness.AppendAsync(customers.Select(c => Event(c, 0))); // late, of series without a cached window
        var late = await Probe();
        Assert.True(before.Waits == late.Waits, $"{late.Waits - before.Waits} late updates waited alone");
        Assert.True(late.Tail > before.Tail, "the late windows were not copied to the tail");
        Assert.Equal(before.Cached, late.Cached); // a late window is never cached

        await harness.AppendAsync(customers.Select(c => Event(c, 1))); // the newest windows: read back together and cached
        var newest = await Probe();
        Assert.True(late.Waits == newest.Waits, $"{newest.Waits - late.Waits} newest-window reads waited alone");
        Assert.True(late.Tail == newest.Tail, $"the newest windows were copied ({newest.Tail - late.Tail} bytes)");
        Assert.Equal(customers.Length, newest.Cached - late.Cached);
        var query = Query("acme", "sum");
        Assert.Equal(Oracle.Usage(harness.Appended, meter, query).OrderBy(r => r.Key, StringComparer.Ordinal),
            Oracle.Actual(await harness.Aggregator.Usage.QueryAsync(query)).OrderBy(r => r.Key, StringComparer.Ordinal));
    }

    [Fact]
    public async Task Apply_ResentLateEventsOfWindowsNoLongerInMemory_ReadNothingAndCountAsDuplicates()
    {
        // A client resending a buffer after an outage resends events already counted: they are found duplicates before
        // anything is read for them, so no window of theirs is read ahead and copied to the store's tail. (16 KB of store
        // memory: the first windows of 256 customers, 35 KB, are mostly in the files when they are resent.)
        var (harness, meter, Event) = await MinuteSumHarnessAsync(aggregatesMemoryBytes: 16 << 10);
        await using var _ = harness;
        var customers = Enumerable.Range(0, 256).ToArray();
        var first = customers.Select(c => Event(c, 0)).ToList();
        await harness.AppendAsync(first);
        await harness.AppendAsync(customers.Select(c => Event(c, 1)));
        var partition = harness.Host.Partitions[0];
        long tail = await partition.Submit(0, (p, _) => ValueTask.FromResult(p.AggregatesLogTail));

        await harness.AppendAsync(first); // the same ids again: late, and duplicates

        Assert.Equal(tail, await partition.Submit(0, (p, _) => ValueTask.FromResult(p.AggregatesLogTail)));
        Assert.Equal(customers.Length, harness.Aggregator.GetCounters("acme").Duplicates);
        var query = Query("acme", "sum");
        Assert.Equal(Oracle.Usage(harness.Appended, meter, query).OrderBy(r => r.Key, StringComparer.Ordinal),
            Oracle.Actual(await harness.Aggregator.Usage.QueryAsync(query)).OrderBy(r => r.Key, StringComparer.Ordinal));
    }

    [Fact]
    public async Task Query_WindowsNoLongerInMemory_AreNotCopiedToTheStoresTail()
    {
        // Queries read old windows through the session that does not copy: a query must not grow the store's log.
        await using var harness = new Harness(partitions: 1);
        await harness.MeterAsync("acme", "sum", Aggregation.Sum, window: WindowSize.Minute);
        await harness.StartAsync();
        await harness.AppendAsync(Enumerable.Range(0, 2000).Select(i =>
            new TestEvent("acme", $"e{i}", "api_call", $"c{i % 3}", Noon.AddMinutes(i / 3), ("tokens", "1"))));
        await harness.Aggregator.CheckpointAsync();
        await harness.CrashAndRestartAsync();
        var partition = harness.Host.Partitions[0];
        long tail = await partition.Submit(0, (p, _) => ValueTask.FromResult(p.AggregatesLogTail));

        Assert.Equal(2000m, (await harness.Aggregator.Usage.QueryAsync(Query("acme", "sum"))).Rows.Sum(r => r.Value));

        Assert.Equal(tail, await partition.Submit(0, (p, _) => ValueTask.FromResult(p.AggregatesLogTail)));
    }

    [Fact]
    public async Task Apply_UniqueCountSecondValueOfItsNewestWindowInALaterStage_CountsBoth()
    {
        // UNIQUE_COUNT counts in the store, never in a cached window: a window cached for it would answer stale.
        await using var harness = new Harness(partitions: 1);
        await harness.MeterAsync("acme", "users", Aggregation.UniqueCount, "user", WindowSize.Minute);
        await harness.StartAsync();
        await harness.AppendAsync([new TestEvent("acme", "e1", "api_call", "c1", Noon.AddSeconds(10), ("user", "ann"))]);
        await harness.AppendAsync([new TestEvent("acme", "e2", "api_call", "c1", Noon.AddSeconds(20), ("user", "bob"))]);
        Assert.Equal(2m, Assert.Single((await harness.Aggregator.Usage.QueryAsync(Query("acme", "users"))).Rows).Value);
    }

    [Fact]
    public async Task Apply_MissingOrNonNumericValue_CountedAsInvalidPerMeter()
    {
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "tokens", Aggregation.Sum);
        await harness.MeterAsync("acme", "calls", Aggregation.Count);
        await harness.StartAsync();

        await harness.AppendAsync([
            new TestEvent("acme", "e1", "api_call", "c1", Noon, ("tokens", "3")),
            new TestEvent("acme", "e2", "api_call", "c1", Noon),
            new TestEvent("acme", "e3", "api_call", "c1", Noon, ("tokens", "lots")),
            new TestEvent("acme", "e4", "api_call", "c1", Noon, ("tokens", "")),
        ]);

        var counters = harness.Aggregator.GetCounters("acme");
        Assert.Equal(3, counters.InvalidByMeter["tokens"]);
        Assert.Equal(0, counters.InvalidByMeter["calls"]);
        Assert.Equal(3m, Assert.Single((await harness.Aggregator.Usage.QueryAsync(Query("acme", "tokens"))).Rows).Value);
        Assert.Equal(4m, Assert.Single((await harness.Aggregator.Usage.QueryAsync(Query("acme", "calls"))).Rows).Value);
    }

    [Fact]
    public async Task TimeWeightedSum_GaugeReadings_IntegratesUnitSecondsUntilWindowEnd()
    {
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "seats", Aggregation.TimeWeightedSum, "seats");
        await harness.StartAsync();

        // 10 seats from :00 to :15, 4 from :15 to the hour's end; the next hour starts again at its first reading.
        await harness.AppendAsync([
            new TestEvent("acme", "r1", "api_call", "c1", Noon, ("seats", "10")),
            new TestEvent("acme", "r2", "api_call", "c1", Noon.AddMinutes(15), ("seats", "4")),
            new TestEvent("acme", "r3", "api_call", "c1", Noon.AddMinutes(5), ("seats", "99")), // out of order in its window: invalid
            new TestEvent("acme", "r4", "api_call", "c1", Noon.AddMinutes(90), ("seats", "2")),
        ]);

        var rows = (await harness.Aggregator.Usage.QueryAsync(Query("acme", "seats"))).Rows;
        Assert.Equal((10m * 900) + (4m * 2700), rows[0].Value);
        Assert.Equal(2m * 1800, rows[1].Value);
        var day = Assert.Single((await harness.Aggregator.Usage.QueryAsync(Query("acme", "seats", WindowSize.Day))).Rows);
        Assert.Equal(rows[0].Value + rows[1].Value, day.Value);
        Assert.Equal(1, harness.Aggregator.GetCounters("acme").InvalidByMeter["seats"]);
    }

    [Fact]
    public async Task UniqueCount_RollUps_CountEachValueOncePerWindow()
    {
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "users", Aggregation.UniqueCount, "user", WindowSize.Minute, "api_call", "region");
        await harness.StartAsync();

        await harness.AppendAsync([
            new TestEvent("acme", "e1", "api_call", "c1", Noon, ("user", "ann"), ("region", "eu")),
            new TestEvent("acme", "e2", "api_call", "c1", Noon.AddMinutes(1), ("user", "ann"), ("region", "us")),
            new TestEvent("acme", "e3", "api_call", "c1", Noon.AddHours(3), ("user", "bob"), ("region", "eu")),
            new TestEvent("acme", "e4", "api_call", "c1", Noon.AddDays(1), ("user", "ann"), ("region", "eu")),
        ]);

        var minutes = (await harness.Aggregator.Usage.QueryAsync(Query("acme", "users"))).Rows;
        Assert.Equal(4, minutes.Count);
        Assert.All(minutes, r => Assert.Equal(1m, r.Value));
        var days = (await harness.Aggregator.Usage.QueryAsync(Query("acme", "users", WindowSize.Day))).Rows;
        Assert.Equal([2m, 1m], days.Select(r => r.Value));
        var month = Assert.Single((await harness.Aggregator.Usage.QueryAsync(Query("acme", "users", WindowSize.Month))).Rows);
        Assert.Equal(2m, month.Value); // not 3: ann in two regions is one user
        var byRegion = (await harness.Aggregator.Usage.QueryAsync(Query("acme", "users", WindowSize.Month, groupBy: ["region"]))).Rows;
        Assert.Equal([2m, 1m], byRegion.Select(r => r.Value)); // eu: ann, bob; us: ann
    }

    [Fact]
    public async Task Query_UniqueCountOnPartOfItsGroups_IsRejected()
    {
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "users", Aggregation.UniqueCount, "user", WindowSize.Hour, "api_call", "region", "model");
        await harness.StartAsync();

        var error = await Assert.ThrowsAsync<UsageQueryException>(() => harness.Aggregator.Usage.QueryAsync(Query("acme", "users", groupBy: ["region"])).AsTask());

        Assert.Equal(UsageQueryError.InvalidArgument, error.Error);
        Assert.Contains("region, model", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("2026-03-01", "9999-12-31")]
    [InlineData("1600-01-01", "2026-04-01")]
    public async Task Query_TimeBeyondNanosecondRange_IsRejected(string from, string to)
    {
        // Unix nanoseconds in a long cover 1677-2262; beyond, the window arithmetic would wrap round to another century.
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "tokens", Aggregation.Sum);
        await harness.StartAsync();
        var query = Query("acme", "tokens") with
        {
            From = DateTimeOffset.Parse(from, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal),
            To = DateTimeOffset.Parse(to, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal),
        };

        var error = await Assert.ThrowsAsync<UsageQueryException>(() => harness.Aggregator.Usage.QueryAsync(query).AsTask());
        Assert.Equal(UsageQueryError.InvalidArgument, error.Error);
        Assert.Contains("between 1700-01-01 and 2250-01-01", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Query_WindowFinerThanMeter_IsRejected()
    {
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "tokens", Aggregation.Sum, window: WindowSize.Day);
        await harness.StartAsync();

        var error = await Assert.ThrowsAsync<UsageQueryException>(() => harness.Aggregator.Usage.QueryAsync(Query("acme", "tokens", WindowSize.Hour)).AsTask());

        Assert.Equal(UsageQueryError.InvalidArgument, error.Error);
    }

    [Fact]
    public async Task Apply_OneEventSeveralMeters_FeedsEach()
    {
        await using var harness = new Harness();
        await harness.MeterAsync("acme", "calls", Aggregation.Count);
        await harness.MeterAsync("acme", "tokens", Aggregation.Sum);
        await harness.MeterAsync("acme", "peak", Aggregation.Max);
        await harness.StartAsync();

        await harness.AppendAsync([
            new TestEvent("acme", "e1", "api_call", "c1", Noon, ("tokens", "3")),
            new TestEvent("acme", "e2", "api_call", "c1", Noon, ("tokens", "8.25")),
        ]);

        Assert.Equal(2m, Assert.Single((await harness.Aggregator.Usage.QueryAsync(Query("acme", "calls"))).Rows).Value);
        Assert.Equal(11.25m, Assert.Single((await harness.Aggregator.Usage.QueryAsync(Query("acme", "tokens"))).Rows).Value);
        Assert.Equal(8.25m, Assert.Single((await harness.Aggregator.Usage.QueryAsync(Query("acme", "peak"))).Rows).Value);
    }
}
