using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using AlphaMesh.Core;

namespace AlphaMesh.Aggregator.Internal;

using AggregateStore = KvStore<AggregateKey, AggregateState, AggregateInput, AggregateOutput, AggregateFunctions>;
using DedupeStore = KvStore<HashKey, DedupeValue, DedupeValue, DedupeOutput, DedupeFunctions>;

/// <summary>Duplicate events of one tenant in one partition.</summary>
internal sealed class TenantStats(string tenant)
{
    public string Tenant { get; } = tenant;
    public long Duplicates;
}

/// <summary>
/// The aggregator of one partition: one loop that tails the partition's log and owns two FASTER KV stores.
/// <para>
/// Dedupe store (key: 128-bit hash): event ids, keyed by (tenant, id), and UNIQUE_COUNT first-seen markers, keyed
/// by (series, level, window, value). Each entry expires at a time stored with it and is dropped by compaction.
/// </para>
/// <para>
/// Aggregates store (key: series hash, level, window start): one <see cref="AggregateState"/> per series and window.
/// A series is one (tenant, meter, customer, group values). Every aggregation keeps its meter's base window
/// (MINUTE, HOUR or DAY); queries roll coarser windows up from it. UNIQUE_COUNT cannot be rolled up by adding
/// (a value seen in two hours is one value of the day), so it keeps one count per level, from the base window up to
/// the calendar month: the first time a value appears in a series' window of some level, its marker for that
/// (series, level, window) is inserted and that window's count grows by one. So the count of every window of every
/// level, and of the month (the billing period for now), is the exact number of distinct values. Group-by makes
/// each combination of group values its own series; a UNIQUE_COUNT meter with a group-by also keeps a customer-wide
/// series, so that the customer's distinct count over all groups is exact too (summing the groups would count a
/// value seen in two groups twice).
/// </para>
/// <para>
/// Exactly once: an event changes the stores only the first time its (tenant, id) is seen. The stores, the series
/// directory, the counters and the current-period totals are checkpointed together with the position of the next
/// record; recovery restores them and replays from that position, so every event after it is applied exactly once
/// more, and none before it.
/// </para>
/// <para>
/// Threads: only the loop touches the stores and the series directory. Queries and checkpoint requests are queued
/// to the loop and run between two records, so they never race the writer and always see whole events.
/// </para>
/// </summary>
internal sealed class PartitionAggregator : IAsyncDisposable
{
    private readonly IPartitionLog _log;
    private readonly IMeterCatalog _catalog;
    private readonly PeriodTotals _totals;
    private readonly string _directory;
    private readonly long _retention;
    private readonly long _windowRetention;
    private readonly int _batchSize;
    private readonly long _compactionBytes;
    private readonly long _indexCheckpointLogBytes;
    private readonly TimeSpan _checkpointInterval;
    private readonly TimeProvider _time;
    private readonly AggregateStore _aggregates;
    private readonly DedupeStore _dedupe;
    private readonly AggregateFunctions _aggregateFunctions = new();
    private readonly DedupeFunctions _dedupeFunctions = new();
    private readonly SeriesDirectory _series = new();
    private readonly ConcurrentDictionary<UInt128, TenantStats> _tenants = new();
    private readonly List<PeriodTotal> _ownedTotals = [];
    private readonly ConcurrentQueue<PartitionWork> _work = new();
    private readonly List<PartitionWork> _waiting = [];
    // The cached windows (Series.Hot), at most _cachedWindows, and the clock's hand among them; and the series whose
    // cache changed since the last checkpoint (some may have lost their cache since: written back then).
    private readonly List<HotWindow> _hotWindows = [];
    private readonly List<Series> _dirtySeries = [];
    private readonly int _cachedWindows;
    private int _clockHand;
    // The state chain (see CheckpointAsync): its files, oldest (the full one) first, their sizes, and the series and
    // totals changed since its last file.
    private readonly List<string> _stateChain = [];
    private long _stateFileNumber;
    private long _stateBaseBytes;
    private long _stateDeltaBytes;
    private readonly List<Series> _changedSeries = [];
    private readonly List<PeriodTotal> _changedTotals = [];
    /// <summary>Windows read back from the store's files, by <see cref="ReadBackWindows"/> and queries.</summary>
    private readonly List<(AggregateKey Key, AggregateOutput Output)> _readBack = [];
    /// <summary>The windows (series, start) <see cref="ReadBackWindows"/> is reading (a stage's worth at most).</summary>
    private readonly List<(Series Series, long Start)> _readBackWindows = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly Dictionary<(string, string), long> _restoredInvalid = [];
    // Where each store's log stood at some checkpoints (see CompactDedupe, CompactWindows); kept in the state file.
    private readonly CompactionMarks _dedupeMarks;
    private readonly CompactionMarks _windowMarks;

    private IPartitionLogReader _reader = null!;
    private MeterTable _meters = null!;
    private TaskCompletionSource _signal = NewSignal();
    private Task _loop = Task.CompletedTask;
    private MonthCache _months;
    private byte[] _scratch = new byte[4096];
    // Records staged for applying (Stage, ApplyStaged): copied out of the log reader, whose record is valid only
    // until its next read, so that the dedupe buckets of several records are loaded together before they are
    // applied. The bucket of a new id is a cache miss nearly every time, and was most of the loop's time.
    private readonly StagedRecord[] _staged = new StagedRecord[StageCapacity];
    private byte[] _stage = new byte[StageCapacity * 512];
    private int _stagedCount;
    private int _stageBytes;
    private PreparedMeter[] _prepared = new PreparedMeter[StageCapacity * 4];
    private int[] _preparedGroups = new int[StageCapacity * 4 * 2 * MeterDefinition.MaxGroupBy];
    private long _touched; // keeps the loads of ApplyStaged from being dropped as unused
    private long _position;
    private long _progress;
    private long _checkpointPosition = -1;
    private long _sequence;
    private long _maxIngestTime;
    private long _malformed;
    private int _disposed;
    private Exception? _failure;
    private long _checkpointedAtUnixMs;
    private readonly long _committedAtStart;

    /// <summary>Why the loop stopped, or null while it runs.</summary>
    public AggregatorStoppedException? Failure => Volatile.Read(ref _failure) is { } failure ? new AggregatorStoppedException(Index, failure) : null;

    private PartitionAggregator(IPartitionLog log, IMeterCatalog catalog, PeriodTotals totals, AggregatorOptions options, TimeProvider time, string directory)
    {
        _log = log;
        _committedAtStart = log.CommittedPosition;
        _catalog = catalog;
        _totals = totals;
        _directory = directory;
        _retention = checked((long)options.DedupeRetention.TotalMicroseconds * 1000);
        _windowRetention = checked((long)options.WindowRetention.TotalMicroseconds * 1000);
        _dedupeMarks = new CompactionMarks(_retention);
        _windowMarks = new CompactionMarks(_windowRetention);
        _batchSize = options.BatchSize;
        _cachedWindows = options.CachedWindows;
        _compactionBytes = options.DedupeCompactionBytes;
        _indexCheckpointLogBytes = options.IndexCheckpointLogBytes;
        _checkpointInterval = options.CheckpointInterval;
        _time = time;
        _aggregates = new AggregateStore(Path.Combine(directory, "aggregates"), StoreSizes.From(options, options.AggregatesMemoryBytes, options.AggregatesIndexBytes, "Aggregates"),
            AggregateKeyComparer.Instance, _aggregateFunctions);
        try
        {
            _dedupe = new DedupeStore(Path.Combine(directory, "dedupe"), StoreSizes.From(options, options.DedupeMemoryBytes, options.DedupeIndexBytes, "Dedupe"),
                HashKeyComparer.Instance, _dedupeFunctions, writtenOnce: true);
        }
        catch
        {
            _aggregates.Dispose();
            throw;
        }
    }

    public int Index => _log.Index;

    public long MalformedRecords => Volatile.Read(ref _malformed);

    /// <summary>Every record before this position is applied.</summary>
    public long Progress => Volatile.Read(ref _progress);

