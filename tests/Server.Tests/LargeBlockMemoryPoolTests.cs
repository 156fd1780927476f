using System.Runtime.InteropServices;
using AlphaMesh.Server.Internal;

namespace AlphaMesh.Server.Tests;

public sealed class LargeBlockMemoryPoolTests
{
    [Fact]
    public void Rent_AnySizeUpToTheBlock_ReturnsOneWholeBlock()
    {
        using var pool = new LargeBlockMemoryPool();

        using var small = pool.Rent(1);
        using var unspecified = pool.Rent();
        using var whole = pool.Rent(LargeBlockMemoryPool.DefaultBlockSize);

        Assert.Equal(64 * 1024, pool.MaxBufferSize);
        Assert.All(new[] { small, unspecified, whole }, owner => Assert.Equal(pool.MaxBufferSize, owner.Memory.Length));
    }

    [Fact]
    public void Rent_MoreThanABlock_ThrowsNamingTheBlockSize()
    {
        using var pool = new LargeBlockMemoryPool(blockSize: 8192);

        var error = Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(8193));

        Assert.Equal("minBufferSize", error.ParamName);
        Assert.Contains("8192 bytes", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Rent_AfterReturn_ReusesTheSameMemory()
    {
        using var pool = new LargeBlockMemoryPool(blockSize: 4096);
        var first = pool.Rent();
        first.Memory.Span[0] = 42;
        var array = Array(first.Memory);

        first.Dispose();
        Assert.Equal(1, pool.RetainedBlocks);
        using var second = pool.Rent();

        Assert.Same(array, Array(second.Memory));
        Assert.Equal(0, pool.RetainedBlocks);
    }

    [Fact]
    public void Return_BeyondTheRetentionLimit_DropsTheBlock()
    {
        using var pool = new LargeBlockMemoryPool(blockSize: 4096, new RetentionLimit(2));
        var owners = Enumerable.Range(0, 5).Select(_ => pool.Rent()).ToList();
        var arrays = owners.Select(o => Array(o.Memory)).ToList();

        owners.ForEach(o => o.Dispose());

        Assert.Equal(2, pool.RetainedBlocks);
        var reused = new[] { Array(pool.Rent().Memory), Array(pool.Rent().Memory), Array(pool.Rent().Memory) };
        Assert.Equal(2, reused.Count(a => arrays.Contains(a))); // the third is a new block
        Assert.Equal(0, pool.RetainedBlocks);
    }

    [Fact]
    public void Return_PoolsFromOneFactory_ShareOneRetentionLimit()
    {
        var limit = new RetentionLimit(3);
        using var first = new LargeBlockMemoryPool(blockSize: 4096, limit);
        using var second = new LargeBlockMemoryPool(blockSize: 4096, limit);
        var owners = new[] { first.Rent(), first.Rent(), second.Rent(), second.Rent() };

        foreach (var owner in owners)
            owner.Dispose();

        Assert.Equal(3, limit.Count);
        Assert.Equal(3, first.RetainedBlocks);
        first.Rent();
        Assert.Equal(2, second.RetainedBlocks);
    }

    [Fact]
    public void Create_TheServersFactory_PoolsOfDefaultBlocksUnderOneLimit()
    {
        var factory = new LargeBlockMemoryPoolFactory();
        using var first = factory.Create();
        using var second = factory.Create();

        first.Rent().Dispose();
        second.Rent().Dispose();

        Assert.Equal(LargeBlockMemoryPool.DefaultBlockSize, first.MaxBufferSize);
        Assert.Equal(2, ((LargeBlockMemoryPool)first).RetainedBlocks);
    }

    [Fact]
    public unsafe void Pin_AnyIndex_PointsAtThatElementOfTheBlock()
    {
        using var pool = new LargeBlockMemoryPool(blockSize: 4096);
        using var owner = pool.Rent();
        var array = Array(owner.Memory);

        using var start = owner.Memory.Pin();
        using var middle = owner.Memory.Slice(100).Pin();

        fixed (byte* first = array)
        {
            Assert.Equal((nint)first, (nint)start.Pointer);
            Assert.Equal((nint)(first + 100), (nint)middle.Pointer);
        }
    }

    [Fact]
    public void Rent_AfterDispose_ThrowsAndReturnsAreDropped()
    {
        var pool = new LargeBlockMemoryPool(blockSize: 4096);
        var owner = pool.Rent();
        pool.Dispose();

        owner.Dispose();

        Assert.Equal(0, pool.RetainedBlocks);
        Assert.Throws<ObjectDisposedException>(() => pool.Rent());
    }

    [Fact]
    public async Task RentAndReturn_ManyThreadsAtOnce_NeverHandsOneBlockToTwoRenters()
    {
        using var pool = new LargeBlockMemoryPool(blockSize: 4096, new RetentionLimit(8));
        long clashes = 0;

        // Each renter writes its own mark into the whole block, yields, and checks the mark is still whole.
        await Task.WhenAll(Enumerable.Range(1, 8).Select(mark => Task.Run(async () =>
        {
            for (int i = 0; i < 2000; i++)
            {
                using var owner = pool.Rent();
                owner.Memory.Span.Fill((byte)mark);
                if (i % 16 == 0)
                    await Task.Yield();
                if (owner.Memory.Span.ContainsAnyExcept((byte)mark))
                    Interlocked.Increment(ref clashes);
            }
        })));

        Assert.Equal(0, clashes);
        Assert.InRange(pool.RetainedBlocks, 1, 8);
    }

    private static byte[] Array(ReadOnlyMemory<byte> memory)
    {
        Assert.True(MemoryMarshal.TryGetArray(memory, out var segment), "a block exposes its array (Kestrel's socket sender needs it)");
        Assert.Equal(0, segment.Offset);
        return segment.Array!;
    }
}
