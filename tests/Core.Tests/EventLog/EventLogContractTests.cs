using System.Buffers.Binary;

namespace AlphaMesh.Core.Tests.EventLog;

/// <summary>
/// The behaviour every <see cref="IEventLog"/> implementation must have. Each implementation derives a test class
/// that opens its log on storage private to the test (and reopens the same storage on each call).
/// </summary>
public abstract class EventLogContractTests : IAsyncLifetime
{
    private readonly List<IEventLog> _opened = [];

    /// <summary>Opens the log on this test's storage with the given partition count.</summary>
    protected abstract IEventLog CreateLog(int partitions);

    protected IEventLog OpenLog(int partitions)
    {
        var log = CreateLog(partitions);
        _opened.Add(log);
        return log;
    }

    public virtual Task InitializeAsync() => Task.CompletedTask;

    public virtual async Task DisposeAsync()
    {
        foreach (var log in _opened)
            await log.DisposeAsync();
    }

    /// <summary>A record that says who wrote it: writer id, sequence number, then filler of varying length.</summary>
    protected static byte[] Record(int writer, int sequence)
    {
        var record = new byte[8 + ((writer * 7) + sequence) % 61];
        BinaryPrimitives.WriteInt32LittleEndian(record, writer);
        BinaryPrimitives.WriteInt32LittleEndian(record.AsSpan(4), sequence);
        for (int i = 8; i < record.Length; i++)
            record[i] = (byte)(sequence + i);
        return record;
    }

    protected static async Task<long> AppendAsync(IPartitionLog partition, IRecordBatch batch)
    {
        long end;
        while (!partition.TryAppend(batch, out end))
            await partition.WaitForRoomAsync();
        return end;
    }

    /// <summary>Reads every committed record from <paramref name="from"/> on, as (position, bytes).</summary>
    protected static List<(long Position, byte[] Bytes)> ReadAll(IPartitionLog partition, long from)
    {
        var records = new List<(long, byte[])>();
        using var reader = partition.OpenReader(from);
        while (reader.TryReadNext(out var record, out long position, out _))
            records.Add((position, record.ToArray()));
        return records;
    }

    [Fact]
    public async Task TryAppend_BatchesThenCommit_ReadBackInOrderWithExactBytes()
    {
        var log = OpenLog(2);
        var partition = log.GetPartition(1);
        var written = new List<byte[]>();
        long end = 0;
        for (int b = 0; b < 50; b++)
        {
            var batch = new TestBatch();
            for (int i = 0; i < 1 + (b % 7); i++)
            {
                var record = Record(b, i);
                written.Add(record);
                batch.Add(record);
            }
            end = await AppendAsync(partition, batch);
        }
        await partition.WaitForCommitAsync(end);

        Assert.True(partition.CommittedPosition >= end);
        var read = ReadAll(partition, partition.BeginPosition);
        Assert.Equal(written.Count, read.Count);
        for (int i = 0; i < written.Count; i++)
            Assert.Equal(written[i], read[i].Bytes);
        Assert.Empty(ReadAll(log.GetPartition(0), log.GetPartition(0).BeginPosition));
    }

    [Fact]
    public async Task WaitForCommitAsync_AfterAppend_CompletesWithPositionCommitted()
    {
        var log = OpenLog(1);
        var partition = log.GetPartition(0);

        Assert.True(partition.TryAppend(TestBatch.Of(Record(1, 1), Record(1, 2)), out long end));
        await partition.WaitForCommitAsync(end);

        Assert.True(partition.CommittedPosition >= end);
        // Already committed: completes at once.
        Assert.True(partition.WaitForCommitAsync(end).IsCompletedSuccessfully);
    }

    [Fact]
    public async Task TryReadNext_NextPosition_ResumesAfterTheRecord()
    {
        var log = OpenLog(1);
        var partition = log.GetPartition(0);
        long end = await AppendAsync(partition, TestBatch.Of(Record(1, 1), Record(1, 2), Record(1, 3)));
        await partition.WaitForCommitAsync(end);

        long resume;
        using (var reader = partition.OpenReader(partition.BeginPosition))
        {
            Assert.True(reader.TryReadNext(out var first, out _, out resume));
            Assert.Equal(Record(1, 1), first.ToArray());
        }
        var rest = ReadAll(partition, resume);

        Assert.Equal([Record(1, 2), Record(1, 3)], rest.Select(r => r.Bytes));
    }

