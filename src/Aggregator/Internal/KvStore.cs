using System.Diagnostics;
using System.Numerics;
using System.Reflection;
using System.Runtime.CompilerServices;
using AlphaMesh.Core.Internal;
using FASTER.core;

namespace AlphaMesh.Aggregator.Internal;

/// <summary>The FASTER sizes of one store, as bit counts (validated from <see cref="AggregatorOptions"/>).</summary>
internal readonly record struct StoreSizes(long IndexBytes, long MemoryBytes, long PageBytes, long SegmentBytes)
{
    public static StoreSizes From(AggregatorOptions options, long memoryBytes, long indexBytes, string store)
    {
        Check(options.PageSizeBytes, nameof(options.PageSizeBytes));
        Check(memoryBytes, store + "MemoryBytes");
        Check(indexBytes, store + "IndexBytes");
        Check(options.SegmentSizeBytes, nameof(options.SegmentSizeBytes));
        if (options.PageSizeBytes < 4096)
            throw new ArgumentException($"Aggregator.PageSizeBytes must be at least 4096, not {options.PageSizeBytes}.");
        // FASTER needs a few pages in memory: one being filled, others flushing and the read-only region.
        if (memoryBytes < 4L * options.PageSizeBytes)
            throw new ArgumentException($"Aggregator.{store}MemoryBytes ({memoryBytes} bytes) must hold at least four pages of {options.PageSizeBytes} bytes.");
        if (options.SegmentSizeBytes < options.PageSizeBytes)
            throw new ArgumentException($"Aggregator.SegmentSizeBytes ({options.SegmentSizeBytes}) must be at least Aggregator.PageSizeBytes ({options.PageSizeBytes}).");
        // FASTER's own minimum: 8 buckets of 64 bytes.
        if (indexBytes < 512)
            throw new ArgumentException($"Aggregator.{store}IndexBytes must be at least 512, not {indexBytes}.");
        return new StoreSizes(indexBytes, memoryBytes, options.PageSizeBytes, options.SegmentSizeBytes);
    }

    private static void Check(long value, string name)
    {
        if (value <= 0 || !BitOperations.IsPow2(value))
            throw new ArgumentException($"Aggregator.{name} must be a power of two, not {value}.", name);
    }
}

