using AlphaMesh.Ingest;
using AlphaMesh.Ingest.Internal;
using BenchmarkDotNet.Attributes;

namespace AlphaMesh.Benchmarks;

/// <summary>Request bytes to encoded log records in a pooled <see cref="EncodedBatch"/>, per event.</summary>
[BenchmarkCategory(Categories.Parse)]
public class ParseBenchmarks
{
    private const int Partitions = 2;
    private byte[] _protobuf = [];
    private byte[] _json = [];
    private IngestContext _context;

    [GlobalSetup]
    public void Setup()
    {
        var now = DateTimeOffset.UtcNow;
        var events = Batch.Create(now);
        _protobuf = Batch.Protobuf(events);
        _json = Batch.CloudEventsJson(events);
        _context = new IngestContext(new IngestLimits(), (now.UtcTicks - DateTime.UnixEpoch.Ticks) * 100, Partitions);
        // Both parsers must accept every event, or the figures would measure the rejection path.
        Check(Protobuf(), nameof(Protobuf));
        Check(CloudEvents(), nameof(CloudEvents));
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Batch.Events)]
    public int Protobuf()
    {
        var batch = EncodedBatch.Rent(Partitions);
        try
        {
            ProtobufBatchParser.TryParse(_protobuf, Batch.Tenant, _context, batch, out _);
            return batch.AcceptedCount;
        }
        finally
        {
            batch.Return();
        }
    }

    [Benchmark(OperationsPerInvoke = Batch.Events)]
    public int CloudEvents()
    {
        var batch = EncodedBatch.Rent(Partitions);
        try
        {
            CloudEventsBatchParser.TryParse(_json, CloudEventsMode.Batch, Batch.Tenant, _context, batch, out _);
            return batch.AcceptedCount;
        }
        finally
        {
            batch.Return();
        }
    }

    private static void Check(int accepted, string name)
    {
        if (accepted != Batch.Events)
            throw new InvalidOperationException($"{name}: {accepted} of {Batch.Events} events accepted.");
    }
}
