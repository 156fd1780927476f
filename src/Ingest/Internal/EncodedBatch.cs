using System.Buffers;
using System.Runtime.CompilerServices;
using AlphaMesh.Core;

namespace AlphaMesh.Ingest.Internal;

/// <summary>
/// The parsed form of one ingest request: the encoded <see cref="EventRecord"/>s of its valid events in
/// one pooled byte buffer, plus the rejections of its invalid ones. Records are appended in request
/// order; <see cref="Complete"/> then groups them per partition through an index (the bytes are not
/// moved: <see cref="IRecordBatch"/> hands out records one at a time, so contiguity buys nothing).
/// Pooled: one per request, <see cref="Rent"/> then <see cref="Return"/>. Its arrays stay with it while
/// it is in the pool, so a warm batch parses a request without allocating.
/// </summary>
internal sealed class EncodedBatch
{
    private const int InitialBufferBytes = 64 * 1024;
    private const int InitialRecords = 256;

    // Buffers beyond this are handed back to ArrayPool.Shared on Return, so that one huge request
    // does not pin its memory in every pooled batch it passed through.
    private const int MaxRetainedBufferBytes = 8 * 1024 * 1024;

    private static readonly BatchPool s_pool = new(Math.Max(16, Environment.ProcessorCount * 4));

    private byte[] _buffer = [];
    private int _length;
    private RecordSlot[] _records = [];
    private int _recordCount;
    private RejectionEntry[] _rejections = [];
    private int _rejectionCount;

    // Per partition: the start of its run in _order and its record count. _order lists the indices of
    // _records grouped by partition, each group in request order (a stable counting sort).
    private int[] _order = [];
    private int[] _partitionStart = [];
    private int[] _partitionCount = [];
    private PartitionRecords[] _views = [];

    // Working space of the parsers, reused across events and requests.
    private DataSlot[] _dataSlots = [];
    private byte[] _scratch = [];
    private int _scratchLength;
    private int[] _keyTable = [];

    private bool _rented;

    private EncodedBatch()
    {
    }

    /// <summary>Takes a batch from the pool (or makes one) for a log of <paramref name="partitionCount"/> partitions.</summary>
    public static EncodedBatch Rent(int partitionCount)
    {
        if (partitionCount <= 0)
            ThrowHelper.ThrowArgumentOutOfRange(nameof(partitionCount), "The partition count must be greater than 0.");
        var batch = s_pool.TryTake() ?? new EncodedBatch();
        batch.SetPartitionCount(partitionCount);
        batch._rented = true;
        return batch;
    }

    /// <summary>Clears the batch and gives it back to the pool. The batch must not be used afterwards.</summary>
    public void Return()
    {
        if (!_rented)
            ThrowHelper.ThrowInvalidOperation("The batch was returned twice (or never rented).");
        _rented = false;
        Clear();
        if (_buffer.Length > MaxRetainedBufferBytes)
            ReleaseBuffer();
        if (!s_pool.TryAdd(this))
            ReleaseBuffer();
    }

    public int PartitionCount => _partitionStart.Length;

    /// <summary>The request's batch id; "" when it has none.</summary>
    public string BatchId { get; set; } = "";

    /// <summary>Events in the request, valid or not.</summary>
    public int EventCount { get; private set; }

    /// <summary>Valid events, encoded as records.</summary>
    public int AcceptedCount => _recordCount;

    /// <summary>The refused events, ordered by index.</summary>
    public ReadOnlySpan<RejectionEntry> Rejections => _rejections.AsSpan(0, _rejectionCount);

    public bool HasRecords(int partition) => _partitionCount[partition] > 0;

    /// <summary>The records of one partition, in request order. The object is owned by this batch and
    /// reused: it is valid until the batch is returned.</summary>
    public IRecordBatch GetPartitionBatch(int partition) => _views[partition];

    /// <summary>Empties the batch, keeping its arrays.</summary>
    public void Clear()
    {
        _length = 0;
        _recordCount = 0;
        // Rejection entries hold strings: drop the references so a pooled batch does not keep them alive.
        _rejections.AsSpan(0, _rejectionCount).Clear();
        _rejectionCount = 0;
        _partitionCount.AsSpan().Clear();
        _partitionStart.AsSpan().Clear();
        _scratchLength = 0;
        EventCount = 0;
        BatchId = "";
    }

    /// <summary>Returns space for one record of at most <paramref name="maxSize"/> bytes at the end of
    /// the buffer; <see cref="CommitRecord"/> then keeps what was written.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal Span<byte> BeginRecord(int maxSize)
    {
        if (_buffer.Length - _length < maxSize)
            GrowBuffer(maxSize);
        return _buffer.AsSpan(_length, maxSize);
    }

    internal void CommitRecord(int length, int partition)
    {
        if (_recordCount == _records.Length)
            Grow(ref _records, InitialRecords, _recordCount + 1);
        _records[_recordCount++] = new RecordSlot(_length, length, partition);
        _length += length;
    }

    internal void AddRejection(int index, string code, string message)
    {
        if (_rejectionCount == _rejections.Length)
            Grow(ref _rejections, 16, _rejectionCount + 1);
        _rejections[_rejectionCount++] = new RejectionEntry(index, code, message);
    }

