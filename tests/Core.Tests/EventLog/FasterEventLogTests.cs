using AlphaMesh.Core.Internal;

namespace AlphaMesh.Core.Tests.EventLog;

/// <summary>The contract on FasterLog, plus what only the embedded log has: files, manifest, crash tails.</summary>
public sealed class FasterEventLogTests : EventLogContractTests
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "alphamesh-log-tests", Guid.NewGuid().ToString("N"));

    private EventLogOptions Options(int partitions, int pageSizeBytes = 16 << 10, long memoryBytes = 128 << 10) => new()
    {
        Directory = _directory,
        Partitions = partitions,
        // Small pages and memory, so that the tests cross pages and segments and run into a full log.
        PageSizeBytes = pageSizeBytes,
        MemoryBytesPerPartition = memoryBytes,
        SegmentSizeBytes = 256 << 10,
    };

    protected override IEventLog CreateLog(int partitions) => EventLogFactory.OpenFasterLog(Options(partitions));

    /// <summary>A log without the background commit: nothing is durable until CommitAllAsync.</summary>
    private FasterEventLog OpenManualCommitLog(int partitions)
    {
        var log = FasterEventLog.Open(Options(partitions), backgroundCommit: false);
        TrackForDispose(log);
        return log;
    }

    private readonly List<IEventLog> _manual = [];

    private void TrackForDispose(IEventLog log) => _manual.Add(log);

    public override async Task DisposeAsync()
    {
        foreach (var log in _manual)
            await log.DisposeAsync();
        await base.DisposeAsync();
        if (Directory.Exists(_directory))
            Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public void Open_NewDirectory_WritesManifestWithPartitionCount()
    {
        OpenLog(3);

        string manifest = File.ReadAllText(Path.Combine(_directory, LogManifest.FileName));
        Assert.Contains("partitions=3", manifest, StringComparison.Ordinal);
        Assert.Contains("format=2", manifest, StringComparison.Ordinal);
        Assert.True(Directory.Exists(Path.Combine(_directory, "p2")));
    }

    [Fact]
    public async Task Open_PartitionsNotConfigured_UsesTheExistingCount()
    {
        await OpenLog(3).DisposeAsync();

        var log = EventLogFactory.OpenFasterLog(Options(0));
        TrackForDispose(log);

        Assert.Equal(3, log.PartitionCount);
    }

    [Fact]
    public void Open_NewDirectoryWithoutSegmentSize_RecordsTheDefault()
    {
        var options = Options(1);
        options.SegmentSizeBytes = null;

        TrackForDispose(EventLogFactory.OpenFasterLog(options));

        Assert.Contains($"segmentBytes={EventLogOptions.DefaultSegmentSizeBytes}", ReadManifest(), StringComparison.Ordinal);
        Assert.Equal(256L << 20, EventLogOptions.DefaultSegmentSizeBytes);
    }

    [Fact]
    public async Task Open_ExistingLogWithoutSegmentSizeSetting_UsesItsOwnAcrossSegments()
    {
        // 64 KiB segments recorded; reopened with no setting, the log must read every record in every segment back.
        var options = Options(1);
        options.SegmentSizeBytes = 64 << 10;
        var log = EventLogFactory.OpenFasterLog(options);
        var ends = new List<long>();
        for (int i = 0; i < 3000; i++)
            ends.Add(await AppendAsync(log.GetPartition(0), TestBatch.Of(Record(0, i))));
        await log.GetPartition(0).WaitForCommitAsync(ends[^1]);
        await log.DisposeAsync();
        Assert.True(Directory.GetFiles(Path.Combine(_directory, "p0"), "log.*").Length >= 3, "the records span several segments");

        options.SegmentSizeBytes = null;
        var reopened = EventLogFactory.OpenFasterLog(options);
        TrackForDispose(reopened);

        var read = ReadAll(reopened.GetPartition(0), reopened.GetPartition(0).BeginPosition);
        Assert.Equal(Enumerable.Range(0, 3000).Select(i => Record(0, i)), read.Select(r => r.Bytes));
        Assert.Contains("segmentBytes=65536", ReadManifest(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Open_ExistingLogWithAnotherSegmentSizeConfigured_ThrowsNamingBoth()
    {
        var options = Options(1);
        options.SegmentSizeBytes = 64 << 10;
        await EventLogFactory.OpenFasterLog(options).DisposeAsync();

        options.SegmentSizeBytes = 128 << 10;
        var error = Assert.Throws<InvalidOperationException>(() => EventLogFactory.OpenFasterLog(options));

        Assert.Contains("segments of 65536 bytes", error.Message, StringComparison.Ordinal);
        Assert.Contains("EventLog.SegmentSizeBytes is 131072", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null, 1L << 30)] // the default of the versions that wrote such manifests
    [InlineData(256L << 10, 256L << 10)] // the size that was configured then, and still is
    public async Task Open_ManifestWithoutSegmentSize_CompletesItWithTheSizeTheLogWasMadeWith(long? configured, long expected)
    {
        await OpenLog(1).DisposeAsync();
        string path = Path.Combine(_directory, LogManifest.FileName);
        File.WriteAllLines(path, File.ReadAllLines(path).Where(line => !line.StartsWith("segmentBytes=", StringComparison.Ordinal)));
        var options = Options(1);
        options.SegmentSizeBytes = configured;

        TrackForDispose(EventLogFactory.OpenFasterLog(options));

        Assert.Contains($"segmentBytes={expected}", ReadManifest(), StringComparison.Ordinal);
        Assert.Contains("partitions=1", ReadManifest(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Open_DamagedSegmentSizeInManifest_ThrowsNamingTheValue()
    {
        await OpenLog(1).DisposeAsync();
        string path = Path.Combine(_directory, LogManifest.FileName);
        File.WriteAllText(path, File.ReadAllText(path).Replace("segmentBytes=262144", "segmentBytes=lots", StringComparison.Ordinal));

        var error = Assert.Throws<InvalidOperationException>(() => EventLogFactory.OpenFasterLog(Options(1)));

        Assert.Contains("segmentBytes 'lots'", error.Message, StringComparison.Ordinal);
    }

    private string ReadManifest() => File.ReadAllText(Path.Combine(_directory, LogManifest.FileName));

    [Theory]
    [InlineData(3000, 1 << 20, 1 << 20)]
    [InlineData(4096, 3 << 20, 1 << 20)]
    [InlineData(4096, 1 << 20, 5000)]
    [InlineData(4096, 4096, 1 << 20)]
    [InlineData(1024, 1 << 20, 1 << 20)]
    public void Open_InvalidSizes_ThrowsArgumentException(int page, long memory, long segment)
    {
        var options = Options(1);
        options.PageSizeBytes = page;
        options.MemoryBytesPerPartition = memory;
        options.SegmentSizeBytes = segment;

        Assert.Throws<ArgumentException>(() => EventLogFactory.OpenFasterLog(options));
    }

    [Fact]
    public void TryAppend_BatchLargerThanAPage_ThrowsArgumentException()
    {
        var partition = OpenLog(1).GetPartition(0);
        var batch = new TestBatch();
        for (int i = 0; i < 20; i++)
            batch.Add(new byte[1000]);

        Assert.Throws<ArgumentException>(() => partition.TryAppend(batch, out _));
    }

    [Fact]
    public void TryAppend_EmptyRecord_ThrowsArgumentException()
    {
        var partition = OpenLog(1).GetPartition(0);

        Assert.Throws<ArgumentException>(() => partition.TryAppend(new TestBatch().Add([]), out _));
    }

    [Fact]
    public async Task TryReadNext_SmallestPagesWhileWritersCommit_FalseOnlyOnceEveryRecordCommittedBeforeTheCallIsRead()
    {
        // 4 KiB pages, two in memory: a page ends (with padding) every few commits, and a reader that falls two pages
        // behind reads from the files through the scan iterator's own frame instead of the log's memory.
        await using var log = EventLogFactory.OpenFasterLog(Options(1, pageSizeBytes: 4 << 10, memoryBytes: 8 << 10));
        await AssertEmptyReadsAreNeverEarlyAsync(log.GetPartition(0));
    }

    [Fact]
    public async Task TryReadNext_UncommittedRecords_AreNotVisibleUntilCommitted()
    {
        var log = OpenManualCommitLog(1);
        var partition = log.GetPartition(0);
        Assert.True(partition.TryAppend(TestBatch.Of(Record(0, 0)), out long first));
        await log.CommitAllAsync();
        Assert.True(partition.TryAppend(TestBatch.Of(Record(0, 1), Record(0, 2)), out long end));
        using var reader = partition.OpenReader(partition.BeginPosition);

        Assert.True(reader.TryReadNext(out var record, out _, out _));
        Assert.Equal(Record(0, 0), record.ToArray());
        Assert.False(reader.TryReadNext(out _, out _, out _));
        Assert.False(partition.WaitForCommitAsync(end).IsCompleted);
        Assert.Equal(first, partition.CommittedPosition);

        await log.CommitAllAsync();

        Assert.True(await reader.WaitForRecordsAsync());
        Assert.True(reader.TryReadNext(out record, out _, out _));
        Assert.Equal(Record(0, 1), record.ToArray());
        Assert.True(reader.TryReadNext(out record, out _, out _));
        Assert.Equal(Record(0, 2), record.ToArray());
        Assert.True(partition.WaitForCommitAsync(end).IsCompletedSuccessfully);
    }

    [Fact]
    public async Task TryAppendAndTryReadNext_Warm_AllocateNothingPerCall()
    {
        var log = OpenManualCommitLog(1);
        var partition = log.GetPartition(0);
        var batch = TestBatch.Of(Record(0, 1), Record(0, 2), Record(0, 3));
        // Warm up: FasterLog allocates each page of its memory ring the first time it is used, so go round it.
        for (int i = 0; i < 4000; i++)
        {
            if (!partition.TryAppend(batch, out _))
            {
                await log.CommitAllAsync();
                i--;
            }
        }
        await log.CommitAllAsync();
        using var reader = partition.OpenReader(partition.CommittedPosition);

        long before = GC.GetAllocatedBytesForCurrentThread();
        int appended = 0;
        for (int i = 0; i < 300; i++)
            appended += partition.TryAppend(batch, out _) ? 1 : 0;
        long appendAllocated = GC.GetAllocatedBytesForCurrentThread() - before;
        await log.CommitAllAsync();
        Assert.True(reader.TryReadNext(out _, out _, out _)); // warm: the reader's buffer
        before = GC.GetAllocatedBytesForCurrentThread();
        int read = 0;
        while (reader.TryReadNext(out _, out _, out _))
            read++;
        long readAllocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(300, appended);
        Assert.Equal(899, read);
        // Reading records still in memory allocates nothing. Appending allocates nothing per call; FasterLog
        // allocates a few hundred bytes when the tail moves to a new page (epoch actions, flush callbacks),
        // which this bound allows (a few pages here; far fewer with production page sizes).
        Assert.Equal(0, readAllocated);
        Assert.True(appendAllocated < 300 * 8, $"{appendAllocated} bytes for 300 appends");
    }

    [Fact]
    public async Task TruncateBefore_LaterPage_MovesBeginAndSurvivesReopen()
    {
        var log = OpenLog(1);
        var partition = log.GetPartition(0);
        var ends = new List<long>();
        for (int i = 0; i < 4000; i++)
            ends.Add(await AppendAsync(partition, TestBatch.Of(Record(0, i))));
        await partition.WaitForCommitAsync(ends[^1]);
        long begin = partition.BeginPosition;

        partition.TruncateBefore(ends[2999]);
        await log.CommitAllAsync();
        long truncatedBegin = partition.BeginPosition;
        await log.DisposeAsync();

        Assert.True(truncatedBegin > begin);
        Assert.True(truncatedBegin <= ends[2999]);
        var reopened = OpenLog(1).GetPartition(0);
        Assert.Equal(truncatedBegin, reopened.BeginPosition);
        var kept = ReadAll(reopened, reopened.BeginPosition);
        Assert.Equal(Record(0, 3999), kept[^1].Bytes);
        Assert.True(kept.Count >= 1000);
        Assert.True(kept.Count < 4000);
    }

    [Fact]
    public async Task TruncateBefore_WholeSegments_ReopensAtTheNewBeginWithEveryLaterRecord()
    {
        var log = OpenLog(1);
        var partition = log.GetPartition(0);
        var ends = new List<long>();
        var record = new byte[1000];
        for (int i = 0; i < 1200; i++)
        {
            BitConverter.TryWriteBytes(record, i);
            ends.Add(await AppendAsync(partition, TestBatch.Of((byte[])record.Clone())));
        }
        await partition.WaitForCommitAsync(ends[^1]);
        string directory = Path.Combine(_directory, "p0");
        Assert.True(Directory.EnumerateFiles(directory, "log.*").Count() >= 4);

        // Past the third segment (256 KiB each).
        int cut = ends.FindIndex(end => end > (3 * (256 << 10)) + 1000);
        partition.TruncateBefore(ends[cut]);
        await log.CommitAllAsync();
        long begin = partition.BeginPosition;
        await log.DisposeAsync();

        // FASTER removes the segment files later, on its own task (BackgroundRemovalDeviceTests cover the removal).
        var reopened = OpenLog(1).GetPartition(0);
        Assert.Equal(begin, reopened.BeginPosition);
        var kept = ReadAll(reopened, reopened.BeginPosition).Select(r => BitConverter.ToInt32(r.Bytes)).ToList();
        Assert.Equal(Enumerable.Range(kept[0], 1200 - kept[0]), kept);
        Assert.True(kept[0] <= cut + 1 && kept[0] > 0, $"first kept {kept[0]}, cut at {cut}");
    }

    [Fact]
    public async Task Reopen_GarbageAfterCommittedTail_ReadsOnlyCommittedRecordsAndAppends()
    {
        var committed = await WriteCommittedThenCrashAsync(uncommittedRecords: 5);
        string segment = Path.Combine(_directory, "p0", "log.0");
        long tail = committed.Position;
        // A crash tail: random bytes where the next (never committed) entries would be.
        var garbage = new byte[6000];
        new Random(42).NextBytes(garbage);
        using (var file = new FileStream(segment, FileMode.Open, FileAccess.Write))
        {
            file.Position = tail;
            file.Write(garbage);
        }

        await AssertRecoversAsync(committed.Records);
    }

    [Fact]
    public async Task Reopen_SegmentCutInsideUncommittedRecord_ReadsOnlyCommittedRecordsAndAppends()
    {
        // Enough uncommitted data to fill pages, which FasterLog flushes to the segment file without a commit.
        var committed = await WriteCommittedThenCrashAsync(uncommittedRecords: 2000);
        string segment = Path.Combine(_directory, "p0", "log.0");
        long length = new FileInfo(segment).Length;
        Assert.True(length > committed.Position + 1000, $"uncommitted pages were not flushed (file {length}, committed {committed.Position})");
        // Cut the file inside an uncommitted record, as a crash during a page write would.
        long cut = committed.UncommittedStarts.Last(start => start + 40 < length) + 7;
        using (var file = new FileStream(segment, FileMode.Open, FileAccess.Write))
            file.SetLength(cut);

        await AssertRecoversAsync(committed.Records);
    }

    private sealed record CrashState(List<byte[]> Records, long Position, List<long> UncommittedStarts);

    /// <summary>Writes 100 committed records, then more without a commit, then drops the log as a crash would.</summary>
    private async Task<CrashState> WriteCommittedThenCrashAsync(int uncommittedRecords)
    {
        var log = OpenManualCommitLog(1);
        var partition = log.GetPartition(0);
        var records = new List<byte[]>();
        for (int i = 0; i < 100; i++)
        {
            records.Add(Record(0, i));
            Assert.True(partition.TryAppend(TestBatch.Of(records[^1]), out _));
        }
        await log.CommitAllAsync();
        long position = partition.CommittedPosition;

        var starts = new List<long>();
        for (int i = 0; i < uncommittedRecords; i++)
        {
            var record = Record(1, i);
            long end;
            while (!partition.TryAppend(TestBatch.Of(record), out end))
                await Task.Yield(); // full: FasterLog is flushing a page (no commit runs here)
            starts.Add(end - (12 + ((record.Length + 3) & ~3))); // entry = 12-byte header + length rounded to 4
        }
        Assert.Equal(position, partition.CommittedPosition);
        log.GetFasterPartition(0).SimulateCrash();
        return new CrashState(records, position, starts);
    }

    private async Task AssertRecoversAsync(List<byte[]> committed)
    {
        var log = OpenLog(1);
        var partition = log.GetPartition(0);
        Assert.Equal(committed, ReadAll(partition, partition.BeginPosition).Select(r => r.Bytes));

        long end = await AppendAsync(partition, TestBatch.Of(Record(2, 0), Record(2, 1)));
        await partition.WaitForCommitAsync(end);
        await log.DisposeAsync();

        var reopened = OpenLog(1).GetPartition(0);
        Assert.Equal([.. committed, Record(2, 0), Record(2, 1)], ReadAll(reopened, reopened.BeginPosition).Select(r => r.Bytes));
    }
}
