using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Connections;

namespace AlphaMesh.Server.Internal;

/// <summary>Gives Kestrel (its sockets and pipes) a <see cref="LargeBlockMemoryPool"/> instead of its own pool.</summary>
internal sealed class LargeBlockMemoryPoolFactory : IMemoryPoolFactory<byte>
{
    public MemoryPool<byte> Create(MemoryPoolOptions? options = null) => new LargeBlockMemoryPool();
}

/// <summary>
/// A pool of pinned 64 KiB blocks. Kestrel's own pool hands out 4 KiB blocks, and a socket receive fills at most
/// the rest of one block, so a 1,000-event ingest batch (about 130 KiB) took some 60 receive calls, each after a
/// one-byte peek; with 64 KiB blocks it takes a few (benchmarks/RESULTS.md, "Latest"). A block is pinned for
/// its whole life, so socket I/O needs no pin per call. Returned blocks are kept for reuse up to
/// <see cref="MaxRetainedBlocks"/>; beyond that they are left to the garbage collector.
/// </summary>
internal sealed class LargeBlockMemoryPool : MemoryPool<byte>
{
    public const int DefaultBlockSize = 64 * 1024;
    public const int DefaultMaxRetainedBlocks = 1024; // 64 MiB

    private readonly ConcurrentQueue<Block> _free = new();
    private readonly int _blockSize;
    private int _retained;
    private volatile bool _disposed;

    public LargeBlockMemoryPool(int blockSize = DefaultBlockSize, int maxRetainedBlocks = DefaultMaxRetainedBlocks)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 4096);
        ArgumentOutOfRangeException.ThrowIfNegative(maxRetainedBlocks);
        _blockSize = blockSize;
        MaxRetainedBlocks = maxRetainedBlocks;
    }

    public override int MaxBufferSize => _blockSize;

    public int MaxRetainedBlocks { get; }

    /// <summary>Blocks returned and kept for reuse.</summary>
    public int RetainedBlocks => Volatile.Read(ref _retained);

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (minBufferSize > _blockSize)
            throw new ArgumentOutOfRangeException(nameof(minBufferSize), minBufferSize,
                $"The pool's blocks are {_blockSize} bytes; callers ask for more only after checking MaxBufferSize.");
        if (_free.TryDequeue(out var block))
        {
            Interlocked.Decrement(ref _retained);
            return block;
        }
        return new Block(this, _blockSize);
    }

    private void Return(Block block)
    {
        if (_disposed)
            return;
        if (Interlocked.Increment(ref _retained) > MaxRetainedBlocks)
        {
            Interlocked.Decrement(ref _retained);
            return;
        }
        _free.Enqueue(block);
    }

    protected override void Dispose(bool disposing)
    {
        _disposed = true;
        while (_free.TryDequeue(out _))
            Interlocked.Decrement(ref _retained);
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