    /// <summary>Ends parsing: records the event count and groups the records per partition.</summary>
    internal void Complete(int eventCount)
    {
        EventCount = eventCount;
        if (_order.Length < _recordCount)
            Grow(ref _order, InitialRecords, _recordCount);
        var counts = _partitionCount.AsSpan();
        var starts = _partitionStart.AsSpan();
        var records = _records.AsSpan(0, _recordCount);
        foreach (ref readonly var record in records)
            counts[record.Partition]++;
        int start = 0;
        for (int p = 0; p < starts.Length; p++)
        {
            starts[p] = start;
            start += counts[p];
        }
        // Place each record after the ones of its partition placed so far; starts[] walks forward
        // during the placement and is rebuilt from the counts afterwards.
        for (int i = 0; i < records.Length; i++)
            _order[starts[records[i].Partition]++] = i;
        for (int p = 0; p < starts.Length; p++)
            starts[p] -= counts[p];
    }

    internal ReadOnlySpan<byte> GetRecord(int partition, int index)
    {
        if ((uint)index >= (uint)_partitionCount[partition])
            ThrowHelper.ThrowArgumentOutOfRange(nameof(index), "The partition has fewer records.");
        ref readonly var slot = ref _records[_order[_partitionStart[partition] + index]];
        return new ReadOnlySpan<byte>(_buffer, slot.Offset, slot.Length);
    }

    /// <summary>The data-entry slots of the event being parsed; grown on demand, contents kept.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal Span<DataSlot> DataSlots(int needed)
    {
        if (_dataSlots.Length < needed)
            Grow(ref _dataSlots, 16, needed);
        return _dataSlots;
    }

    /// <summary>Forgets the scratch bytes of the previous event.</summary>
    internal void ResetScratch() => _scratchLength = 0;

    /// <summary>The scratch bytes written so far (where <see cref="ByteRange"/>s of JSON events point).</summary>
    internal ReadOnlySpan<byte> Scratch => _scratch.AsSpan(0, _scratchLength);

    /// <summary>Space for at most <paramref name="maxSize"/> bytes at the end of the scratch buffer;
    /// <see cref="CommitScratch"/> keeps what was written and says where it is.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal Span<byte> BeginScratch(int maxSize)
    {
        if (_scratch.Length - _scratchLength < maxSize)
            GrowScratch(maxSize);
        return _scratch.AsSpan(_scratchLength, maxSize);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ByteRange CommitScratch(int length)
    {
        var range = new ByteRange(_scratchLength, length);
        _scratchLength += length;
        return range;
    }

    /// <summary>A zeroed table of at least <paramref name="size"/> ints for the duplicate-key check.</summary>
    internal Span<int> KeyTable(int size)
    {
        if (_keyTable.Length < size)
            _keyTable = new int[Math.Max(size, 128)];
        var table = _keyTable.AsSpan(0, size);
        table.Clear();
        return table;
    }

    private void SetPartitionCount(int partitionCount)
    {
        if (_partitionStart.Length == partitionCount)
            return;
        _partitionStart = new int[partitionCount];
        _partitionCount = new int[partitionCount];
        _views = new PartitionRecords[partitionCount];
        for (int p = 0; p < partitionCount; p++)
            _views[p] = new PartitionRecords(this, p);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void GrowBuffer(int needed)
    {
        var grown = ArrayPool<byte>.Shared.Rent(NewSize(_buffer.Length, InitialBufferBytes, _length + needed));
        _buffer.AsSpan(0, _length).CopyTo(grown);
        if (_buffer.Length > 0)
            ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = grown;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void GrowScratch(int needed)
    {
        var grown = ArrayPool<byte>.Shared.Rent(NewSize(_scratch.Length, 4096, _scratchLength + needed));
        _scratch.AsSpan(0, _scratchLength).CopyTo(grown);
        if (_scratch.Length > 0)
            ArrayPool<byte>.Shared.Return(_scratch);
        _scratch = grown;
    }

    private void ReleaseBuffer()
    {
        if (_buffer.Length > 0)
            ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
        if (_scratch.Length > 0)
            ArrayPool<byte>.Shared.Return(_scratch);
        _scratch = [];
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Grow<T>(ref T[] array, int initial, int needed)
    {
        var grown = new T[NewSize(array.Length, initial, needed)];
        array.CopyTo(grown, 0);
        array = grown;
    }

    /// <summary>Doubling from <paramref name="initial"/> until <paramref name="needed"/> fits.</summary>
    private static int NewSize(int current, int initial, int needed)
    {
        long size = Math.Max(current, initial);
        while (size < needed)
            size *= 2;
        return (int)Math.Min(size, Array.MaxLength);
    }

    private readonly record struct RecordSlot(int Offset, int Length, int Partition);

    /// <summary>One partition's view of the batch, made once per batch object and reused.</summary>
    private sealed class PartitionRecords(EncodedBatch batch, int partition) : IRecordBatch
    {
        public int Count => batch._partitionCount[partition];

        public ReadOnlySpan<byte> GetRecord(int index) => batch.GetRecord(partition, index);
    }

    /// <summary>
    /// A bounded, lock-free pool (the same shape as Microsoft.Extensions.ObjectPool's DefaultObjectPool,
    /// which cannot release our ArrayPool buffers when it drops an object on a full pool).
    /// </summary>
    private sealed class BatchPool(int capacity)
    {
        private readonly EncodedBatch?[] _items = new EncodedBatch?[capacity];

        public EncodedBatch? TryTake()
        {
            var items = _items;
            for (int i = 0; i < items.Length; i++)
            {
                var item = items[i];
                if (item != null && Interlocked.CompareExchange(ref items[i], null, item) == item)
                    return item;
            }
            return null;
        }

        public bool TryAdd(EncodedBatch batch)
        {
            var items = _items;
            for (int i = 0; i < items.Length; i++)
            {
                if (items[i] == null && Interlocked.CompareExchange(ref items[i], batch, null) == null)
                    return true;
            }
            return false;
        }
    }
}
