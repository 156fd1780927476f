namespace AlphaMesh.Core;

/// <summary>
/// The durable, partitioned event log. Ingest appends encoded <see cref="EventRecord"/>s to the
/// partition their (tenant, customer) hashes to, and replies once a commit covers them; each
/// partition's aggregator reads its partition in order. Two implementations: FasterLog (embedded)
/// and Kafka (distributed). Nothing above this interface knows which one runs.
/// </summary>
public interface IEventLog : IAsyncDisposable
{
    int PartitionCount { get; }

    IPartitionLog GetPartition(int index);

    /// <summary>Commits every partition now and waits until the commits are durable (used on shutdown).</summary>
    ValueTask CommitAllAsync(CancellationToken cancellationToken = default);
}

/// <summary>
/// A set of encoded records appended as one contiguous unit. Implemented by a reusable object of the
/// caller, so that appending allocates nothing.
/// </summary>
public interface IRecordBatch
{
    int Count { get; }

    ReadOnlySpan<byte> GetRecord(int index);
}

/// <summary>One partition of the event log: one ordered sequence of records.</summary>
public interface IPartitionLog
{
    int Index { get; }

    /// <summary>
    /// Appends the records in order. The records are not durable until
    /// <see cref="WaitForCommitAsync"/> for <paramref name="endPosition"/> completes. Returns false,
    /// appending nothing, when the log has no room right now (its memory holds data not yet on disk);
    /// the caller then awaits <see cref="WaitForRoomAsync"/> and tries again.
    /// </summary>
    bool TryAppend(IRecordBatch batch, out long endPosition);

    /// <summary>Completes when every record before <paramref name="endPosition"/> is durable. The log
    /// group-commits on its own, at least every few milliseconds while there is uncommitted data.</summary>
    ValueTask WaitForCommitAsync(long endPosition, CancellationToken cancellationToken = default);

    /// <summary>Completes when <see cref="TryAppend"/> may succeed again.</summary>
    ValueTask WaitForRoomAsync(CancellationToken cancellationToken = default);

    /// <summary>Position of the first record still kept.</summary>
    long BeginPosition { get; }

    /// <summary>Every record before this position is durable.</summary>
    long CommittedPosition { get; }

    /// <summary>Opens a reader of committed records, starting at <paramref name="fromPosition"/>
    /// (use <see cref="BeginPosition"/> for all of them).</summary>
    IPartitionLogReader OpenReader(long fromPosition);

    /// <summary>Lets the log drop records before <paramref name="position"/> (once the aggregator's
    /// checkpoint no longer needs them).</summary>
    void TruncateBefore(long position);
}

/// <summary>Reads committed records of one partition, in order. Not thread-safe: one reader per consumer.</summary>
public interface IPartitionLogReader : IDisposable
{
    /// <summary>
    /// The next committed record, or false when there is none yet. <paramref name="record"/> stays
    /// valid until the next call. <paramref name="nextPosition"/> is where a reader resumes after it.
    /// False only once every record before the <see cref="IPartitionLog.CommittedPosition"/> read before
    /// the call has been returned: the aggregator counts them all as applied after an empty read.
    /// </summary>
    bool TryReadNext(out ReadOnlyMemory<byte> record, out long position, out long nextPosition);

    /// <summary>Waits until a record may be read; false when the log was closed.</summary>
    ValueTask<bool> WaitForRecordsAsync(CancellationToken cancellationToken = default);
}
