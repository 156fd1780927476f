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
}
