using AlphaMesh.Core;
using AlphaMesh.Ingest;
using AlphaMesh.Ingest.Internal;
using BenchmarkDotNet.Attributes;

namespace AlphaMesh.Benchmarks;

/// <summary>
/// A protobuf request parsed and appended to a real FasterLog event log (a temporary directory, two partitions),
/// per event. Commits are per group of batches, not per event, and FasterLog allocates in every commit; so this
/// benchmark commits between iterations (outside the measured region) and measures the per-event path alone.
/// <see cref="DurableAppendBenchmarks"/> measures the same with the background group commit and the wait for it.
/// </summary>
[BenchmarkCategory(Categories.Append)]
[InvocationCount(256)] // 256 batches per iteration: about 17 MB of log per partition, well inside its memory
public class AppendBenchmarks
{
    private const int Partitions = 2;
    private byte[] _protobuf = [];
    private IngestContext _context;
    private string _directory = "";
    private IEventLog _log = null!;

    [GlobalSetup]
    public void Setup()
    {
        var now = DateTimeOffset.UtcNow;
        _protobuf = Batch.Protobuf(Batch.Create(now));
        _context = new IngestContext(new IngestLimits(), (now.UtcTicks - DateTime.UnixEpoch.Ticks) * 100, Partitions);
        _directory = Path.Combine(Path.GetTempPath(), "alphamesh-bench-" + Guid.NewGuid().ToString("N"));
        // No background commit, and 128 MiB of log memory per partition.
        _log = AlphaMesh.Core.Internal.FasterEventLog.Open(
            new EventLogOptions { Directory = _directory, Partitions = Partitions, MemoryBytesPerPartition = 128L << 20 },
            backgroundCommit: false);
        // FasterLog allocates each page buffer of its memory ring the first time the tail reaches it: go round the
        // ring once here (about 195 MB per partition), so that the measured iterations only reuse pages.
        for (int i = 0; i < 3000; i++)
        {
            if (!TryParseAndAppend())
            {
                CommitBetweenIterations();
                i--;
            }
        }
        CommitBetweenIterations();
    }

    /// <summary>Commits what the iteration appended, so that the next one finds the log memory free.</summary>
    [IterationCleanup]
    public void CommitBetweenIterations() => _log.CommitAllAsync().AsTask().GetAwaiter().GetResult();

    [GlobalCleanup]
    public void Cleanup()
    {
        _log.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Directory.Delete(_directory, recursive: true);
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Batch.Events)]
    public void ParseAndAppend()
    {
        if (!TryParseAndAppend())
            throw new InvalidOperationException("The log ran out of memory within one iteration; lower the InvocationCount.");
    }

    /// <summary>False when a partition had no room (the caller commits); the batch may then be partly appended.</summary>
    private bool TryParseAndAppend()
    {
        var batch = EncodedBatch.Rent(Partitions);
        try
        {
            ProtobufBatchParser.TryParse(_protobuf, Batch.Tenant, _context, batch, out _);
            for (int p = 0; p < Partitions; p++)
            {
                if (batch.HasRecords(p) && !_log.GetPartition(p).TryAppend(batch.GetPartitionBatch(p), out _))
                    return false;
            }
            return true;
        }
        finally
        {
            batch.Return();
        }
    }
}

/// <summary>
/// Parse, append and wait for the group commit that makes the batch durable, as a reply does, with the
/// background commit loop of the server. The allocations here are FasterLog's per commit (one commit per
/// batch in this single-caller loop), so this benchmark is not in the 0-byte budget.
/// </summary>
[BenchmarkCategory(Categories.Append)]
public class DurableAppendBenchmarks
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

    [Benchmark(OperationsPerInvoke = Batch.Events)]
    public async ValueTask<int> ParseAppendCommit()
    {
        var batch = EncodedBatch.Rent(Partitions);
        try
        {
            ProtobufBatchParser.TryParse(_protobuf, Batch.Tenant, _context, batch, out _);
            for (int p = 0; p < Partitions; p++)
            {
                _ends[p] = -1;
                if (!batch.HasRecords(p))
                    continue;
                var partition = _log.GetPartition(p);
                long end;
                while (!partition.TryAppend(batch.GetPartitionBatch(p), out end))
                    await partition.WaitForRoomAsync().ConfigureAwait(false);
                _ends[p] = end;
            }
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
}
