using AlphaMesh.Aggregator.Internal;
using FASTER.core;

namespace AlphaMesh.Aggregator.Tests;

public sealed class KvStoreTests
{
    [Fact]
    public async Task CheckpointAsync_AnotherCheckpointStillRunning_WaitsForItAndTakesItsOwn()
    {
        // At shutdown the loop's wait for a checkpoint is cancelled while FASTER goes on with it, and the final
        // checkpoint follows at once; FASTER refuses a second checkpoint while one runs ("another checkpoint was in
        // progress"), which failed the server's shutdown. A checkpoint started and not awaited stands in for it.
        string directory = Path.Combine(Path.GetTempPath(), "alphamesh-kvstore-tests", Guid.NewGuid().ToString("N"));
        var options = new AggregatorOptions { PageSizeBytes = 4096, SegmentSizeBytes = 1 << 20 };
        var functions = new DedupeFunctions();
        using (var store = new KvStore<HashKey, DedupeValue, DedupeValue, DedupeOutput, DedupeFunctions>(directory,
            StoreSizes.From(options, 1 << 16, 1 << 12, "Dedupe"), HashKeyComparer.Instance, functions))
        {
            for (ulong i = 1; i <= 1000; i++)
            {
                var key = new HashKey(i);
                var value = new DedupeValue { ExpiresAt = (long)i };
                store.Rmw(ref key, ref value);
            }
            Assert.True(store.Kv.TryInitiateFullCheckpoint(out var running, CheckpointType.FoldOver));

            var taken = await store.CheckpointAsync(withIndex: true, long.MaxValue, CancellationToken.None);

            Assert.NotEqual(running, taken.Log);
        }
        Directory.Delete(directory, recursive: true);
    }

