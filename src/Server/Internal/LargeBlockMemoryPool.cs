using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Connections;

namespace AlphaMesh.Server.Internal;

/// <summary>Gives Kestrel (its sockets and pipes) a <see cref="LargeBlockMemoryPool"/> instead of its own pool.
/// Kestrel asks for several (four in this server: one per listener and more); they share one retention limit, so
/// that blocks kept for reuse stay within <see cref="LargeBlockMemoryPool.DefaultMaxRetainedBlocks"/> in all.</summary>
internal sealed class LargeBlockMemoryPoolFactory : IMemoryPoolFactory<byte>
{
    private readonly RetentionLimit _retained = new(LargeBlockMemoryPool.DefaultMaxRetainedBlocks);

    public MemoryPool<byte> Create(MemoryPoolOptions? options = null) => new LargeBlockMemoryPool(retained: _retained);
}

/// <summary>How many returned blocks the pools that share it may keep for reuse.</summary>
internal sealed class RetentionLimit(int maxBlocks)
{
    private int _count;

    public int MaxBlocks { get; } = maxBlocks >= 0 ? maxBlocks : throw new ArgumentOutOfRangeException(nameof(maxBlocks));

    public int Count => Volatile.Read(ref _count);

    public bool TryTake()
    {
        if (Interlocked.Increment(ref _count) <= MaxBlocks)
            return true;
        Interlocked.Decrement(ref _count);
        return false;
    }

    public void Release() => Interlocked.Decrement(ref _count);
}

/// <summary>
/// A pool of pinned 64 KiB blocks. Kestrel's own pool hands out 4 KiB blocks, and a socket receive fills at most
/// the rest of one block, so a 1,000-event ingest batch (about 130 KiB) took some 60 receive calls, each after a
/// one-byte peek; with 64 KiB blocks it takes a few (benchmarks/RESULTS.md, "Latest"). A block is pinned for
/// its whole life, so socket I/O needs no pin per call. Returned blocks are kept for reuse within a
/// <see cref="RetentionLimit"/>; beyond it they are left to the garbage collector.
/// </summary>
internal sealed class LargeBlockMemoryPool : MemoryPool<byte>
{
    public const int DefaultBlockSize = 64 * 1024;
    public const int DefaultMaxRetainedBlocks = 1024; // 64 MiB

    private readonly ConcurrentQueue<Block> _free = new();
    private readonly int _blockSize;
    private readonly RetentionLimit _retained;
    private volatile bool _disposed;

    /// <param name="blockSize">The size of every block.</param>
    /// <param name="retained">The limit this pool shares with others; null: its own of <see cref="DefaultMaxRetainedBlocks"/>.</param>
    public LargeBlockMemoryPool(int blockSize = DefaultBlockSize, RetentionLimit? retained = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 4096);
        _blockSize = blockSize;
        _retained = retained ?? new RetentionLimit(DefaultMaxRetainedBlocks);
    }

    public override int MaxBufferSize => _blockSize;

    /// <summary>Blocks returned and kept for reuse, by this pool and the others that share its limit.</summary>
    public int RetainedBlocks => _retained.Count;

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (minBufferSize > _blockSize)
            throw new ArgumentOutOfRangeException(nameof(minBufferSize), minBufferSize,
                $"The pool's blocks are {_blockSize} bytes; callers ask for more only after checking MaxBufferSize.");
        if (_free.TryDequeue(out var block))
        {
            _retained.Release();
            return block;
        }
        return new Block(this, _blockSize);
    }

    private void Return(Block block)
    {
        if (_disposed || !_retained.TryTake())
            return;
        _free.Enqueue(block);
        // A return racing with Dispose may enqueue after Dispose drained the queue: drain again, so that a
        // disposed pool never holds blocks against the limit it shares with the factory's other pools.
        if (_disposed)
            DrainFree();
    }

    protected override void Dispose(bool disposing)
    {
        _disposed = true;
        DrainFree();
    }

    private void DrainFree()
    {
        while (_free.TryDequeue(out _))
            _retained.Release();
    }

    private sealed class Block(LargeBlockMemoryPool pool, int size) : MemoryManager<byte>
    {
        private readonly byte[] _array = GC.AllocateUninitializedArray<byte>(size, pinned: true);

        public override Span<byte> GetSpan() => _array;

        // The array lives on the pinned object heap: its address never changes, so pinning is a pointer.
        public override unsafe MemoryHandle Pin(int elementIndex = 0)
        {
            ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)elementIndex, (uint)_array.Length, nameof(elementIndex));
            return new MemoryHandle(Unsafe.AsPointer(ref Unsafe.Add(ref _array[0], elementIndex)));
        }

        public override void Unpin()
        {
        }

        // Kestrel's socket sender needs the array behind each segment of a multi-segment send.
        protected override bool TryGetArray(out ArraySegment<byte> segment)
        {
            segment = _array;
            return true;
        }

        // Disposing the owner (what every renter does when done) returns the block.
        protected override void Dispose(bool disposing) => pool.Return(this);
    }
}
