namespace AlphaMesh.Core.Tests.EventLog;

/// <summary>A reusable batch over a list of records, as the ingest path would keep one.</summary>
internal sealed class TestBatch : IRecordBatch
{
    private readonly List<byte[]> _records = [];

    public int Count => _records.Count;

    public ReadOnlySpan<byte> GetRecord(int index) => _records[index];

    public TestBatch Clear()
    {
        _records.Clear();
        return this;
    }

    public TestBatch Add(byte[] record)
    {
        _records.Add(record);
        return this;
    }

    public static TestBatch Of(params byte[][] records)
    {
        var batch = new TestBatch();
        foreach (var record in records)
            batch.Add(record);
        return batch;
    }
}