    /// <summary>Opens the stores, restores the latest complete checkpoint (if any) and starts the loop.</summary>
    public static PartitionAggregator Start(IPartitionLog log, IMeterCatalog catalog, PeriodTotals totals, AggregatorOptions options, TimeProvider time)
    {
        string directory = Path.Combine(Path.GetFullPath(options.Directory), $"p{log.Index}");
        Directory.CreateDirectory(directory);
        var manifest = CheckpointManifest.TryRead(directory);
        if (manifest is null)
        {
            // No complete checkpoint: whatever a crashed first run left in the stores is not consistent with any
            // log position, so start them empty and replay the whole log.
            DeleteIfExists(Path.Combine(directory, "aggregates"));
            DeleteIfExists(Path.Combine(directory, "dedupe"));
        }
        var partition = new PartitionAggregator(log, catalog, totals, options, time, directory);
        try
        {
            partition.Recover(manifest);
            partition._meters = MeterTable.Build(catalog, null, partition._restoredInvalid);
            partition._reader = log.OpenReader(partition._position);
            partition._loop = Task.Run(partition.RunLoopAsync);
            return partition;
        }
        catch
        {
            partition._aggregates.Dispose();
            partition._dedupe.Dispose();
            throw;
        }
    }

    /// <summary>A partition without its loop, for benchmarks and allocation tests: the caller applies records
    /// with <see cref="Apply(ReadOnlySpan{byte})"/> (or <see cref="Stage"/>) on one thread and ends with <see cref="CrashAsync"/> or <see cref="DisposeAsync"/>.</summary>
    internal static PartitionAggregator OpenDetached(IPartitionLog log, IMeterCatalog catalog, AggregatorOptions options)
    {
        AggregatorHost.Validate(options);
        string directory = Path.Combine(Path.GetFullPath(options.Directory), $"p{log.Index}");
        DeleteIfExists(directory);
        Directory.CreateDirectory(directory);
        var partition = new PartitionAggregator(log, catalog, new PeriodTotals(), options, TimeProvider.System, directory);
        partition.Recover(null);
        partition._meters = MeterTable.Build(catalog, null, null);
        partition._reader = log.OpenReader(partition._position);
        return partition;
    }

    private static void DeleteIfExists(string directory)
    {
        if (Directory.Exists(directory))
            Directory.Delete(directory, recursive: true);
    }

    private void Recover(CheckpointManifest? manifest)
    {
        if (manifest is null)
        {
            _position = _log.BeginPosition;
            _progress = _position;
            return;
        }
        if (manifest.Position < _log.BeginPosition)
            throw new InvalidOperationException(
                $"Partition {Index}: the aggregator checkpoint resumes at log position {manifest.Position}, but the log begins at {_log.BeginPosition}; the events in between are gone. Restore the log that belongs to this aggregator state, or delete '{_directory}' to rebuild from the log that is left.");
        _aggregates.Recover(manifest.Aggregates, _aggregateFunctions);
        _dedupe.Recover(manifest.Dedupe, _dedupeFunctions);
        // The manifest names a chain of state files: a full one, then the changes of each later checkpoint.
        var names = new Dictionary<UInt128, Series>();
        foreach (string stateFile in manifest.StateFiles)
        {
            string path = Path.Combine(_directory, stateFile);
            ReadState(path, names);
            _stateChain.Add(stateFile);
            _stateFileNumber = Math.Max(_stateFileNumber, StateFileNumber(stateFile));
            if (_stateChain.Count == 1)
                _stateBaseBytes = new FileInfo(path).Length;
            else
                _stateDeltaBytes += new FileInfo(path).Length;
        }
        _sequence = manifest.Sequence;
        _position = manifest.Position;
        _progress = _position;
        _checkpointPosition = _position;
    }

    // ---------------------------------------------------------------- the loop