/// <summary>
/// One FASTER KV on local disk with the one session its partition's loop uses. The loop is the only user, so
/// the store runs without record locking (<see cref="ConcurrencyControlMode.None"/>). Checkpoints are kept until
/// the aggregator's manifest no longer references them (FASTER's own removal of outdated checkpoints is off,
/// because a checkpoint is only complete, for the aggregator, once the manifest that pairs it with the log
/// position is written).
/// </summary>
internal sealed class KvStore<TKey, TValue, TInput, TOutput, TFunctions> : IDisposable
    where TKey : struct
    where TValue : struct
    where TOutput : struct
    where TFunctions : IFunctions<TKey, TValue, TInput, TOutput, Empty>
{
    private readonly BackgroundRemovalDevice _device;
    private readonly DeviceLogCommitCheckpointManager _checkpoints;
    // The last index checkpoint of this run and the log's tail when it was taken (none after a restart: the first
    // checkpoint then writes the index).
    private Guid _indexToken;
    private long _indexTail;
    private long _indexBegin;
    // FASTER's hash index (its main buckets, 64 bytes each) for LoadBucket: FASTER does not expose it, so it is
    // found by reflection after every (re)initialisation of the index (construction and recovery).
    private unsafe byte* _buckets;
    private long _bucketMask;
    private object? _table;
    private object? _overflow;
    private nint[]? _overflowPages;

    /// <summary>Opens (or creates) the store in <paramref name="directory"/>. With <paramref name="writtenOnce"/>
    /// (records, once written, are only read: dedupe ids and markers), most of the in-memory log is kept read-only
    /// instead of FASTER's default of 90 % mutable. A checkpoint (fold-over) flushes the whole mutable region before
    /// it completes, and the loop waits for it: with 57 of 64 MiB mutable that took 200-600 ms per dedupe checkpoint
    /// in the load run, with 6 MiB 30-100 ms. The same pages are written either way, only earlier, when they leave
    /// the mutable region.</summary>
    public KvStore(string directory, StoreSizes sizes, IFasterEqualityComparer<TKey> comparer, TFunctions functions, bool writtenOnce = false)
    {
        Directory.CreateDirectory(directory);
        // Segments that compaction frees are unlinked in the background, not in the partition's loop, and only once
        // the aggregator's manifest no longer names a checkpoint that needs them (PurgeExcept).
        _device = BackgroundRemovalDevice.Open(Path.Combine(directory, "hlog"), deferRemovals: true);
        _checkpoints = new DeviceLogCommitCheckpointManager(new LocalStorageNamedDeviceFactory(),
            new DefaultCheckpointNamingScheme(Path.Combine(directory, "checkpoints")), removeOutdated: false);
        try
        {
            Kv = new FasterKV<TKey, TValue>(new FasterKVSettings<TKey, TValue>
            {
                IndexSize = sizes.IndexBytes,
                LogDevice = _device,
                PageSize = sizes.PageBytes,
                MemorySize = sizes.MemoryBytes,
                SegmentSize = sizes.SegmentBytes,
                CheckpointManager = _checkpoints,
                RemoveOutdatedCheckpoints = false,
                TryRecoverLatest = false,
                ConcurrencyControlMode = ConcurrencyControlMode.None,
                EqualityComparer = comparer,
                // Queries read old windows; copying them to the tail would only grow the log.
                ReadCopyOptions = ReadCopyOptions.None,
                MutableFraction = writtenOnce ? WrittenOnceMutableFraction(sizes) : 0.9,
            });
            Session = Kv.For(functions).NewSession<TFunctions>(functions);
            _copyingSession = NewCopyingSession(functions);
            LocateBuckets();
        }
        catch
        {
            Kv?.Dispose();
            _checkpoints.Dispose();
            _device.Dispose();
            throw;
        }
    }

    public FasterKV<TKey, TValue> Kv { get; }

    /// <summary>A tenth of the in-memory pages mutable, and never fewer than two (FASTER rounds the mutable region
    /// down to whole pages; a store of four pages would otherwise have none).</summary>
    internal static double WrittenOnceMutableFraction(StoreSizes sizes)
        => Math.Min(0.9, Math.Max(0.1, 2.0 * sizes.PageBytes / sizes.MemoryBytes));

    public ClientSession<TKey, TValue, TInput, TOutput, Empty, TFunctions> Session { get; private set; }

    /// <summary>A session whose reads copy what they read from the files to the tail of the log (StartRead's
    /// copyToTail; FASTER takes this option per session, not per read).</summary>
    private ClientSession<TKey, TValue, TInput, TOutput, Empty, TFunctions> _copyingSession;

    private ClientSession<TKey, TValue, TInput, TOutput, Empty, TFunctions> NewCopyingSession(TFunctions functions)
        => Kv.For(functions).NewSession<TFunctions>(functions, readCopyOptions: new ReadCopyOptions(ReadCopyFrom.Device, ReadCopyTo.MainLog));

    /// <summary>Restores a checkpoint taken by <see cref="CheckpointAsync"/>: an index checkpoint and a log
    /// checkpoint (FASTER replays the log between the two into the index).</summary>
    public void Recover(StoreCheckpoint checkpoint, TFunctions functions)
    {
        Session.Dispose();
        _copyingSession.Dispose();
        if (checkpoint.Index == checkpoint.Log)
            Kv.Recover(checkpoint.Index);
        else
            Kv.Recover(checkpoint.Index, checkpoint.Log);
        Session = Kv.For(functions).NewSession<TFunctions>(functions);
        _copyingSession = NewCopyingSession(functions);
        LocateBuckets(); // recovery may allocate a new index
    }

    /// <summary>
    /// Loads the first word of a key's main hash bucket (FASTER's bucket is the low bits of the key's
    /// <c>GetHashCode64</c>), so that the store's lookup of the key finds the bucket in the cache. For keys that are
    /// hardly ever in the cache, such as new event ids, that load is a cache miss every time; a loop of these loads
    /// with nothing between them keeps many misses in flight at once, where the lookups one after the other wait
    /// for each in turn. Reads only: it changes nothing.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public unsafe long LoadBucket(long hash) => *(long*)(_buckets + ((hash & _bucketMask) << 6));

    /// <summary>
    /// Loads the first word of the first overflow bucket chained to a key's main bucket, or returns 0 when it has none.
    /// A main bucket holds 7 keys; once more keys share it, FASTER chains overflow buckets, and a new id's lookup
    /// reads them all: call this in a loop after the loop of <see cref="LoadBucket"/>, so that the second level of
    /// misses overlaps too.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public unsafe long LoadOverflowBucket(long hash)
    {
        // Word 7 of a bucket is the overflow pointer (48 bits): page (64 Ki buckets each) and index in the page.
        long next = *(long*)(_buckets + ((hash & _bucketMask) << 6) + 56) & 0xFFFF_FFFF_FFFFL;
        var pages = _overflowPages!;
        long page = next >> 16;
        if (next == 0 || (ulong)page >= (ulong)pages.Length || pages[page] == 0)
            return 0;
        return *(long*)(pages[page] + ((next & 0xFFFF) << 6));
    }

    /// <summary>The address of a key's main hash bucket (tests check it against FASTER's own entries).</summary>
    internal unsafe ulong BucketAddress(long hash) => (ulong)(_buckets + ((hash & _bucketMask) << 6));

    private const BindingFlags Internal = BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public;

    private unsafe void LocateBuckets()
    {
        // FasterBase.state[resizeInfo.version] is the InternalHashTable in use: tableAligned (HashBucket*), size_mask.
        // The index is never resized here, and its table is a pinned array, so the address holds until a recovery
        // (which may allocate a new table: Recover locates it again).
        var state = typeof(FasterBase).GetField("state", Internal)?.GetValue(Kv) as Array;
        var resizeInfo = typeof(FasterBase).GetField("resizeInfo", Internal)?.GetValue(Kv);
        var version = resizeInfo?.GetType().GetField("version", Internal)?.GetValue(resizeInfo);
        var table = state is not null && version is int v ? state.GetValue(v) : null;
        var aligned = table?.GetType().GetField("tableAligned", Internal)?.GetValue(table);
        var mask = table?.GetType().GetField("size_mask", Internal)?.GetValue(table);
        if (aligned is not Pointer pointer || mask is not long sizeMask)
            throw new InvalidOperationException(
                "FASTER's hash index (FasterBase.state[].tableAligned, size_mask) was not found: this FASTER version is not the one KvStore.LoadBucket was written for.");
        // Holding the table's array keeps the address valid (the array is pinned) even if FASTER replaced it.
        _table = table!.GetType().GetField("tableRaw", Internal)?.GetValue(table)
            ?? throw new InvalidOperationException("FASTER's hash index (FasterBase.state[].tableRaw) was not found.");
        // The overflow buckets: MallocFixedPageSize<HashBucket>, whose pinned pages' addresses are in its 'pointers'
        // (filled in as pages are allocated, never moved); holding the allocator keeps its pages alive.
        _overflow = typeof(FasterBase).GetField("overflowBucketsAllocator", Internal)?.GetValue(Kv);
        _overflowPages = _overflow?.GetType().GetField("pointers", Internal)?.GetValue(_overflow) as nint[]
            ?? throw new InvalidOperationException("FASTER's overflow buckets (FasterBase.overflowBucketsAllocator.pointers) were not found.");
        _buckets = (byte*)Pointer.Unbox(pointer);
        _bucketMask = sizeMask;
    }

    /// <summary>
    /// Until <see cref="EndBatch"/>, the calling thread stays inside FASTER's epoch protection and the operations
    /// below use the session's unsafe context: each operation of the safe session enters and leaves the epoch, which
    /// cost more than the dedupe lookup's own work. The caller keeps the batch short and synchronous (no await
    /// between the two calls: the epoch belongs to the thread), and takes checkpoints outside it.
    /// </summary>
    public void BeginBatch()
    {
        Session.UnsafeContext.BeginUnsafe();
        _inBatch = true;
    }

    public void EndBatch()
    {
        _inBatch = false;
        Session.UnsafeContext.EndUnsafe();
    }

    private bool _inBatch;

    /// <summary>A read-modify-write; waits for the disk when the key is not in memory.</summary>
    public TOutput Rmw(ref TKey key, ref TInput input)
    {
        TOutput output = default;
        var status = _inBatch ? Session.UnsafeContext.RMW(ref key, ref input, ref output) : Session.RMW(ref key, ref input, ref output);
        if (status.IsPending)
            output = CompletePending();
        return output;
    }

    /// <summary>Writes the value whole (no read of the old one).</summary>
    public void Upsert(ref TKey key, ref TValue value)
    {
        if ((_inBatch ? Session.UnsafeContext.Upsert(ref key, ref value) : Session.Upsert(ref key, ref value)).IsPending)
            CompletePending();
    }

    /// <summary>A read; false when the key is absent.</summary>
    public bool TryRead(ref TKey key, ref TInput input, out TOutput output)
    {
        output = default;
        var status = _inBatch ? Session.UnsafeContext.Read(ref key, ref input, ref output) : Session.Read(ref key, ref input, ref output);
        if (status.IsPending)
        {
            SingleWaits++;
            CompletePendingWithOutputs(out var completed);
            try
            {
                bool found = false;
                while (completed.Next())
                {
                    found = completed.Current.Status.Found;
                    output = completed.Current.Output;
                }
                return found;
            }
            finally
            {
                completed.Dispose();
            }
        }
        return status.Found;
    }

    /// <summary>Starts a read without waiting for the disk: <see cref="ReadStart.Pending"/> leaves it to
    /// <see cref="CompleteReads"/>, so that the reads of many keys wait together (one at a time, each read back from
    /// the store's files costs the loop tens of microseconds of FASTER's asynchronous read path). Not inside a batch:
    /// an operation that waits there would complete these reads too and lose their outputs. With
    /// <paramref name="copyToTail"/>, a record read from the files is also copied to the tail of the log, where the next
    /// update of the key finds it in memory instead of waiting for the files again.</summary>
    public ReadStart StartRead(ref TKey key, ref TInput input, out TOutput output, bool copyToTail = false)
    {
        Debug.Assert(!_inBatch, "reads left pending inside a batch would be completed by its next wait");
        output = default;
        var status = (copyToTail ? _copyingSession : Session).Read(ref key, ref input, ref output);
        return status.IsPending ? ReadStart.Pending : status.Found ? ReadStart.Found : ReadStart.Absent;
    }

    /// <summary>Waits for every read <see cref="StartRead"/> left pending; adds those that found their key to
    /// <paramref name="found"/>.</summary>
    public void CompleteReads(List<(TKey Key, TOutput Output)> found)
    {
        CompleteSessionReads(Session, found);
        CompleteSessionReads(_copyingSession, found);
    }

    private static void CompleteSessionReads(ClientSession<TKey, TValue, TInput, TOutput, Empty, TFunctions> session, List<(TKey Key, TOutput Output)> found)
    {
        session.CompletePendingWithOutputs(out var completed, wait: true);
        try
        {
            while (completed.Next())
            {
                if (completed.Current.Status.Found)
                    found.Add((completed.Current.Key, completed.Current.Output));
            }
        }
        finally
        {
            completed.Dispose();
        }
    }

    /// <summary>How many operations waited for the store's files on their own (tests: reads that should have waited
    /// together did not).</summary>
    internal long SingleWaits { get; private set; }

    private TOutput CompletePending()
    {
        SingleWaits++;
        TOutput output = default;
        CompletePendingWithOutputs(out var completed);
        try
        {
            while (completed.Next())
                output = completed.Current.Output;
        }
        finally
        {
            completed.Dispose();
        }
        return output;
    }

    private void CompletePendingWithOutputs(out CompletedOutputIterator<TKey, TValue, TInput, TOutput, Empty> completed)
    {
        if (_inBatch)
            Session.UnsafeContext.CompletePendingWithOutputs(out completed, wait: true);
        else
            Session.CompletePendingWithOutputs(out completed, wait: true);
    }

    /// <summary>
    /// Takes a checkpoint and waits until it is durable. Fold-over: the log's in-memory part is flushed and becomes
    /// read-only, so it writes only what changed since the last one. The hash index, which is written whole (tens of
    /// MiB), is written only when <paramref name="withIndex"/>, or when the log has grown by
    /// <paramref name="indexEveryLogBytes"/> since the last index checkpoint, or when there is none in this run: a
    /// recovery replays the log written since the index checkpoint into the index, so this bounds that replay, and
    /// most checkpoints are a log flush and a little metadata (the bursts of index writes made the ingest log's
    /// synchronous writes, on the same disk, wait). Also when the log begins later than at the last index
    /// checkpoint (a compaction moved it), so that recovery never replays from below the log's beginning; kept
    /// here rather than passed in, so that a checkpoint that failed after the compaction does not lose it.
    /// </summary>
    public async ValueTask<StoreCheckpoint> CheckpointAsync(bool withIndex, long indexEveryLogBytes, CancellationToken cancellationToken)
    {
        // FASTER takes one checkpoint at a time, and a checkpoint whose caller stopped waiting (the loop is cancelled
        // at shutdown, then the final checkpoint follows) goes on inside FASTER: let it finish first. FASTER itself
        // gets no token: cancelling its state machine half way leaves a checkpoint that the next one cannot finish.
        cancellationToken.ThrowIfCancellationRequested();
        await Kv.CompleteCheckpointAsync(CancellationToken.None).ConfigureAwait(false);
        long tail = Kv.Log.TailAddress;
        long begin = Kv.Log.BeginAddress;
        if (withIndex || _indexToken == Guid.Empty || tail - _indexTail >= indexEveryLogBytes || begin > _indexBegin)
        {
            var (success, token) = await Kv.TakeFullCheckpointAsync(CheckpointType.FoldOver, CancellationToken.None).ConfigureAwait(false);
            if (!success)
                throw new InvalidOperationException("FASTER refused the checkpoint (another checkpoint was in progress).");
            _indexToken = token;
            _indexTail = tail;
            _indexBegin = begin;
            return new StoreCheckpoint(token, token);
        }
        var (logSuccess, logToken) = await Kv.TakeHybridLogCheckpointAsync(CheckpointType.FoldOver, tryIncremental: false, CancellationToken.None).ConfigureAwait(false);
        if (!logSuccess)
            throw new InvalidOperationException("FASTER refused the checkpoint (another checkpoint was in progress).");
        return new StoreCheckpoint(_indexToken, logToken);
    }

    /// <summary>Deletes the checkpoints <paramref name="keep"/> does not need (FASTER's purge of a token deletes
    /// its index and its log checkpoint both), and the log segments FASTER truncated when it took them. Called once
    /// the aggregator's manifest names <paramref name="keep"/>: until then recovery may still need both.</summary>
    public void PurgeExcept(StoreCheckpoint keep)
    {
        _device.RemoveDeferredSegments();
        var tokens = new HashSet<Guid>(_checkpoints.GetLogCheckpointTokens());
        tokens.UnionWith(_checkpoints.GetIndexCheckpointTokens());
        foreach (var token in tokens)
        {
            if (token != keep.Index && token != keep.Log)
                _checkpoints.Purge(token);
        }
    }

    public long LogBytes => Kv.Log.TailAddress - Kv.Log.BeginAddress;

    /// <summary>Log segments FASTER truncated that are kept until the next <see cref="PurgeExcept"/> (tests).</summary>
    internal int DeferredSegmentCount => _device.DeferredSegmentCount;

    public void Dispose()
    {
        Session.Dispose();
        _copyingSession.Dispose();
        Kv.Dispose();
        _checkpoints.Dispose();
        _device.Dispose();
    }
}

/// <summary>What <see cref="KvStore{TKey, TValue, TInput, TOutput, TFunctions}.StartRead"/> found at once.</summary>
internal enum ReadStart
{
    Absent,
    Found,
    /// <summary>The key may be in the store's files: the read waits for <c>CompleteReads</c>.</summary>
    Pending,
}