    [Fact]
    public async Task WaitForRecordsAsync_RecordCommittedLater_ReturnsTrueAndRecordIsRead()
    {
        var log = OpenLog(1);
        var partition = log.GetPartition(0);
        using var reader = partition.OpenReader(partition.BeginPosition);
        Assert.False(reader.TryReadNext(out _, out _, out _));

        var waiting = reader.WaitForRecordsAsync().AsTask();
        long end = await AppendAsync(partition, TestBatch.Of(Record(3, 3)));
        await partition.WaitForCommitAsync(end);

        Assert.True(await waiting);
        Assert.True(reader.TryReadNext(out var record, out _, out _));
        Assert.Equal(Record(3, 3), record.ToArray());
    }

    [Fact]
    public async Task WaitForRecordsAsync_LogDisposed_ReturnsFalse()
    {
        var log = OpenLog(1);
        var reader = log.GetPartition(0).OpenReader(0);
        Assert.False(reader.TryReadNext(out _, out _, out _));
        var waiting = reader.WaitForRecordsAsync().AsTask();

        await log.DisposeAsync();

        Assert.False(await waiting);
        reader.Dispose();
    }

    [Fact]
    public async Task TryAppend_ConcurrentWriters_EveryRecordReadOnceInEachWritersOrder()
    {
        const int writers = 4, perWriter = 20_000, partitions = 2;
        var log = OpenLog(partitions);

        var tasks = Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
        {
            var partition = log.GetPartition(w % partitions);
            var batch = new TestBatch();
            int sequence = 0;
            while (sequence < perWriter)
            {
                batch.Clear();
                int size = Math.Min(1 + (sequence % 13), perWriter - sequence);
                for (int i = 0; i < size; i++)
                    batch.Add(Record(w, sequence++));
                long end = await AppendAsync(partition, batch);
                if (sequence % 1000 < size)
                    await partition.WaitForCommitAsync(end);
            }
        })).ToArray();
        await Task.WhenAll(tasks);
        await log.CommitAllAsync();

        var next = new int[writers];
        for (int p = 0; p < partitions; p++)
        {
            var partition = log.GetPartition(p);
            foreach (var (_, bytes) in ReadAll(partition, partition.BeginPosition))
            {
                int writer = BinaryPrimitives.ReadInt32LittleEndian(bytes);
                int sequence = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(4));
                Assert.Equal(p, writer % partitions);
                Assert.Equal(next[writer], sequence); // exactly once, in the writer's order
                Assert.Equal(Record(writer, sequence), bytes);
                next[writer]++;
            }
        }
        Assert.All(next, count => Assert.Equal(perWriter, count));
    }

    [Fact]
    public async Task DisposeAsync_ThenReopen_KeepsRecordsAndAppendsContinue()
    {
        var log = OpenLog(2);
        var partition = log.GetPartition(1);
        await AppendAsync(partition, TestBatch.Of(Record(1, 0), Record(1, 1)));
        await log.DisposeAsync();
        await log.DisposeAsync(); // twice is safe

        var reopened = OpenLog(2);
        var again = reopened.GetPartition(1);
        Assert.Equal([Record(1, 0), Record(1, 1)], ReadAll(again, again.BeginPosition).Select(r => r.Bytes));
        long end = await AppendAsync(again, TestBatch.Of(Record(1, 2)));
        await again.WaitForCommitAsync(end);
        await reopened.DisposeAsync();

        var third = OpenLog(2).GetPartition(1);
        Assert.Equal([Record(1, 0), Record(1, 1), Record(1, 2)], ReadAll(third, third.BeginPosition).Select(r => r.Bytes));
    }

    [Fact]
    public async Task Open_DifferentPartitionCount_ThrowsNamingBothCounts()
    {
        await OpenLog(3).DisposeAsync();

        var error = Assert.Throws<InvalidOperationException>(() => OpenLog(5));

        Assert.Contains("3", error.Message, StringComparison.Ordinal);
        Assert.Contains("5", error.Message, StringComparison.Ordinal);
        Assert.Equal(3, OpenLog(3).PartitionCount);
    }

    [Fact]
    public async Task TruncateBefore_Position_KeepsEveryRecordFromThePosition()
    {
        var log = OpenLog(1);
        var partition = log.GetPartition(0);
        var ends = new List<long>();
        for (int i = 0; i < 2000; i++)
            ends.Add(await AppendAsync(partition, TestBatch.Of(Record(0, i))));
        await partition.WaitForCommitAsync(ends[^1]);
        long cut = ends[1499]; // the position of record 1500

        partition.TruncateBefore(cut);

        Assert.True(partition.BeginPosition <= cut);
        var kept = ReadAll(partition, partition.BeginPosition);
        Assert.Equal(Record(0, 1999), kept[^1].Bytes);
        int firstKept = BinaryPrimitives.ReadInt32LittleEndian(kept[0].Bytes.AsSpan(4));
        Assert.True(firstKept <= 1500);
        Assert.Equal(2000 - firstKept, kept.Count);
    }

    [Fact]
    public async Task TryReadNext_WhileWritersCommit_FalseOnlyOnceEveryRecordCommittedBeforeTheCallIsRead()
    {
        var log = OpenLog(1);
        await AssertEmptyReadsAreNeverEarlyAsync(log.GetPartition(0));
    }

    /// <summary>
    /// What the aggregator relies on to answer "every acknowledged event is applied": when
    /// <see cref="IPartitionLogReader.TryReadNext"/> returns false, every record before the
    /// <see cref="IPartitionLog.CommittedPosition"/> read before the call has been returned. Writers append small
    /// batches of varying size and wait for each commit (so commits, page ends and their padding come often) while
    /// one reader drains the partition the way the aggregator does. Each drain is held against an oracle: the records
    /// acknowledged before it, and afterwards, the positions of all records (none may start between where the drain
    /// stopped and the committed position read before it).
    /// </summary>
    protected static async Task AssertEmptyReadsAreNeverEarlyAsync(IPartitionLog partition, int writers = 4, int perWriter = 4_000)
    {
        long acknowledged = 0;
        var writing = Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
        {
            var random = new Random(w);
            var batch = new TestBatch();
            int sequence = 0;
            while (sequence < perWriter)
            {
                batch.Clear();
                int size = Math.Min(random.Next(1, 9), perWriter - sequence);
                for (int i = 0; i < size; i++)
                    batch.Add(Record(w, sequence++));
                long end = await AppendAsync(partition, batch);
                await partition.WaitForCommitAsync(end);
                Interlocked.Add(ref acknowledged, size);
            }
        })));

        var stops = new List<(long Next, long Committed)>();
        long read = 0, next = partition.BeginPosition;
        using (var reader = partition.OpenReader(partition.BeginPosition))
        {
            bool last;
            do
            {
                last = writing.IsCompleted;
                long acknowledgedBefore = Volatile.Read(ref acknowledged);
                long committed = partition.CommittedPosition;
                while (reader.TryReadNext(out _, out _, out long recordNext))
                {
                    read++;
                    next = recordNext;
                }
                Assert.True(read >= acknowledgedBefore,
                    $"The reader found nothing more after {read} records, but {acknowledgedBefore} were acknowledged before it started (committed position {committed}, reader at {next}).");
                stops.Add((next, committed));
                // Either wait for the next commit or go round at once, so that drains start at every point of a commit.
                if (!last && stops.Count % 2 == 0)
                    await Task.WhenAny(reader.WaitForRecordsAsync().AsTask(), writing);
                else
                    await Task.Yield();
            }
            while (!last);
        }
        await writing;

        Assert.Equal((long)writers * perWriter, read);
        var positions = ReadAll(partition, partition.BeginPosition).Select(r => r.Position).ToArray();
        Assert.Equal(read, positions.Length);
        foreach (var (stop, committed) in stops)
        {
            // The first record at or after where the drain stopped must not start below the committed position.
            int index = Array.BinarySearch(positions, stop);
            if (index < 0)
                index = ~index;
            Assert.True(index == positions.Length || positions[index] >= committed,
                $"A drain stopped at {stop} although the record at {(index < positions.Length ? positions[index] : -1)} was committed (committed position {committed} read before the drain).");
        }
    }

    [Fact]
    public async Task CommitAllAsync_NothingAppended_Completes()
    {
        var log = OpenLog(2);
        await log.CommitAllAsync();
        long end = await AppendAsync(log.GetPartition(0), TestBatch.Of(Record(0, 0)));
        await log.CommitAllAsync();
        Assert.True(log.GetPartition(0).CommittedPosition >= end);
    }
}
