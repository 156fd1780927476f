using System.Diagnostics;
using FASTER.core;

namespace AlphaMesh.Core.Internal;

/// <summary>
/// One partition on one FasterLog, with its group-commit loop.
/// <para>
/// Durability: on Linux FASTER's default device is <see cref="ManagedLocalStorageDevice"/>, which opens its
/// segment files with <see cref="FileOptions.WriteThrough"/>, i.e. O_SYNC: each write returns only once the
/// data and the file metadata are on stable storage (the kernel also flushes the drive's write cache). The
/// commit records go to <see cref="SlotFileCommitManager"/>: one preallocated file, written in place and
/// flushed with fdatasync before the commit returns. FasterLog writes the
/// commit record only after the data it covers is written, and advances <c>CommittedUntilAddress</c> only
/// after the commit record is written, so a completed commit survives kill -9 and power loss. (Checked with
/// strace: pwrite64 on O_SYNC descriptors, data before commit record, no write after the commit returns.)
/// File creations are journaled with the O_SYNC write that follows them on ext4/xfs; the directories this
/// code creates itself are flushed with <see cref="DirectorySync"/>.
/// </para>
/// </summary>
internal sealed class FasterPartitionLog : IPartitionLog, IAsyncDisposable
{
    private const int Open_ = 0, Closing = 1, Closed = 2;

    private readonly FasterLog _log;
    private readonly BackgroundRemovalDevice _device;
    private readonly SlotFileCommitManager _commits;
    private readonly TimeSpan _commitInterval;
    private readonly int _pageSize;
    private readonly int _headerSize;
    private readonly SemaphoreSlim _wakeUp = new(0);
    private readonly List<FasterPartitionLogReader> _readers = [];
    private readonly Task _commitLoop;

    /// <summary>Completed by the first commit-loop round that starts after it was installed; waiters take the
    /// current one, so that there is one completion per commit, not one per waiter.</summary>
    private TaskCompletionSource _nextCommit = NewCompletion();
    private int _state;
    private int _idle;
    private int _appending;

    private FasterPartitionLog(int index, FasterLog log, BackgroundRemovalDevice device, SlotFileCommitManager commits, PartitionSettings settings, bool backgroundCommit)
    {
        Index = index;
        _log = log;
        _device = device;
        _commits = commits;
        _commitInterval = settings.CommitInterval;
        _pageSize = 1 << settings.PageSizeBits;
        _headerSize = log.HeaderSize;
        _commitLoop = backgroundCommit ? Task.Run(CommitLoopAsync) : Task.CompletedTask;
    }

    public int Index { get; }

    public long BeginPosition => _log.BeginAddress;

    public long CommittedPosition => Volatile.Read(ref _log.CommittedUntilAddress);

    internal bool IsClosed => Volatile.Read(ref _state) == Closed;

    /// <summary>The completion of the next commit round (for readers waiting for new records).</summary>
    internal Task NextCommit => Volatile.Read(ref _nextCommit).Task;

    public static FasterPartitionLog Open(int index, string directory, PartitionSettings settings, bool backgroundCommit)
    {
        bool existed = Directory.Exists(directory);
        Directory.CreateDirectory(directory);
        if (!existed)
            DirectorySync.Flush(Path.GetDirectoryName(directory)!);

        // The device learns which segment files exist, so that truncation deletes the right ones, and unlinks them
        // off the commit path.
        var device = BackgroundRemovalDevice.Open(Path.Combine(directory, "log"));
        var commits = new SlotFileCommitManager(directory);
        FasterLog? log = null;
        try
        {
            log = new FasterLog(settings.ToFasterLogSettings(device, commits));
            if (commits.HasCommits)
                log.Recover(); // to the last commit; anything after it (torn or uncommitted) is overwritten by new appends
            return new FasterPartitionLog(index, log, device, commits, settings, backgroundCommit);
        }
        catch
        {
            log?.Dispose();
            commits.Dispose();
            device.Dispose();
            throw;
        }
    }

