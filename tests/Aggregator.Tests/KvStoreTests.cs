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
}
