using FASTER.core;

namespace AlphaMesh.Core.Internal;

/// <summary>Presents an <see cref="IRecordBatch"/> to FasterLog's batch enqueue. One instance per thread is
/// reused, so that appending allocates nothing.</summary>
internal sealed class RecordBatchAdapter : IReadOnlySpanBatch
{
    [ThreadStatic]
    private static RecordBatchAdapter? t_instance;

    private IRecordBatch? _batch;

    public static RecordBatchAdapter Rent(IRecordBatch batch)
    {
        var adapter = t_instance ??= new RecordBatchAdapter();
        adapter._batch = batch;
        return adapter;
    }

    /// <summary>Drops the reference to the caller's batch (so that it is not kept alive by this thread).</summary>
    public void Return() => _batch = null;

    public int TotalEntries() => _batch!.Count;

    public ReadOnlySpan<byte> Get(int index) => _batch!.GetRecord(index);
}