    private async Task RunLoopAsync()
    {
        try
        {
            await LoopAsync(_stop.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            // stopping
        }
        catch (Exception e)
        {
            // The partition cannot go on (a disk or store failure): fail the waiting work and every later request,
            // instead of leaving them to hang. Nothing is lost: restart recovers from the last checkpoint.
            Volatile.Write(ref _failure, e);
            FailWork(new AggregatorStoppedException(Index, e));
            throw;
        }
    }

    private void FailWork(Exception error)
    {
        while (_work.TryDequeue(out var work))
            work.Fail(error);
        foreach (var work in _waiting)
            work.Fail(error);
        _waiting.Clear();
    }

    private async Task LoopAsync(CancellationToken token)
    {
        using var timer = new PeriodicTimer(_checkpointInterval, _time);
        Task<bool>? recordsReady = null;
        Task<bool>? tick = null;
        while (!token.IsCancellationRequested)
        {
            // Replace a completed signal before looking at the queue: work queued later completes the new one.
            if (_signal.Task.IsCompleted)
                Volatile.Write(ref _signal, NewSignal());
            if (_catalog.Version != _meters.Version)
                Volatile.Write(ref _meters, MeterTable.Build(_catalog, _meters, _restoredInvalid));

            int applied = ApplyBatch();
            await RunReadyWorkAsync(token).ConfigureAwait(false);

            tick ??= timer.WaitForNextTickAsync(token).AsTask();
            if (tick.IsCompleted)
            {
                if (token.IsCancellationRequested)
                    break;
                await CheckpointAsync(token).ConfigureAwait(false);
                // Wait for the next tick at once: the wait below needs it (a null task there threw and stopped the
                // loop at the first timed checkpoint that found no records waiting).
                tick = timer.WaitForNextTickAsync(token).AsTask();
            }
            if (applied == _batchSize || _signal.Task.IsCompleted)
                continue;

            recordsReady ??= _reader.WaitForRecordsAsync(token).AsTask();
            if (!recordsReady.IsCompleted)
                await Task.WhenAny(recordsReady, _signal.Task, tick).ConfigureAwait(false);
            if (recordsReady.IsCompleted)
            {
                bool open = recordsReady.IsCompletedSuccessfully && recordsReady.Result;
                recordsReady = null;
                if (!open)
                    break; // stopping, or the log was closed under us
            }
        }
    }

    /// <summary>Applies up to one batch of committed records.</summary>
    private int ApplyBatch()
    {
        int applied = 0;
        long committed = _log.CommittedPosition;
        long position = _position;
        bool drained = false;
        while (applied < _batchSize)
        {
            if (!_reader.TryReadNext(out var record, out _, out long next))
            {
                drained = true;
                break;
            }
            Stage(record.Span);
            position = next;
            applied++;
        }
        ApplyStaged();
        _position = position;
        // After an empty read, every record before the committed position seen before the read is applied (this also
        // covers the padding at a page's end, which no record's next position reaches). The reader's contract: an
        // empty read means everything below that position was returned. FasterLog's iterator returns false only
        // when its own next address has reached CommittedUntilAddress, read during the call, after skipping padding
        // and loading pages from disk synchronously.
        Volatile.Write(ref _progress, drained ? Math.Max(Math.Max(committed, _position), _progress) : Math.Max(_position, _progress));
        return applied;
    }

    // ---------------------------------------------------------------- the hot path

    // 32 misses in flight at once: measured faster than 8 and 16, and the same as 64 (RESULTS.md).
    private const int StageCapacity = 32;

    /// <summary>A record in the stage: where its bytes and fields are (offsets into the stage; Tenant &lt; 0: the
    /// record did not decode) and its dedupe key.</summary>
    private struct StagedRecord
    {
        public HashKey Key;
        public long EventTime;
        public long IngestTime;
        public int Tenant, TenantLength, Id, IdLength, Type, TypeLength, Customer, CustomerLength, Data, DataLength, DataCount;
        /// <summary>The meters of the event's tenant and type (null: none, or a duplicate <see cref="DedupeStaged"/> found),
        /// prepared in <see cref="_prepared"/> from <see cref="Prepared"/> on, one per meter.</summary>
        public CompiledMeter[]? Meters;
        public int Prepared;
    }

    /// <summary>What <see cref="Prepare"/> found for one meter of one staged event.</summary>
    private enum PreparedState : byte
    {
        /// <summary>The meter did not exist when the event was ingested: it does not count the event.</summary>
        NotCounted,
        /// <summary>The value property is missing or not a number: the event is invalid for the meter.</summary>
        Invalid,
        Ready,
    }

    /// <summary>One meter of one staged event, read from the event before the stage is applied.</summary>
    private struct PreparedMeter
    {
        public PreparedState State;
        public UInt128 SeriesId;
        /// <summary>The series if it existed when prepared; null: a new one (or one an earlier event of the stage adds).</summary>
        public Series? Series;
        public decimal Value;
        /// <summary>The start of the event's window of the meter's base window size.</summary>
        public long WindowStart;
        /// <summary>The value's offset in the event's data (-1: absent) and length.</summary>
        public int ValueStart, ValueLength;
        /// <summary>Where the offsets and lengths of its group values are in <see cref="_preparedGroups"/>.</summary>
        public int Groups;
    }

    /// <summary>Dedupes and aggregates one encoded record at once (tests). Allocates nothing unless the event starts a
    /// new series or a new current-period total (or the stores wait for the disk).</summary>
    internal void Apply(ReadOnlySpan<byte> record)
    {
        Stage(record);
        ApplyStaged();
    }

    /// <summary>Copies a record into the stage, decodes it and computes its dedupe key; applies the stage once it is
    /// full. The caller ends with <see cref="ApplyStaged"/>.</summary>
    internal void Stage(ReadOnlySpan<byte> record)
    {
        if (_stageBytes + record.Length > _stage.Length)
        {
            ApplyStaged();
            if (record.Length > _stage.Length)
                _stage = new byte[record.Length];
        }
        // The longest identity built from a record is shorter than twice the record (fields plus length prefixes).
        if (_scratch.Length < (2 * record.Length) + 1024)
            _scratch = new byte[(2 * record.Length) + 1024];
        var copy = _stage.AsSpan(_stageBytes, record.Length);
        record.CopyTo(copy);
        _stageBytes += record.Length;
        ref var staged = ref _staged[_stagedCount++];
        if (EventRecord.TryRead(copy, out var e))
        {
            staged.Key = DedupeKey(e);
            staged.EventTime = e.EventTimeUnixNanos;
            staged.IngestTime = e.IngestTimeUnixNanos;
            staged.Tenant = OffsetIn(_stage, e.Tenant);
            staged.TenantLength = e.Tenant.Length;
            staged.Id = OffsetIn(_stage, e.Id);
            staged.IdLength = e.Id.Length;
            staged.Type = OffsetIn(_stage, e.Type);
            staged.TypeLength = e.Type.Length;
            staged.Customer = OffsetIn(_stage, e.Customer);
            staged.CustomerLength = e.Customer.Length;
            staged.Data = OffsetIn(_stage, e.DataBytes);
            staged.DataLength = e.DataBytes.Length;
            staged.DataCount = e.DataCount;
        }
        else
        {
            staged.Tenant = -1;
        }
        if (_stagedCount == StageCapacity)
            ApplyStaged();
    }

    /// <summary>Applies the staged records in order.</summary>
    internal void ApplyStaged()
    {
        // First the dedupe index bucket of every staged id, in a loop that does nothing else: for new ids these loads
        // miss the cache, and so close together they are in flight at once (about one latency for the whole stage
        // instead of one each). A software prefetch per record, issued while staging, gained much less: the prefetch
        // instruction itself waited on this machine.
        long touched = 0;
        for (int i = 0; i < _stagedCount; i++)
            touched ^= _dedupe.LoadBucket(HashKeyComparer.Instance.GetHashCode64(ref _staged[i].Key));
        // Then the first overflow bucket of the full ones (an index holding more than 7 ids per bucket).
        for (int i = 0; i < _stagedCount; i++)
            touched ^= _dedupe.LoadOverflowBucket(HashKeyComparer.Instance.GetHashCode64(ref _staged[i].Key));

        // The same for the series: each event's meters are read (value, group values, series id) for the whole stage
        // first, then the series table's slots are loaded in one loop, then the series and their period totals in
        // another, so that these misses overlap too instead of coming one after another per meter.
        int prepared = PrepareStaged();
        var preparedMeters = _prepared.AsSpan(0, prepared);
        foreach (ref readonly var meter in preparedMeters)
        {
            if (meter.State == PreparedState.Ready)
                touched ^= _series.Load(meter.SeriesId);
        }
        foreach (ref var meter in preparedMeters)
        {
            if (meter.State == PreparedState.Ready && _series.TryGet(meter.SeriesId, out var series))
            {
                meter.Series = series;
                touched ^= series.FirstWindow;
            }
        }
        bool readBack = false;
        foreach (ref readonly var meter in preparedMeters)
        {
            if (meter.Series is not { } series)
                continue;
            if (series.Total is { } total)
                touched ^= total.Load();
            // A series without a cached window, or a late event (older than the cached window): see ReadBackWindows.
            if (series.Hot is { } hot)
                readBack |= meter.WindowStart < hot.Start;
            else
                readBack = true;
        }
        _touched = touched;
        if (readBack)
        {
            // Duplicates first, so that a resent event reads nothing back: a client resending old events after an
            // outage sends many, and the read-ahead of a late event's window copies it to the store's tail.
            DedupeStaged();
            ReadBackWindows();
        }

        _dedupe.BeginBatch();
        _aggregates.BeginBatch();
        try
        {
            for (int i = 0; i < _stagedCount; i++)
            {
                ref var staged = ref _staged[i];
                if (staged.Tenant < 0)
                {
                    // Ingest only appends records it encoded; a record that does not decode cannot be made right by retrying.
                    Volatile.Write(ref _malformed, _malformed + 1);
                    continue;
                }
                var e = View(staged);
                if (readBack || Dedupe(e, ref staged))
                    ApplyMeters(e, ref staged);
            }
        }
        finally
        {
            _aggregates.EndBatch();
            _dedupe.EndBatch();
        }
        _stagedCount = 0;
        _stageBytes = 0;
    }

    /// <summary>Reads from the store, for the whole stage at once, the windows its events will update that may be only in
    /// the store's files, so that those reads wait together instead of one by one (each read back from the files costs
    /// the loop tens of microseconds of FASTER's asynchronous read path when it waits alone):
    /// <list type="bullet">
    /// <item>the newest window of each series that lost its cached window (a clock took it back, or a restart): it is
    /// read and cached;</item>
    /// <item>the window of a late event (older than the series' newest): a client resending a buffer of old events after
    /// an outage updates windows long out of the store's memory. The read copies the window to the tail of the store's
    /// log, so that the event's update, which goes to the store without a cache, finds it in memory.</item>
    /// </list>
    /// The stage's events are not applied yet, so what is read is what they would have read.</summary>
    private void ReadBackWindows()
    {
        for (int i = 0; i < _stagedCount; i++)
        {
            ref readonly var staged = ref _staged[i];
            if (staged.Meters is not { } meters)
                continue;
            for (int m = 0; m < meters.Length; m++)
            {
                var meter = meters[m];
                ref readonly var prepared = ref _prepared[staged.Prepared + m];
                if (prepared.Series is not { } series || meter.Aggregation == Aggregation.UniqueCount)
                    continue;
                long start = prepared.WindowStart;
                long newest = series.Hot?.Start ?? series.LastWindow;
                bool late = start < newest;
                // Without a cache, only the newest window is read back: a newer one is not stored yet. With one, only a
                // late event's window.
                if ((series.Hot is null ? start > newest : !late) || _readBackWindows.Contains((series, start)))
                    continue; // (the second event of a window whose read waits: one read is enough)
                var key = new AggregateKey(series.Id, meter.BaseWindow, start);
                var input = default(AggregateInput);
                var read = _aggregates.StartRead(ref key, ref input, out var output, copyToTail: late);
                if (read == ReadStart.Found && !late)
                    CacheReadWindow(series, key, output.State);
                else if (read == ReadStart.Pending)
                    _readBackWindows.Add((series, start));
            }
        }
        if (_readBackWindows.Count == 0)
            return;
        _readBackWindows.Clear();
        _readBack.Clear();
        _aggregates.CompleteReads(_readBack);
        foreach (var (key, output) in _readBack)
        {
            // A late event's window is in the store's memory now; only a series' newest window is cached. A series never
            // gets a second cache: its first one's owner would still name it, and the clock taking that one back would
            // clear the series' cache while it holds changes.
            if (_series.TryGet(key.Series, out var series) && series.Hot is null && key.WindowStart == series.LastWindow)
                CacheReadWindow(series, key, output.State);
        }
        _readBack.Clear();
    }

    private void CacheReadWindow(Series series, in AggregateKey key, in AggregateState state)
    {
        var hot = TakeHotWindow(series);
        series.Hot = hot;
        hot.State = state;
        hot.Start = key.WindowStart;
        hot.Level = (WindowSize)key.Level;
        // Marked used, so that the clock does not take it back for another series of the same stage before its
        // events are applied (with a cache smaller than a stage's series, the read would be wasted).
        hot.Used = true;
    }

    private EventRecordView View(in StagedRecord staged)
    {
        var stage = _stage.AsSpan();
        return new EventRecordView(staged.EventTime, staged.IngestTime, stage.Slice(staged.Tenant, staged.TenantLength),
            stage.Slice(staged.Id, staged.IdLength), stage.Slice(staged.Type, staged.TypeLength),
            stage.Slice(staged.Customer, staged.CustomerLength), stage.Slice(staged.Data, staged.DataLength), staged.DataCount);
    }

    /// <summary>Prepares every meter of every staged event (<see cref="Prepare"/>); returns how many.</summary>
    private int PrepareStaged()
    {
        int prepared = 0, groups = 0;
        for (int i = 0; i < _stagedCount; i++)
        {
            ref var staged = ref _staged[i];
            staged.Meters = null;
            if (staged.Tenant < 0)
                continue;
            var e = View(staged);
            var meters = _meters.Find(e.Tenant, e.Type, _scratch);
            if (meters is null)
                continue;
            staged.Meters = meters;
            staged.Prepared = prepared;
            if (_prepared.Length < prepared + meters.Length)
                Array.Resize(ref _prepared, Math.Max(2 * _prepared.Length, prepared + meters.Length));
            var parsed = ParsedValue.None;
            foreach (var meter in meters)
            {
                int groupInts = 2 * meter.GroupBy.Length;
                if (_preparedGroups.Length < groups + groupInts)
                    Array.Resize(ref _preparedGroups, 2 * (groups + groupInts));
                Prepare(meter, e, ref _prepared[prepared++], groups, ref parsed);
                groups += groupInts;
            }
        }
        return prepared;
    }

    /// <summary>The dedupe key of an event: its (tenant, id).</summary>
    private HashKey DedupeKey(scoped in EventRecordView e)
    {
        var builder = new KeyBuilder(_scratch, KeyBuilder.Dedupe);
        builder.Field(e.Tenant);
        builder.Field(e.Id);
        return new HashKey(builder.Hash());
    }

    /// <summary>Dedupes one staged event, whose dedupe key <see cref="Stage"/> computed; false (and counted) for a
    /// duplicate.</summary>
    private bool Dedupe(scoped in EventRecordView e, ref StagedRecord staged)
    {
        if (e.IngestTimeUnixNanos > _maxIngestTime)
            _maxIngestTime = e.IngestTimeUnixNanos;

        // Kept for the retention after the later of the event's time and its ingest time: a resent event with no
        // time of its own gets a later ingest time, and ingest rejects any event older than the backdating limit.
        var expiry = new DedupeValue { ExpiresAt = Math.Max(e.EventTimeUnixNanos, e.IngestTimeUnixNanos) + _retention };
        if (_dedupe.Rmw(ref staged.Key, ref expiry).Existed)
        {
            CountDuplicate(e.Tenant);
            return false;
        }
        return true;
    }

    /// <summary>Dedupes the whole stage before its windows are read back: a duplicate's meters are dropped
    /// (<see cref="StagedRecord.Meters"/> null), so that nothing is read for it and nothing applied.</summary>
    private void DedupeStaged()
    {
        _dedupe.BeginBatch();
        try
        {
            for (int i = 0; i < _stagedCount; i++)
            {
                ref var staged = ref _staged[i];
                if (staged.Tenant >= 0 && !Dedupe(View(staged), ref staged))
                    staged.Meters = null;
            }
        }
        finally
        {
            _dedupe.EndBatch();
        }
    }

    /// <summary>Aggregates one new staged event into every meter <see cref="PrepareStaged"/> prepared for it.</summary>
    private void ApplyMeters(scoped in EventRecordView e, ref StagedRecord staged)
    {
        if (staged.Meters is not { } meters)
            return;
        for (int i = 0; i < meters.Length; i++)
            ApplyMeter(meters[i], e, ref _prepared[staged.Prepared + i]);
    }

    /// <summary>The last value parsed from an event's data (several meters often read the same property).</summary>
    private struct ParsedValue
    {
        public static ParsedValue None => new() { Start = -1 };

        public int Start, Length;
        public bool Valid;
        public decimal Value;
    }

    /// <summary>Reads what the meter needs from the event: its value and group values (as offsets into the data;
    /// -1: absent) and its series id. Counts nothing: the event may yet turn out a duplicate.</summary>
    private void Prepare(CompiledMeter meter, scoped in EventRecordView e, ref PreparedMeter prepared, int groupsAt, ref ParsedValue parsed)
    {
        prepared.Series = null;
        if (e.IngestTimeUnixNanos < meter.CreatedAt)
        {
            prepared.State = PreparedState.NotCounted;
            return;
        }

        // One pass over the data finds the value and the group values.
        var groups = _preparedGroups.AsSpan(groupsAt, 2 * meter.GroupBy.Length);
        groups.Fill(-1);
        prepared.Groups = groupsAt;
        int valueStart = -1, valueLength = 0;
        var data = e.DataBytes;
        var valueProperty = meter.Aggregation == Aggregation.Count ? null : meter.ValueProperty;
        var groupBy = meter.GroupBy;
        foreach (var entry in e.Data)
        {
            if (valueProperty is not null && valueStart < 0 && entry.Key.SequenceEqual(valueProperty))
            {
                valueStart = OffsetIn(data, entry.Value);
                valueLength = entry.Value.Length;
            }
            for (int g = 0; g < groupBy.Length; g++)
            {
                if (groups[2 * g] < 0 && entry.Key.SequenceEqual(groupBy[g]))
                {
                    groups[2 * g] = OffsetIn(data, entry.Value);
                    groups[(2 * g) + 1] = entry.Value.Length;
                }
            }
        }

        decimal value = 0;
        var raw = valueStart >= 0 ? data.Slice(valueStart, valueLength) : default;
        if (valueProperty is not null)
        {
            if (valueStart >= 0 && meter.Aggregation != Aggregation.UniqueCount && (valueStart != parsed.Start || valueLength != parsed.Length))
            {
                parsed.Start = valueStart;
                parsed.Length = valueLength;
                parsed.Valid = TryParseDecimal(raw, out parsed.Value);
            }
            if (valueStart < 0 || (meter.Aggregation != Aggregation.UniqueCount && !parsed.Valid))
            {
                prepared.State = PreparedState.Invalid;
                return;
            }
            value = parsed.Value;
        }
        prepared.Value = value;
        prepared.WindowStart = Windows.Start(meter.BaseWindow, e.EventTimeUnixNanos);
        prepared.ValueStart = valueStart;
        prepared.ValueLength = valueLength;
        prepared.SeriesId = SeriesId(meter, e, data, groups, customerTotal: false);
        prepared.State = PreparedState.Ready;
    }

    private void ApplyMeter(CompiledMeter meter, scoped in EventRecordView e, ref PreparedMeter prepared)
    {
        if (prepared.State != PreparedState.Ready)
        {
            if (prepared.State == PreparedState.Invalid)
                meter.CountInvalid();
            return;
        }

        var data = e.DataBytes;
        var groups = _preparedGroups.AsSpan(prepared.Groups, 2 * meter.GroupBy.Length);
        long time = e.EventTimeUnixNanos;
        var level = meter.BaseWindow;
        long start = prepared.WindowStart;
        var series = prepared.Series;
        if (series is null)
            series = TouchSeries(prepared.SeriesId, meter, e, data, groups, customerTotal: false, start);
        else if (series.Touch(start))
            MarkStateChanged(series);

        if (meter.Aggregation == Aggregation.UniqueCount)
        {
            var raw = prepared.ValueStart >= 0 ? data.Slice(prepared.ValueStart, prepared.ValueLength) : default;
            ApplyUnique(meter, e, data, groups, series, raw, time, start);
            return;
        }

        var input = new AggregateInput { Aggregation = meter.Aggregation, Value = prepared.Value, Time = time, WindowEnd = Windows.End(level, start) };
        if (meter.Aggregation is Aggregation.Latest or Aggregation.TimeWeightedSum)
        {
            // Ties of equal event times are broken by the id's hash: any order of arrival gives the same result.
            var idHash = System.IO.Hashing.XxHash128.HashToUInt128(e.Id);
            input.IdLow = (ulong)idHash;
            input.IdHigh = (ulong)(idHash >> 64);
        }
        bool accepted;
        decimal delta;
        var hot = series.Hot;
        if (hot is not null ? start < hot.Start : start < series.LastWindow)
        {
            // A late event, older than the series' newest window: straight into the store (without taking a cache,
            // which holds the newest window).
            var key = new AggregateKey(series.Id, level, start);
            var output = _aggregates.Rmw(ref key, ref input);
            accepted = !output.Rejected;
            delta = output.Delta;
        }
        else
        {
            if (hot is null || start > hot.Start)
                hot = MoveHotWindow(series, level, start);
            accepted = hot.State.Apply(input, out delta);
            MarkHot(series, hot);
        }
        if (!accepted)
        {
            meter.CountInvalid();
            return;
        }
        AddToPeriodTotal(meter, series, e, time, input, delta);
    }

    /// <summary>Writes the series' cached window back to the store and loads the newer window <paramref name="start"/>
    /// (usually absent from the store: its first event); gives the series a cache first if it has none.</summary>
    private HotWindow MoveHotWindow(Series series, WindowSize level, long start)
    {
        var hot = series.Hot;
        if (hot is null)
        {
            hot = TakeHotWindow(series);
            series.Hot = hot;
        }
        else
        {
            WriteBack(series.Id, hot);
        }
        var key = new AggregateKey(series.Id, level, start);
        var input = default(AggregateInput);
        hot.State = _aggregates.TryRead(ref key, ref input, out var output) ? output.State : default;
        hot.Start = start;
        hot.Level = level;
        return hot;
    }

    /// <summary>How many series hold a cached window (read on the loop).</summary>
    internal int HotWindowCount => _hotWindows.Count;

    /// <summary>Slots the series table passed over when adding series (tests: recovery's inserts stay short).</summary>
    internal long SeriesInsertProbes => _series.InsertProbes;

    private void WriteBack(UInt128 series, HotWindow hot)
    {
        if (!hot.Dirty)
            return;
        var key = new AggregateKey(series, hot.Level, hot.Start);
        _aggregates.Upsert(ref key, ref hot.State);
        hot.Dirty = false;
    }

    /// <summary>A cache for <paramref name="series"/>: a new one while fewer than <see cref="AggregatorOptions.CachedWindows"/>
    /// exist, else one taken back from a series that has not used its own since the clock last passed it (its window
    /// written back first). The hand clears the marks it passes, so it finds one within one round.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private HotWindow TakeHotWindow(Series series)
    {
        if (_hotWindows.Count < _cachedWindows)
        {
            var fresh = new HotWindow { Owner = series };
            _hotWindows.Add(fresh);
            return fresh;
        }
        while (true)
        {
            if (_clockHand >= _hotWindows.Count)
                _clockHand = 0;
            var hot = _hotWindows[_clockHand++];
            if (hot.Used)
            {
                hot.Used = false;
                continue;
            }
            var owner = hot.Owner;
            WriteBack(owner.Id, hot);
            owner.Hot = null;
            hot.Owner = series;
            return hot;
        }
    }

    private void MarkHot(Series series, HotWindow hot)
    {
        hot.Used = true;
        if (hot.Dirty)
            return;
        hot.Dirty = true;
        _dirtySeries.Add(series);
    }

    /// <summary>Writes every changed cached window to the store (before a checkpoint).</summary>
    private void WriteBackHotWindows()
    {
        foreach (var series in _dirtySeries)
        {
            if (series.Hot is { } hot)
                WriteBack(series.Id, hot);
        }
        _dirtySeries.Clear();
    }

    /// <summary>UNIQUE_COUNT: first-seen markers per level (base window up to the month), for the series and, with a
    /// group-by, for the customer-wide series; each new marker counts one distinct value in its window.</summary>
    private void ApplyUnique(CompiledMeter meter, scoped in EventRecordView e, ReadOnlySpan<byte> data, ReadOnlySpan<int> groups,
        Series groupSeries, ReadOnlySpan<byte> value, long time, long baseStart)
    {
        var series = groupSeries.Id;
        var customerSeries = groupSeries;
        if (meter.HasCustomerTotalSeries)
            customerSeries = TouchSeries(SeriesId(meter, e, data, groups, customerTotal: true), meter, e, data, groups, customerTotal: true, baseStart);
        var total = customerSeries.Id;
        var count = new AggregateInput { Aggregation = Aggregation.UniqueCount };
        for (var level = meter.BaseWindow; level <= WindowSize.Month; level++)
        {
            long start = level == WindowSize.Month ? _months.Start(time) : Windows.Start(level, time);
            long end = Windows.End(level, start);
            bool newInSeries = TryMark(series, level, start, end, value);
            if (newInSeries)
                CountDistinct(series, level, start);
            bool newForCustomer = newInSeries;
            if (meter.HasCustomerTotalSeries)
            {
                newForCustomer = TryMark(total, level, start, end, value);
                if (newForCustomer)
                    CountDistinct(total, level, start);
            }
            if (level == WindowSize.Month && newForCustomer)
                AddToPeriodTotal(meter, customerSeries, e, time, count, 0);
        }
    }

    /// <summary>Inserts the first-seen marker of <paramref name="value"/> in a series' window; true when it is new.
    /// A marker is needed until no event of its window can arrive any more: the window's end plus the retention.</summary>
    private bool TryMark(UInt128 series, WindowSize level, long start, long end, ReadOnlySpan<byte> value)
    {
        var builder = new KeyBuilder(_scratch, KeyBuilder.Marker);
        builder.Hash128(series);
        builder.Byte((byte)level);
        builder.Int64(start);
        builder.Field(value);
        var key = new HashKey(builder.Hash());
        var expiry = new DedupeValue { ExpiresAt = end + _retention };
        return !_dedupe.Rmw(ref key, ref expiry).Existed;
    }

    private void CountDistinct(UInt128 series, WindowSize level, long start)
    {
        var key = new AggregateKey(series, level, start);
        var input = new AggregateInput { Aggregation = Aggregation.UniqueCount };
        _aggregates.Rmw(ref key, ref input);
    }

    private void AddToPeriodTotal(CompiledMeter meter, Series series, scoped in EventRecordView e, long time, in AggregateInput input, decimal delta)
    {
        var total = series.Total ?? FindPeriodTotal(meter, series, e);
        total.Add(_months.Start(time), input, delta);
        if (!total.StateChanged)
        {
            total.StateChanged = true;
            _changedTotals.Add(total);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private PeriodTotal FindPeriodTotal(CompiledMeter meter, Series series, scoped in EventRecordView e)
    {
        var builder = new KeyBuilder(_scratch, KeyBuilder.Entitlement);
        builder.Field(e.Tenant);
        builder.Field(meter.Key);
        builder.Field(e.Customer);
        // The series' strings name the total: nothing new is allocated for them.
        var total = _totals.GetOrAdd(builder.Hash(), series.Tenant, series.MeterKey, series.Customer, meter.Aggregation, out bool added);
        if (added)
            _ownedTotals.Add(total);
        series.Total = total;
        return total;
    }

    /// <summary>The series' identity: (tenant, meter, customer, kind, group values).</summary>
    private UInt128 SeriesId(CompiledMeter meter, scoped in EventRecordView e, ReadOnlySpan<byte> data, ReadOnlySpan<int> groups, bool customerTotal)
    {
        var builder = new KeyBuilder(_scratch, KeyBuilder.Series);
        builder.Field(e.Tenant);
        builder.Field(meter.Key);
        builder.Field(e.Customer);
        builder.Byte(customerTotal ? (byte)1 : (byte)0);
        if (!customerTotal)
        {
            int count = meter.GroupBy.Length;
            builder.Byte((byte)count);
            for (int g = 0; g < count; g++)
                builder.Field(GroupValue(data, groups, g));
        }
        return builder.Hash();
    }

    private Series TouchSeries(UInt128 id, CompiledMeter meter, scoped in EventRecordView e, ReadOnlySpan<byte> data, ReadOnlySpan<int> groups,
        bool customerTotal, long windowStart)
    {
        if (!_series.TryGet(id, out var series))
            series = AddSeries(id, meter, e.Customer, data, groups, customerTotal);
        if (series.Touch(windowStart))
            MarkStateChanged(series);
        return series;
    }

    private void MarkStateChanged(Series series)
    {
        if (series.StateChanged)
            return;
        series.StateChanged = true;
        _changedSeries.Add(series);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private Series AddSeries(UInt128 id, CompiledMeter meter, ReadOnlySpan<byte> customer, ReadOnlySpan<byte> data, ReadOnlySpan<int> groups, bool customerTotal)
    {
        var values = customerTotal || meter.GroupBy.Length == 0 ? [] : new string[meter.GroupBy.Length];
        for (int g = 0; g < values.Length; g++)
            values[g] = Encoding.UTF8.GetString(GroupValue(data, groups, g));
        string tenant = meter.Definition.Tenant;
        var series = new Series
        {
            Id = id,
            Tenant = tenant,
            MeterKey = meter.Definition.Key,
            Customer = _series.CustomerName(tenant, Encoding.UTF8.GetString(customer)),
            GroupValues = values,
            CustomerTotal = customerTotal,
        };
        _series.Add(series);
        return series;
    }

    /// <summary>A group value; an absent key counts as the empty value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ReadOnlySpan<byte> GroupValue(ReadOnlySpan<byte> data, ReadOnlySpan<int> groups, int g)
        => groups[2 * g] < 0 ? default : data.Slice(groups[2 * g], groups[(2 * g) + 1]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int OffsetIn(ReadOnlySpan<byte> outer, ReadOnlySpan<byte> inner)
        => (int)Unsafe.ByteOffset(ref MemoryMarshal.GetReference(outer), ref MemoryMarshal.GetReference(inner));

    /// <summary>A decimal number as ingest keeps it: the exact text, optionally with a sign, a fraction and an exponent.</summary>
    internal static bool TryParseDecimal(ReadOnlySpan<byte> text, out decimal value)
    {
        if (DecimalText.TryParseSimple(text, out value))
            return true;
        if (Utf8Parser.TryParse(text, out value, out int consumed) && consumed == text.Length)
            return true;
        return Utf8Parser.TryParse(text, out value, out consumed, 'E') && consumed == text.Length && text.Length > 0;
    }

    private void CountDuplicate(ReadOnlySpan<byte> tenant)
    {
        var builder = new KeyBuilder(_scratch, KeyBuilder.Tenant);
        builder.Field(tenant);
        var key = builder.Hash();
        if (!_tenants.TryGetValue(key, out var stats))
            stats = AddTenant(key, tenant);
        Volatile.Write(ref stats.Duplicates, stats.Duplicates + 1);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private TenantStats AddTenant(UInt128 key, ReadOnlySpan<byte> tenant)
    {
        var stats = new TenantStats(Encoding.UTF8.GetString(tenant));
        _tenants[key] = stats;
        return stats;
    }

    // ---------------------------------------------------------------- counters (any thread)

    public long Duplicates(string tenant)
        => _tenants.TryGetValue(KeyBuilder.TenantKey(tenant), out var stats) ? Volatile.Read(ref stats.Duplicates) : 0;

    /// <summary>Adds this partition's duplicates per tenant and invalid events per (tenant, meter) to the totals: one
    /// pass over each, whatever the number of tenants.</summary>
    public void AddAllCounts(Dictionary<string, long> duplicates, Dictionary<(string Tenant, string Key), long> invalid)
    {
        foreach (var stats in _tenants.Values)
            duplicates[stats.Tenant] = duplicates.GetValueOrDefault(stats.Tenant) + Volatile.Read(ref stats.Duplicates);
        foreach (var (key, meter) in Volatile.Read(ref _meters).ByKey)
            invalid[key] = invalid.GetValueOrDefault(key) + meter.Invalid;
    }

    /// <summary>Whether the loop is still replaying what the log had committed when it started (its counters, restored
    /// from the last checkpoint, may then be below what they were before the stop).</summary>
    public bool Replaying => Progress < _committedAtStart;

    public void AddInvalidCounts(string tenant, Dictionary<string, long> counts)
    {
        foreach (var (key, meter) in Volatile.Read(ref _meters).ByKey)
        {
            if (key.Tenant == tenant)
                counts[key.Key] = counts.GetValueOrDefault(key.Key) + meter.Invalid;
        }
    }

    // ---------------------------------------------------------------- work queued to the loop

    /// <summary>Runs <paramref name="run"/> on the loop once every record before <paramref name="minPosition"/> is applied.</summary>
    public Task<T> Submit<T>(long minPosition, Func<PartitionAggregator, CancellationToken, ValueTask<T>> run)
    {
        var work = new PartitionWork<T>(minPosition, run);
        if (Volatile.Read(ref _disposed) != 0)
            return Task.FromException<T>(new ObjectDisposedException(nameof(PartitionAggregator)));
        _work.Enqueue(work);
        Volatile.Read(ref _signal).TrySetResult();
        if (Volatile.Read(ref _failure) is { } failure)
        {
            // The loop is gone: nobody else will take work off the queue.
            while (_work.TryDequeue(out var stranded))
                stranded.Fail(new AggregatorStoppedException(Index, failure));
        }
        return work.Task;
    }

    private async ValueTask RunReadyWorkAsync(CancellationToken cancellationToken)
    {
        while (_work.TryDequeue(out var work))
            _waiting.Add(work);
        if (_waiting.Count == 0)
            return;
        long progress = Progress;
        for (int i = 0; i < _waiting.Count; i++)
        {
            var work = _waiting[i];
            if (work.MinPosition > progress)
                continue;
            _waiting.RemoveAt(i--);
            await work.RunAsync(this, cancellationToken).ConfigureAwait(false);
        }
    }

    // ---------------------------------------------------------------- queries (on the loop)

    public bool HasCustomer(string tenant, string customer) => _series.HasCustomer(tenant, customer);

    /// <summary>Reads the windows of every series that matches the plan and merges them into the plan's rows.</summary>
    public void Query(QueryPlan plan, RowAccumulator rows)
    {
        long retainedFrom = RetainedFrom(plan.WindowSize, plan.ReadLevel);
        // One customer: its series of every meter; all customers: the meter's series (no meter key to compare).
        bool oneCustomer = plan.Customer is not null;
        var candidates = oneCustomer ? _series.ForCustomer(plan.Tenant, plan.Customer!) : _series.ForMeter(plan.Tenant, plan.Meter.Key);
        var windows = new QueriedWindows();
        try
        {
            foreach (var series in candidates)
            {
                if ((oneCustomer && series.MeterKey != plan.Meter.Key) || series.CustomerTotal != plan.CustomerTotal || !plan.Matches(series))
                    continue;
                var level = plan.ReadLevel;
                // Only windows that can hold data: between the series' first and last base window, and from the first
                // whole window of the query's size that no window retention has passed (compaction drops expired
                // windows some time later; queries stop seeing them at once, and never answer a partial roll-up).
                long first = Math.Max(Math.Max(plan.From, Windows.Start(level, series.FirstWindow)), retainedFrom);
                long last = Math.Min(plan.To - 1, series.LastWindow);
                for (long start = first; start <= last; start = Windows.End(level, start))
                {
                    if (series.Hot is { } hot && start == hot.Start && level == hot.Level)
                    {
                        windows.Add(new QueriedWindow(series, start, hot.State));
                    }
                    else
                    {
                        var key = new AggregateKey(series.Id, level, start);
                        var input = default(AggregateInput);
                        var read = _aggregates.StartRead(ref key, ref input, out var output);
                        if (read == ReadStart.Pending)
                            windows.Pending.Add((series.Id, start), windows.Count);
                        if (read != ReadStart.Absent)
                            windows.Add(new QueriedWindow(series, start, output.State));
                    }
                    if (windows.Count == QueriedWindows.BatchSize)
                        AddQueriedRows(plan, windows, rows);
                }
            }
            AddQueriedRows(plan, windows, rows);
        }
        finally
        {
            // A query that failed half-way must not leave reads waiting: the loop's next wait would complete them
            // and take their outputs for its own.
            if (windows.Pending.Count > 0)
            {
                _readBack.Clear();
                _aggregates.CompleteReads(_readBack);
                _readBack.Clear();
            }
        }
    }

    /// <summary>The windows a query listed and not yet added to its rows; those read from the store's files wait
    /// together (<see cref="KvStore{TKey, TValue, TInput, TOutput, TFunctions}.StartRead"/>). Rows are still added in the
    /// order the windows were listed, not the order the reads complete: merging equal MIN or MAX values written with
    /// different scales (2.5, 2.50) keeps the first.</summary>
    private sealed class QueriedWindows : List<QueriedWindow>
    {
        /// <summary>512 windows of 112 bytes: the list's array stays off the large object heap.</summary>
        public const int BatchSize = 512;

        /// <summary>Where each window whose read waits is in the list.</summary>
        public Dictionary<(UInt128 Series, long Start), int> Pending { get; } = [];
    }

    private readonly record struct QueriedWindow(Series Series, long Start, AggregateState State);

    private void AddQueriedRows(QueryPlan plan, QueriedWindows windows, RowAccumulator rows)
    {
        if (windows.Pending.Count > 0)
        {
            _readBack.Clear();
            _aggregates.CompleteReads(_readBack);
            foreach (var (key, output) in _readBack)
            {
                int at = windows.Pending[(key.Series, key.WindowStart)];
                windows[at] = windows[at] with { State = output.State };
            }
            _readBack.Clear();
            windows.Pending.Clear();
        }
        var level = plan.ReadLevel;
        foreach (var (series, start, stored) in windows)
        {
            var state = stored;
            if (state.IsEmpty)
                continue; // absent from the store after all, or an empty window
            if (plan.Meter.Aggregation == Aggregation.TimeWeightedSum)
                state = state.CloseReading(Windows.End(level, start));
            rows.Add(series, Windows.Start(plan.WindowSize, start), state);
        }
        windows.Clear();
    }

    /// <summary>The start of the first window of <paramref name="size"/> whose base windows (of <paramref name="level"/>)
    /// have all not yet ended a window retention ago.</summary>
    private long RetainedFrom(WindowSize size, WindowSize level)
    {
        long firstKept = Windows.Start(level, _maxIngestTime - _windowRetention); // the base window holding the cut
        long start = Windows.Start(size, firstKept);
        return start == firstKept ? start : Windows.End(size, start);
    }

    // ---------------------------------------------------------------- checkpoints

    /// <summary>
    /// Takes a checkpoint at the current position (on the loop, between records): both FASTER checkpoints, then the
    /// state file, then the manifest that makes them one unit, then lets the log drop the records before the position.
    /// </summary>
    internal async ValueTask CheckpointAsync(CancellationToken cancellationToken)
    {
        long position = _position;
        if (position == _checkpointPosition)
        {
            MarkCheckpointed(); // nothing applied since the last checkpoint
            return;
        }
        // After a compaction the dedupe log begins later: its next checkpoint writes the index (KvStore.CheckpointAsync).
        CompactDedupe();
        WriteBackHotWindows();
        CompactWindows();
        var aggregates = await _aggregates.CheckpointAsync(withIndex: false, _indexCheckpointLogBytes, cancellationToken).ConfigureAwait(false);
        var dedupe = await _dedupe.CheckpointAsync(withIndex: false, _indexCheckpointLogBytes, cancellationToken).ConfigureAwait(false);
        long sequence = _sequence + 1;
        // A new name at every attempt: an attempt that failed may still have written its manifest (the directory
        // flush after the rename failed), and that manifest names its state file until a later one replaces it.
        string stateFile = $"state-{++_stateFileNumber:D10}.bin";
        // A full state file when the chain's changes outweigh its full file (or the chain is long): what a
        // checkpoint writes follows what changed, and recovery reads at most about twice the state.
        bool full = _stateChain.Count == 0 || _stateDeltaBytes >= _stateBaseBytes || _stateChain.Count >= MaxStateChain;
        long bytes = WriteState(Path.Combine(_directory, stateFile), full);
        string[] chain = full ? [stateFile] : [.. _stateChain, stateFile];
        new CheckpointManifest(sequence, position, aggregates, dedupe, string.Join(' ', chain)).Write(_directory);
        _sequence = sequence;
        _checkpointPosition = position;
        MarkCheckpointed();
        if (full)
        {
            _stateBaseBytes = bytes;
            _stateDeltaBytes = 0;
        }
        else
        {
            _stateDeltaBytes += bytes;
        }
        _stateChain.Clear();
        _stateChain.AddRange(chain);
        // Cleared only now: had the checkpoint failed, the next one must still write these changes.
        foreach (var series in _changedSeries)
            series.StateChanged = false;
        _changedSeries.Clear();
        foreach (var total in _changedTotals)
            total.StateChanged = false;
        _changedTotals.Clear();

        _aggregates.PurgeExcept(aggregates);
        _dedupe.PurgeExcept(dedupe);
        foreach (string file in Directory.EnumerateFiles(_directory, "state-*.bin"))
        {
            if (!_stateChain.Contains(Path.GetFileName(file)))
                File.Delete(file);
        }
        _log.TruncateBefore(position);
    }

    private void MarkCheckpointed() => Volatile.Write(ref _checkpointedAtUnixMs, _time.GetUtcNow().ToUnixTimeMilliseconds());

    /// <summary>When every applied record was last known to be in a checkpoint (one taken, or nothing applied since
    /// the last); null before this process's first checkpoint.</summary>
    public DateTimeOffset? CheckpointedAt
        => Volatile.Read(ref _checkpointedAtUnixMs) is long ms and > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null;

    /// <summary>
    /// Drops the expired event ids and markers at the beginning of the dedupe log once the log is long: below the
    /// newest mark a retention old (<see cref="CompactionMarks"/>). An id is kept for the retention after the later
    /// of its event time (at most ingest's future skew ahead) and its ingest time, so little there is still live
    /// (UNIQUE_COUNT markers of windows not yet a retention past their end, ids of events timed ahead).
    /// </summary>
    private void CompactDedupe()
    {
        var log = _dedupe.Kv.Log;
        _dedupeMarks.Record(log.TailAddress, _maxIngestTime);
        long until = Math.Min(_dedupeMarks.ExpiredUntil(_maxIngestTime), log.SafeReadOnlyAddress);
        if (until <= log.BeginAddress || _dedupe.LogBytes <= _compactionBytes)
        {
            _dedupeMarks.KeepNewestExpired(_maxIngestTime);
            return;
        }
        // Lookup, not Scan: Scan reads the whole rest of the log to find newer versions of the keys; Lookup asks the
        // index, and only for the few records still live (the expired ones are dropped without a look).
        long compacted = _dedupe.Session.Compact(until, FASTER.core.CompactionType.Lookup, new ExpiredDedupeEntries(_maxIngestTime));
        _dedupeMarks.Compacted(compacted);
    }

    /// <summary>
    /// Drops the windows that ended more than <see cref="AggregatorOptions.WindowRetention"/> ago from the aggregates
    /// store: below the newest mark a window retention old (<see cref="CompactionMarks"/>), where nearly every window
    /// ended more than a retention ago. Called after the write-back of the cached windows, so that the mark covers
    /// them.
    /// </summary>
    private void CompactWindows()
    {
        var log = _aggregates.Kv.Log;
        _windowMarks.Record(log.TailAddress, _maxIngestTime);
        long until = Math.Min(_windowMarks.ExpiredUntil(_maxIngestTime), log.SafeReadOnlyAddress);
        if (until <= log.BeginAddress)
        {
            _windowMarks.KeepNewestExpired(_maxIngestTime);
            return;
        }
        long compacted = _aggregates.Session.Compact(until, FASTER.core.CompactionType.Lookup, new ExpiredWindows(_maxIngestTime, _windowRetention));
        _windowMarks.Compacted(compacted);
    }

    /// <summary>Compacts now, whatever the log's length (tests).</summary>
    internal void CompactDedupeNow()
    {
        long until = _dedupe.Kv.Log.SafeReadOnlyAddress;
        if (until > _dedupe.Kv.Log.BeginAddress)
            _dedupe.Session.Compact(until, FASTER.core.CompactionType.Lookup, new ExpiredDedupeEntries(_maxIngestTime));
    }

    internal long DedupeLogBegin => _dedupe.Kv.Log.BeginAddress;

    internal long DedupeLogTail => _dedupe.Kv.Log.TailAddress;

    internal long AggregatesLogBegin => _aggregates.Kv.Log.BeginAddress;

    /// <summary>Operations on the aggregates store that waited for its files on their own (tests).</summary>
    internal long AggregatesSingleWaits => _aggregates.SingleWaits;

    internal long AggregatesLogTail => _aggregates.Kv.Log.TailAddress;

    // Format 2 adds the dedupe marks at the end, format 3 the window marks after them; formats 1 and 2 (without
    // them) still read. A file after the first of a chain holds only the series and totals changed since the file
    // before it (the layout is the same).
    private const int StateFormat = 3;

    /// <summary>The number in a state file's name (<c>state-0000000012.bin</c>: 12).</summary>
    private static long StateFileNumber(string stateFile)
        => long.TryParse(stateFile.AsSpan("state-".Length, stateFile.Length - "state-".Length - ".bin".Length), NumberStyles.None, CultureInfo.InvariantCulture, out long number)
            ? number
            : throw new InvalidOperationException($"The aggregator checkpoint manifest names a state file '{stateFile}' not of the form state-N.bin.");

    // Files in a state chain before a checkpoint writes a full one again.
    private const int MaxStateChain = 256;

    /// <summary>Writes a state file: the partition's counters and dedupe marks, and either every series and
    /// current-period total (<paramref name="full"/>) or those changed since the chain's last file. Returns its size.</summary>
    private long WriteState(string path, bool full)
    {
        var series = full ? _series.All : _changedSeries;
        IReadOnlyCollection<PeriodTotal> totals = full ? _ownedTotals : _changedTotals;
        using (var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
        {
            using (var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
            {
                writer.Write(StateFormat);
                writer.Write(_maxIngestTime);
                writer.Write(_malformed);
                writer.Write(_tenants.Count);
                foreach (var stats in _tenants.Values)
                {
                    writer.Write(stats.Tenant);
                    writer.Write(stats.Duplicates);
                }
                writer.Write(_meters.ByKey.Count);
                foreach (var (key, meter) in _meters.ByKey)
                {
                    writer.Write(key.Tenant);
                    writer.Write(key.Key);
                    writer.Write(meter.Invalid);
                }
                writer.Write(full ? _series.Count : _changedSeries.Count);
                foreach (var one in series)
                {
                    WriteUInt128(writer, one.Id);
                    writer.Write(one.Tenant);
                    writer.Write(one.MeterKey);
                    writer.Write(one.Customer);
                    writer.Write(one.CustomerTotal);
                    writer.Write(one.GroupValues.Length);
                    foreach (string value in one.GroupValues)
                        writer.Write(value);
                    writer.Write(one.FirstWindow);
                    writer.Write(one.LastWindow);
                }
                writer.Write(totals.Count);
                foreach (var total in totals)
                {
                    total.Read(out long periodStart, out var state);
                    WriteUInt128(writer, total.Key);
                    writer.Write(periodStart);
                    WriteState(writer, state);
                }
                _dedupeMarks.Write(writer);
                _windowMarks.Write(writer);
            }
            stream.Flush(flushToDisk: true);
            return stream.Length;
        }
    }

    /// <summary>The aggregation of the series' meter, which its current-period total needs (it keeps only what that
    /// aggregation uses). Meters are never removed from the catalog, nor their aggregation changed.</summary>
    private Aggregation AggregationOf(Series series, string path)
        => _catalog.Find(series.Tenant, series.MeterKey)?.Aggregation
            ?? throw new InvalidOperationException($"The aggregator state file '{path}' has current-period totals of meter '{series.MeterKey}' of tenant "
                + $"'{series.Tenant}', which the meter catalog does not hold: the catalog is not the one this aggregator state was written with.");

    /// <summary>Applies one file of a state chain over what the earlier files restored: its counters and marks
    /// replace theirs, its series and totals are added or replace theirs. <paramref name="names"/> maps each total's
    /// key to a series of its (tenant, meter, customer), over the whole chain.</summary>
    private void ReadState(string path, Dictionary<UInt128, Series> names)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        using var reader = new BinaryReader(stream, Encoding.UTF8);
        int format = reader.ReadInt32();
        if (format is < 1 or > StateFormat)
            throw new InvalidOperationException($"The aggregator state file '{path}' has format {format}; this version reads formats 1 to {StateFormat}.");
        _maxIngestTime = reader.ReadInt64();
        _malformed = reader.ReadInt64();
        // Every file holds all counters: the last file's replace the earlier ones'.
        _tenants.Clear();
        _restoredInvalid.Clear();
        for (int i = reader.ReadInt32(); i > 0; i--)
        {
            var stats = new TenantStats(reader.ReadString()) { Duplicates = reader.ReadInt64() };
            _tenants[KeyBuilder.TenantKey(stats.Tenant)] = stats;
        }
        for (int i = reader.ReadInt32(); i > 0; i--)
        {
            string tenant = reader.ReadString();
            string key = reader.ReadString();
            _restoredInvalid[(tenant, key)] = reader.ReadInt64();
        }
        // Tenants and meter keys repeat in every series: one string each (not one per series), as when applied.
        var shared = new Dictionary<string, string>(StringComparer.Ordinal);
        string Shared(string name) => shared.TryAdd(name, name) ? name : shared[name];
        int seriesCount = reader.ReadInt32();
        _series.EnsureCapacity(seriesCount); // a full file lists them in slot order: see there
        for (int i = seriesCount; i > 0; i--)
        {
            var id = ReadUInt128(reader);
            string tenant = Shared(reader.ReadString()), meterKey = Shared(reader.ReadString());
            string customer = _series.CustomerName(tenant, reader.ReadString());
            bool customerTotal = reader.ReadBoolean();
            int valueCount = reader.ReadInt32();
            var values = valueCount == 0 ? [] : new string[valueCount];
            for (int v = 0; v < values.Length; v++)
                values[v] = reader.ReadString();
            long first = reader.ReadInt64(), last = reader.ReadInt64();
            if (!_series.TryGet(id, out var series))
            {
                series = new Series { Id = id, Tenant = tenant, MeterKey = meterKey, Customer = customer, GroupValues = values, CustomerTotal = customerTotal };
                _series.Add(series);
                // A total is not written with its names: every total was made for a series of the same (tenant,
                // meter, customer), written with it or before it, and series are never dropped, so the series name it.
                names.TryAdd(KeyBuilder.EntitlementKey(tenant, meterKey, customer), series);
            }
            series.Touch(first);
            series.Touch(last);
        }
        for (int i = reader.ReadInt32(); i > 0; i--)
        {
            var key = ReadUInt128(reader);
            if (!names.TryGetValue(key, out var named))
                throw new InvalidOperationException($"The aggregator state file '{path}' has a current-period total ({key}) that no series names; the file is damaged.");
            var total = _totals.GetOrAdd(key, named.Tenant, named.MeterKey, named.Customer, AggregationOf(named, path), out bool added);
            long periodStart = reader.ReadInt64();
            total.Write(periodStart, ReadState(reader));
            if (added)
                _ownedTotals.Add(total);
        }
        _dedupeMarks.Clear();
        _windowMarks.Clear();
        if (format >= 2)
            _dedupeMarks.Read(reader);
        if (format >= 3)
            _windowMarks.Read(reader);
    }

    private static void WriteUInt128(BinaryWriter writer, UInt128 value)
    {
        writer.Write((ulong)value);
        writer.Write((ulong)(value >> 64));
    }

    private static UInt128 ReadUInt128(BinaryReader reader)
    {
        ulong low = reader.ReadUInt64();
        return new UInt128(reader.ReadUInt64(), low);
    }

    private static void WriteState(BinaryWriter writer, in AggregateState state)
    {
        writer.Write(state.Sum);
        writer.Write(state.Min);
        writer.Write(state.Max);
        writer.Write(state.Latest);
        writer.Write(state.Count);
        writer.Write(state.LatestTime);
        writer.Write(state.LatestIdLow);
        writer.Write(state.LatestIdHigh);
    }

    private static AggregateState ReadState(BinaryReader reader) => new()
    {
        Sum = reader.ReadDecimal(),
        Min = reader.ReadDecimal(),
        Max = reader.ReadDecimal(),
        Latest = reader.ReadDecimal(),
        Count = reader.ReadInt64(),
        LatestTime = reader.ReadInt64(),
        LatestIdLow = reader.ReadUInt64(),
        LatestIdHigh = reader.ReadUInt64(),
    };

    // ---------------------------------------------------------------- shutdown

    /// <summary>Stops the loop, takes the final checkpoint and closes the stores.</summary>
    public ValueTask DisposeAsync() => CloseAsync(checkpoint: true);

    /// <summary>Stops without a checkpoint, as a crash would (tests): what is not checkpointed is replayed on restart.</summary>
    internal ValueTask CrashAsync() => CloseAsync(checkpoint: false);

    private async ValueTask CloseAsync(bool checkpoint)
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        _stop.Cancel();
        try
        {
            try
            {
                await _loop.ConfigureAwait(false);
            }
            catch (Exception) when (Volatile.Read(ref _failure) is not null)
            {
                // The loop stopped on a failure, already reported (Failure: health check, metrics, every request
                // answered unavailable). Closing does not throw it again, which would stop the server's shutdown
                // before the event log's; nor checkpoints: restart recovers from the last good checkpoint.
                checkpoint = false;
            }
            // The loop has ended, so this thread is now the stores' only user.
            if (checkpoint)
                await CheckpointAsync(CancellationToken.None).ConfigureAwait(false);
        }
        finally
        {
            FailWork(new ObjectDisposedException(nameof(PartitionAggregator), "The aggregator was stopped."));
            _reader.Dispose();
            _aggregates.Dispose();
            _dedupe.Dispose();
            _stop.Dispose();
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>Work queued to a partition's loop.</summary>
internal abstract class PartitionWork(long minPosition)
{
    public long MinPosition { get; } = minPosition;

    public abstract ValueTask RunAsync(PartitionAggregator partition, CancellationToken cancellationToken);

    public abstract void Fail(Exception error);
}

internal sealed class PartitionWork<T>(long minPosition, Func<PartitionAggregator, CancellationToken, ValueTask<T>> run) : PartitionWork(minPosition)
{
    private readonly TaskCompletionSource<T> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task<T> Task => _done.Task;

    public override async ValueTask RunAsync(PartitionAggregator partition, CancellationToken cancellationToken)
    {
        try
        {
            _done.TrySetResult(await run(partition, cancellationToken).ConfigureAwait(false));
        }
        catch (Exception e)
        {
            _done.TrySetException(e);
        }
    }

    public override void Fail(Exception error) => _done.TrySetException(error);
}
