using AlphaMesh.Client.Internal;
using BenchmarkDotNet.Attributes;

namespace AlphaMesh.Benchmarks;

/// <summary>
/// The client SDK's encoding, per event: what <c>UsageClient.EnqueueAsync</c>/<c>TryEnqueue</c> do under the
/// client's lock, that is the SDK's <see cref="EventBatch"/> encoder writing events straight into protobuf
/// bytes. <see cref="GeneratedIds"/> is the common call (no id, no time: a UUIDv7 and the current time are
/// made per event); <see cref="GivenIds"/> passes the caller's id and time. A <c>UsageClient</c> without a
/// server would measure its failing connection attempts as well, so the encoder is measured directly.
/// </summary>
[BenchmarkCategory(Categories.Client)]
public class ClientEncodeBenchmarks
{
    private Batch.Event[] _events = [];

    [GlobalSetup]
    public void Setup() => _events = Batch.Create(DateTimeOffset.UtcNow);

    [Benchmark(Baseline = true, OperationsPerInvoke = Batch.Events)]
    public int GeneratedIds()
    {
        var batch = new EventBatch("0195f3a2-batch-000042", 128 * 1024);
        foreach (var e in _events)
            batch.Append(null, e.Type, e.Customer, null, e.Data);
        int length = batch.Length;
        batch.ReturnBuffer();
        return length;
    }

    [Benchmark(OperationsPerInvoke = Batch.Events)]
    public int GivenIds()
    {
        var batch = new EventBatch("0195f3a2-batch-000042", 128 * 1024);
        foreach (var e in _events)
            batch.Append(e.Id, e.Type, e.Customer, e.Time, e.Data);
        int length = batch.Length;
        batch.ReturnBuffer();
        return length;
    }
}
