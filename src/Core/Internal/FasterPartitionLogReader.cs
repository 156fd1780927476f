using System.Numerics;
using FASTER.core;

namespace AlphaMesh.Core.Internal;

/// <summary>Reads committed records of one partition through a FasterLog scan iterator, copying each into a
/// buffer it reuses (no allocation per record).</summary>
internal sealed class FasterPartitionLogReader : IPartitionLogReader
{
    private readonly FasterPartitionLog _partition;
    private FasterLogScanIterator? _iterator;
    private byte[] _buffer = new byte[1024];
    // The committed position seen when the last read found nothing; a wait returns once it moves past it.
    private long _emptyAt = long.MinValue;

    public FasterPartitionLogReader(FasterPartitionLog partition, FasterLogScanIterator iterator)
    {
        _partition = partition;
        _iterator = iterator;
    }

    public unsafe bool TryReadNext(out ReadOnlyMemory<byte> record, out long position, out long nextPosition)
    {
        record = default;
        position = nextPosition = 0;
        var iterator = _iterator;
        if (iterator is null)
            return false; // the log was closed
        long committed = _partition.CommittedPosition;
        if (!iterator.UnsafeGetNext(out byte* entry, out int length, out position, out nextPosition))
        {
            _emptyAt = committed;
            return false;
        }
        try
        {
            if (_buffer.Length < length)
                _buffer = new byte[BitOperations.RoundUpToPowerOf2((uint)length)];
            new ReadOnlySpan<byte>(entry, length).CopyTo(_buffer);
        }
        finally
        {
            iterator.UnsafeRelease();
        }
        record = new ReadOnlyMemory<byte>(_buffer, 0, length);
        return true;
    }

    public async ValueTask<bool> WaitForRecordsAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            // Take the completion before checking, so that a commit between the check and the wait is not missed.
            var next = _partition.NextCommit;
            if (_iterator is null || _partition.IsClosed)
                return false;
            if (_partition.CommittedPosition > _emptyAt)
                return true;
            await next.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Called by the partition when it closes (the iterator must go before the log).</summary>
    internal void CloseIterator()
    {
        Interlocked.Exchange(ref _iterator, null)?.Dispose();
    }

    public void Dispose()
    {
        _partition.RemoveReader(this);
        CloseIterator();
    }
}