    public bool TryAppend(IRecordBatch batch, out long endPosition)
    {
        ArgumentNullException.ThrowIfNull(batch);
        int length = AllocatedLength(batch);
        if (length == 0)
        {
            endPosition = _log.TailAddress;
            return true;
        }

        // The counter lets DisposeAsync wait for appends in flight before it frees the log's memory.
        Interlocked.Increment(ref _appending);
        try
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _state) != Open_, this);
            var adapter = RecordBatchAdapter.Rent(batch);
            bool appended;
            long address;
            try
            {
                appended = _log.TryEnqueue(adapter, out address);
            }
            finally
            {
                adapter.Return();
            }
            if (!appended)
            {
                endPosition = 0;
                WakeCommitLoop(); // a commit flushes the memory, which makes room
                return false;
            }
            // The batch is contiguous: its end is its start plus the space of its entries.
            endPosition = address + length;
        }
        finally
        {
            Interlocked.Decrement(ref _appending);
        }
        WakeCommitLoop();
        return true;
    }

    /// <summary>The log space of the batch: each entry is a header plus its length rounded up to 4 bytes.</summary>
    private int AllocatedLength(IRecordBatch batch)
    {
        long total = 0;
        int count = batch.Count;
        for (int i = 0; i < count; i++)
        {
            int length = batch.GetRecord(i).Length;
            // FasterLog reads a zero length as the padding at the end of a page.
            if (length == 0)
                throw new ArgumentException($"Record {i} of the batch is empty; the log cannot store empty records.", nameof(batch));
            total += _headerSize + _log.UnsafeAlign(length);
        }
        if (total > _pageSize)
            throw new ArgumentException(
                $"The batch needs {total} bytes of log space, more than one log page ({_pageSize} bytes); a batch is appended atomically, so it must fit on one page. Split the batch or raise EventLog.PageSizeBytes.",
                nameof(batch));
        return (int)total;
    }

    public ValueTask WaitForCommitAsync(long endPosition, CancellationToken cancellationToken = default)
    {
        // Read the completion before checking the address: the round that completes it snapshots the tail
        // after taking it, so the commit of that round covers every append that finished before this call.
        var next = Volatile.Read(ref _nextCommit);
        if (CommittedPosition >= endPosition)
            return default;
        if (Volatile.Read(ref _state) == Closed)
            return ValueTask.FromException(new ObjectDisposedException(nameof(FasterPartitionLog), "The event log was closed before this position was committed."));
        if (cancellationToken.IsCancellationRequested)
            return ValueTask.FromCanceled(cancellationToken);
        // WaitAsync allocates only when the caller can cancel; the shared completion is per commit.
        return new ValueTask(cancellationToken.CanBeCanceled ? next.Task.WaitAsync(cancellationToken) : next.Task);
    }

    public ValueTask WaitForRoomAsync(CancellationToken cancellationToken = default)
    {
        var next = Volatile.Read(ref _nextCommit);
        if (!HasWork())
        {
            // Everything is flushed: FasterLog frees the flushed pages on its next allocation, so try again
            // soon (this path is rare; a full log almost always holds unflushed data).
            return new ValueTask(Task.Delay(1, cancellationToken));
        }
        WakeCommitLoop();
        return new ValueTask(cancellationToken.CanBeCanceled ? next.Task.WaitAsync(cancellationToken) : next.Task);
    }

    public IPartitionLogReader OpenReader(long fromPosition)
    {
        lock (_readers)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _state) != Open_, this);
            if (fromPosition < BeginPosition)
                fromPosition = BeginPosition;
            // scanUncommitted: false bounds the scan by CommittedUntilAddress, so a reader never sees uncommitted data.
            var iterator = _log.Scan(fromPosition, long.MaxValue, name: null, recover: false, scanUncommitted: false);
            var reader = new FasterPartitionLogReader(this, iterator);
            _readers.Add(reader);
            return reader;
        }
    }

    internal void RemoveReader(FasterPartitionLogReader reader)
    {
        lock (_readers)
            _readers.Remove(reader);
    }

    public void TruncateBefore(long position)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _state) != Open_, this);
        position = Math.Min(position, CommittedPosition);
        if (position <= BeginPosition)
            return;
        // FASTER frees whole pages (and deletes whole segments): truncate to the start of the page that
        // holds the position, which keeps every record at or after it, and BeginPosition on a record boundary.
        _log.TruncateUntilPageStart(position);
        // The new begin is persisted by the next commit.
        WakeCommitLoop();
    }

    /// <summary>Commits everything appended so far and waits for it (does nothing when all is committed).</summary>
    internal ValueTask CommitNowAsync(CancellationToken cancellationToken)
    {
        if (_commitLoop.IsCompleted && Volatile.Read(ref _state) == Open_)
            return new ValueTask(CommitRoundAsync()); // no background loop (tests)
        var next = Volatile.Read(ref _nextCommit);
        if (!HasWork())
            return default;
        WakeCommitLoop();
        return new ValueTask(next.Task.WaitAsync(cancellationToken));
    }

    private bool HasWork()
        => _log.TailAddress > CommittedPosition || _log.BeginAddress > Volatile.Read(ref _log.CommittedBeginAddress);

    private void WakeCommitLoop()
    {
        // Cheap read first: under load the loop is busy and appends skip the interlocked operation.
        if (Volatile.Read(ref _idle) != 0 && Interlocked.Exchange(ref _idle, 0) != 0)
            _wakeUp.Release();
    }

    private async Task CommitLoopAsync()
    {
        while (true)
        {
            bool closing = Volatile.Read(ref _state) != Open_;
            long started = Stopwatch.GetTimestamp();
            bool committed;
            try
            {
                committed = await CommitRoundAsync().ConfigureAwait(false);
            }
            catch (Exception)
            {
                // The waiters of this round got the exception; do not spin on a failing disk.
                await Task.Delay(10).ConfigureAwait(false);
                continue;
            }

            if (committed)
            {
                // Group commit: the next round takes everything appended meanwhile. Commits start at least
                // CommitInterval apart; shorter waits are skipped, because timers resolve about 1 ms and the
                // I/O time of a commit already batches the appends.
                var remaining = _commitInterval - Stopwatch.GetElapsedTime(started);
                if (remaining >= TimeSpan.FromMilliseconds(1) && !closing)
                    await Task.Delay(remaining).ConfigureAwait(false);
                continue;
            }
            if (closing)
                return; // the round after closing found nothing left: the final commit is done

            // Idle: sleep until an append (or close) wakes the loop. The flag is set before the tail is checked
            // again, and appends move the tail before they read the flag, so no wake-up is lost.
            Interlocked.Exchange(ref _idle, 1);
            if (!HasWork() && Volatile.Read(ref _state) == Open_)
                await _wakeUp.WaitAsync().ConfigureAwait(false);
            Interlocked.Exchange(ref _idle, 0);
        }
    }

    /// <summary>One round: commit up to the tail if there is anything new, then complete the round's waiters.
    /// Returns whether a commit was made.</summary>
    private async Task<bool> CommitRoundAsync()
    {
        var round = Interlocked.Exchange(ref _nextCommit, NewCompletion());
        try
        {
            bool committed = false;
            // The tail is read after the exchange, so it includes every append whose waiter holds `round`.
            long target = _log.TailAddress;
            if (HasWork())
            {
                do
                {
                    await _log.CommitAsync().ConfigureAwait(false);
                }
                while (CommittedPosition < target);
                committed = true;
            }
            round.TrySetResult();
            return committed;
        }
        catch (Exception e)
        {
            round.TrySetException(e);
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.CompareExchange(ref _state, Closing, Open_) != Open_)
            return;
        // Let appends in flight finish; new ones see Closing and throw.
        var spin = new SpinWait();
        while (Volatile.Read(ref _appending) != 0)
            spin.SpinOnce();

        if (_commitLoop.IsCompleted)
        {
            await CommitRoundAsync().ConfigureAwait(false); // no background loop: commit here
        }
        else
        {
            // Wake the loop; it commits what is left and stops.
            Interlocked.Exchange(ref _idle, 0);
            _wakeUp.Release();
            await _commitLoop.ConfigureAwait(false);
        }

        Volatile.Write(ref _state, Closed);
        // Wake readers waiting for records, and any waiter that raced with closing (all data is committed now).
        Volatile.Read(ref _nextCommit).TrySetResult();
        CloseReaders();
        _log.Dispose();
        _commits.Dispose();
        await _device.DisposeAsync().ConfigureAwait(false);
        _wakeUp.Dispose();
    }

    /// <summary>Test hook: drops the log without the final commit, as a crash would (the OS keeps what was
    /// written, as after kill -9).</summary>
    internal void SimulateCrash()
    {
        if (Interlocked.CompareExchange(ref _state, Closed, Open_) != Open_)
            return;
        Volatile.Read(ref _nextCommit).TrySetResult();
        CloseReaders();
        _log.Dispose();
        _commits.Dispose();
        _device.Dispose();
    }

    private void CloseReaders()
    {
        lock (_readers)
        {
            foreach (var reader in _readers)
                reader.CloseIterator();
            _readers.Clear();
        }
    }

    private static TaskCompletionSource NewCompletion() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