    [Fact]
    public async Task CheckpointAsync_LogBeginsLaterThanAtTheIndexCheckpoint_WritesTheIndexAgain()
    {
        // After a compaction the log begins later; a log-only checkpoint would make recovery replay the log from the
        // old index checkpoint's start, below the new beginning. The store itself notices, whatever its caller asks.
        string directory = Path.Combine(Path.GetTempPath(), "alphamesh-kvstore-tests", Guid.NewGuid().ToString("N"));
        var options = new AggregatorOptions { PageSizeBytes = 4096, SegmentSizeBytes = 1 << 20 };
        using (var store = new KvStore<HashKey, DedupeValue, DedupeValue, DedupeOutput, DedupeFunctions>(directory,
            StoreSizes.From(options, 1 << 16, 1 << 12, "Dedupe"), HashKeyComparer.Instance, new DedupeFunctions()))
        {
            void Insert(ulong from, ulong to)
            {
                for (ulong i = from; i <= to; i++)
                {
                    var key = new HashKey(i);
                    var value = new DedupeValue { ExpiresAt = (long)i };
                    store.Rmw(ref key, ref value);
                }
            }
            Insert(1, 1000);
            var first = await store.CheckpointAsync(withIndex: false, long.MaxValue, CancellationToken.None);
            Assert.Equal(first.Index, first.Log); // the first of a run has its index
            Insert(1001, 1100);
            var logOnly = await store.CheckpointAsync(withIndex: false, long.MaxValue, CancellationToken.None);
            Assert.Equal(first.Index, logOnly.Index);
            Assert.NotEqual(logOnly.Index, logOnly.Log);

            store.Kv.Log.ShiftBeginAddress(store.Kv.Log.SafeReadOnlyAddress / 2, truncateLog: false);
            Insert(1101, 1200);
            var afterShift = await store.CheckpointAsync(withIndex: false, long.MaxValue, CancellationToken.None);

            Assert.Equal(afterShift.Index, afterShift.Log);
            Assert.NotEqual(first.Index, afterShift.Index);
        }
        Directory.Delete(directory, recursive: true);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Rmw_StoreLargerThanMemory_FindsEveryKeyWithTheMutableRegionItsKindAsksFor(bool writtenOnce)
    {
        // A dedupe store is written once per key: it keeps a tenth of memory mutable (two pages at least), so that a
        // checkpoint flushes little; the keys that left memory must still be found, in the read-only region or on disk.
        string directory = Path.Combine(Path.GetTempPath(), "alphamesh-kvstore-tests", Guid.NewGuid().ToString("N"));
        var options = new AggregatorOptions { PageSizeBytes = 4096, SegmentSizeBytes = 1 << 20 };
        var sizes = StoreSizes.From(options, 16 * 4096, 1 << 14, "Dedupe");
        var random = new Random(writtenOnce ? 1 : 2);
        var keys = new HashSet<HashKey>();
        try
        {
            using var store = new KvStore<HashKey, DedupeValue, DedupeValue, DedupeOutput, DedupeFunctions>(directory, sizes,
                HashKeyComparer.Instance, new DedupeFunctions(), writtenOnce);
            while (keys.Count < 20_000)
            {
                var key = new HashKey(new UInt128((ulong)random.NextInt64(), (ulong)random.NextInt64()));
                var value = new DedupeValue { ExpiresAt = keys.Count };
                Assert.Equal(!keys.Add(key), store.Rmw(ref key, ref value).Existed);
            }
            long mutablePages = (store.Kv.Log.TailAddress - store.Kv.Log.ReadOnlyAddress) / 4096;
            Assert.True(store.Kv.Log.HeadAddress > store.Kv.Log.BeginAddress, "the keys should not all fit in memory");

            foreach (var known in keys.OrderBy(_ => random.Next()).Take(2_000))
            {
                var key = known;
                var value = new DedupeValue { ExpiresAt = -1 };
                Assert.True(store.Rmw(ref key, ref value).Existed);
            }
            if (writtenOnce)
                Assert.InRange(mutablePages, 1, 3); // 2 of 16 pages (a page more while the tail page fills)
            else
                Assert.InRange(mutablePages, 13, 16); // FASTER's default: 90 %
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task ShiftBeginAddress_TruncateLog_RemovesTheSegmentsBelowAtPurgeExceptAndKeepsTheKeysAbove()
    {
        // A checkpoint after a compaction moves a store's begin address with truncateLog: FASTER then removes the
        // segments below it through the store's device (BackgroundRemovalDevice), on a task of its own. The device
        // keeps them until PurgeExcept (the aggregator's manifest no longer names a checkpoint that needs them).
        string directory = Path.Combine(Path.GetTempPath(), "alphamesh-kvstore-tests", Guid.NewGuid().ToString("N"));
        var options = new AggregatorOptions { PageSizeBytes = 4096, SegmentSizeBytes = 8192 };
        var sizes = StoreSizes.From(options, 16 * 4096, 1 << 14, "Dedupe");
        var keys = new List<HashKey>();
        try
        {
            using (var store = new KvStore<HashKey, DedupeValue, DedupeValue, DedupeOutput, DedupeFunctions>(directory, sizes,
                HashKeyComparer.Instance, new DedupeFunctions(), writtenOnce: true))
            {
                var addresses = new List<long>();
                for (ulong i = 1; i <= 5_000; i++)
                {
                    addresses.Add(store.Kv.Log.TailAddress);
                    var key = new HashKey(new UInt128(i, i * 31));
                    var value = new DedupeValue { ExpiresAt = (long)i };
                    store.Rmw(ref key, ref value);
                    keys.Add(key);
                }
                var checkpoint = await store.CheckpointAsync(withIndex: true, long.MaxValue, CancellationToken.None);
                Assert.True(File.Exists(Path.Combine(directory, "hlog.0")));
                int firstKept = addresses.FindIndex(address => address >= 4 * 8192);

                store.Kv.Log.ShiftBeginAddress(4 * 8192, truncateLog: true);

                // FASTER removes the four segments one after another on its own task: wait for all of them.
                for (int wait = 0; wait < 1000 && store.DeferredSegmentCount < 4; wait++)
                    await Task.Delay(10);
                Assert.Equal(4, store.DeferredSegmentCount);
                bool AllBelowCut() => Enumerable.Range(0, 4).All(segment => File.Exists(Path.Combine(directory, $"hlog.{segment}")));
                Assert.True(AllBelowCut(), "segments 0-3 were removed before PurgeExcept");

                store.PurgeExcept(checkpoint);

                Assert.Equal(0, store.DeferredSegmentCount);
                Assert.DoesNotContain(Enumerable.Range(0, 4), segment => File.Exists(Path.Combine(directory, $"hlog.{segment}")));
                Assert.True(File.Exists(Path.Combine(directory, "hlog.4")));
                foreach (var kept in keys.Skip(firstKept + 1))
                {
                    var key = kept;
                    var value = new DedupeValue { ExpiresAt = -1 };
                    Assert.True(store.Rmw(ref key, ref value).Existed);
                }
            }
            Assert.Empty(Directory.EnumerateFiles(directory, "removed-*"));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task BucketAddress_InsertedKeys_IsTheBucketHoldingTheirTags()
    {
        // LoadBucket is only useful if it loads the bucket FASTER's own lookup reads: each inserted key's entry
        // (its tag: hash bits 50-63, kept in entry bits 48-61) must be in the bucket at BucketAddress, both in a new
        // store and in one recovered from a checkpoint (recovery may allocate a new index).
        string directory = Path.Combine(Path.GetTempPath(), "alphamesh-kvstore-tests", Guid.NewGuid().ToString("N"));
        var options = new AggregatorOptions { PageSizeBytes = 4096, SegmentSizeBytes = 1 << 20 };
        var sizes = StoreSizes.From(options, 1 << 16, 1 << 16, "Dedupe"); // 1,024 buckets: 200 keys never fill one
        var functions = new DedupeFunctions();
        var random = new Random(20261126);
        var keys = new HashKey[200];
        StoreCheckpoint checkpoint;
        using (var store = new KvStore<HashKey, DedupeValue, DedupeValue, DedupeOutput, DedupeFunctions>(directory, sizes, HashKeyComparer.Instance, functions))
        {
            for (int i = 0; i < keys.Length; i++)
            {
                keys[i] = new HashKey(new UInt128((ulong)random.NextInt64(), (ulong)random.NextInt64()));
                var value = new DedupeValue { ExpiresAt = i };
                Assert.False(store.Rmw(ref keys[i], ref value).Existed);
            }
            AssertTagsInBuckets(store, keys);
            checkpoint = await store.CheckpointAsync(withIndex: true, long.MaxValue, CancellationToken.None);
        }
        using (var store = new KvStore<HashKey, DedupeValue, DedupeValue, DedupeOutput, DedupeFunctions>(directory, sizes, HashKeyComparer.Instance, functions))
        {
            store.Recover(checkpoint, functions);
            AssertTagsInBuckets(store, keys);
        }
        Directory.Delete(directory, recursive: true);
    }

    private static unsafe void AssertTagsInBuckets(KvStore<HashKey, DedupeValue, DedupeValue, DedupeOutput, DedupeFunctions> store, HashKey[] keys)
    {
        foreach (var key in keys)
        {
            var copy = key;
            long hash = HashKeyComparer.Instance.GetHashCode64(ref copy);
            long tag = (long)((ulong)hash >> 50);
            var bucket = (long*)store.BucketAddress(hash);
            bool found = false;
            for (int slot = 0; slot < 7; slot++)
                found |= bucket[slot] != 0 && ((bucket[slot] >> 48) & 0x3FFF) == tag;
            Assert.True(found, $"no entry with tag {tag} in the bucket of key {key.Low:X16}");
            Assert.Equal(bucket[0], store.LoadBucket(hash));
        }
    }

    [Fact]
    public void LoadOverflowBucket_MoreKeysThanTheBucketHolds_ReadsTheChainedBucket()
    {
        // A main bucket holds 7 keys (these 20 all fall in bucket 0); FASTER chains the rest in overflow buckets, whose first one
        // LoadOverflowBucket must read: its first entry carries the tag of one of the keys beyond the first 7.
        string directory = Path.Combine(Path.GetTempPath(), "alphamesh-kvstore-tests", Guid.NewGuid().ToString("N"));
        var options = new AggregatorOptions { PageSizeBytes = 4096, SegmentSizeBytes = 1 << 20 };
        var functions = new DedupeFunctions();
        using (var store = new KvStore<HashKey, DedupeValue, DedupeValue, DedupeOutput, DedupeFunctions>(directory,
            StoreSizes.From(options, 1 << 16, 512, "Dedupe"), HashKeyComparer.Instance, functions))
        {
            var empty = new HashKey(new UInt128(0, 1));
            Assert.Equal(0, store.LoadOverflowBucket(HashKeyComparer.Instance.GetHashCode64(ref empty)));
            var tags = new HashSet<long>();
            for (ulong i = 0; i < 20; i++)
            {
                // Distinct tags (hash bits 50-63), so that each key takes its own entry.
                var key = new HashKey(new UInt128(0, (i + 1) << 50));
                var value = new DedupeValue { ExpiresAt = 1 };
                store.Rmw(ref key, ref value);
                tags.Add((long)(i + 1));
            }

            long word = store.LoadOverflowBucket(0);

            Assert.NotEqual(0, word);
            Assert.Contains((word >> 48) & 0x3FFF, tags);
        }
        Directory.Delete(directory, recursive: true);
    }

    [Fact]
    public void From_IndexSmallerThanFastersMinimum_ThrowsNamingTheOption()
    {
        // FASTER refuses an index under 8 buckets (512 bytes) with its own message; the options say which setting.
        var error = Assert.Throws<ArgumentException>(() => StoreSizes.From(new AggregatorOptions(), 1 << 26, 256, "Dedupe"));
        Assert.Contains("Aggregator.DedupeIndexBytes must be at least 512", error.Message, StringComparison.Ordinal);
    }
}
