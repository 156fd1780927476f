using AlphaMesh.Core;
using AlphaMesh.Ingest;
using AlphaMesh.Ingest.Internal;
using BenchmarkDotNet.Attributes;

namespace AlphaMesh.Benchmarks;

/// <summary>
/// A protobuf request parsed and appended to a real FasterLog event log (a temporary directory, two partitions,
/// the server's defaults otherwise), per event. The group-commit loop runs in the background as in the server;
/// <see cref="ParseAppendCommit"/> also waits for the commit that makes the batch durable, as a reply does.
/// </summary>
[BenchmarkCategory(Categories.Append)]
public class AppendBenchmarks
{
    private const int Partitions = 2;
    private byte[] _protobuf = [];
    private IngestContext _context;
    private string _directory = "";
    private IEventLog _log = null!;
    private readonly long[] _ends = new long[Partitions];

    [GlobalSetup]
    public void Setup()
    {
        var now = DateTimeOffset.UtcNow;
        _protobuf = Batch.Protobuf(Batch.Create(now));
        _context = new IngestContext(new IngestLimits(), (now.UtcTicks - DateTime.UnixEpoch.Ticks) * 100, Partitions);
        _directory = Path.Combine(Path.GetTempPath(), "alphamesh-bench-" + Guid.NewGuid().ToString("N"));
        _log = EventLogFactory.OpenFasterLog(new EventLogOptions { Directory = _directory, Partitions = Partitions });
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _log.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Directory.Delete(_directory, recursive: true);
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Batch.Events)]
    public int ParseAndAppend()
    {
        var batch = EncodedBatch.Rent(Partitions);
        try
        {
            ProtobufBatchParser.TryParse(_protobuf, Batch.Tenant, _context, batch, out _);
            Append(batch);
            return batch.AcceptedCount;
        }
        finally
        {
            batch.Return();
        }
    }

    [Benchmark(OperationsPerInvoke = Batch.Events)]
    public async ValueTask<int> ParseAppendCommit()
    {
        var batch = EncodedBatch.Rent(Partitions);
        try
        {
            ProtobufBatchParser.TryParse(_protobuf, Batch.Tenant, _context, batch, out _);
            Append(batch);
            for (int p = 0; p < Partitions; p++)
            {
                if (_ends[p] >= 0)
                    await _log.GetPartition(p).WaitForCommitAsync(_ends[p]).ConfigureAwait(false);
            }
            return batch.AcceptedCount;
        }
        finally
        {
            batch.Return();
        }
    }

    private void Append(EncodedBatch batch)
    {
        for (int p = 0; p < Partitions; p++)
        {
            _ends[p] = -1;
            if (!batch.HasRecords(p))
                continue;
            var partition = _log.GetPartition(p);
            long end;
            // The log is full only while the disk catches up; waiting then is what the server does too.
            while (!partition.TryAppend(batch.GetPartitionBatch(p), out end))
                partition.WaitForRoomAsync().AsTask().GetAwaiter().GetResult();
            _ends[p] = end;
        }
    }
}
