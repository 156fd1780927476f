using FASTER.core;

namespace AlphaMesh.Core.Internal;

/// <summary>
/// A FASTER device (the one <see cref="Devices.CreateLogDevice"/> makes) whose truncated segment files are
/// unlinked on a background task instead of on the thread that truncates.
/// <para>
/// Why: unlinking a segment frees its pages in the kernel's page cache, which took 150-270 ms for a 256 MiB segment
/// here. FASTER removes segments synchronously inside an epoch action on the thread that moves the log's begin
/// address, which for a FasterLog is its commit path, so every checkpoint's truncation stalled the partition's
/// commits, and the replies of every batch waiting for them, by about half a second (two segments). The
/// aggregator's FASTER KV stores use it too: their compaction frees segments inside the partition's loop.
/// </para>
/// <para>
/// How: a removed segment's file is first renamed (cheap), then the inner device drops its handles (it finds no file
/// left to delete), FASTER is told the segment is gone, and the renamed file is unlinked later, one at a time, on
/// the thread pool. The new name does not start with the log's file name, so the inner device never takes it for a
/// segment when it recovers; files left behind by a crash are unlinked when the device is next opened.
/// </para>
/// <para>
/// Opened with <c>deferRemovals</c> (the aggregator's FASTER KV stores), a segment FASTER removes is only noted, and
/// is removed by <see cref="RemoveDeferredSegments"/>. Why: FASTER truncates a store's log when its checkpoint
/// commits, but for the aggregator a checkpoint counts only once its manifest is written; until then recovery uses the
/// previous checkpoint, which needs the segments below the new beginning (after a dedupe compaction). Removed at
/// once, a checkpoint that failed before its manifest, or a crash in between, left a store that could not recover.
/// </para>
/// </summary>
internal sealed class BackgroundRemovalDevice : StorageDeviceBase
{
    /// <summary>Prefix of a segment file renamed for removal.</summary>
    internal const string RemovedPrefix = "removed-";

    // Shrinking a renamed file in steps, with a pause between, spreads the page cache's work over about half a
    // second: unlinked whole, a 256 MiB segment kept one of this machine's two cores in the kernel for up to 0.28 s.
    private const long ShrinkStepBytes = 16L << 20;
    private static readonly TimeSpan ShrinkPause = TimeSpan.FromMilliseconds(20);

    private readonly IDevice _inner;
    private readonly object _gate = new();
    private Task _removals = Task.CompletedTask;
    private Task _held = Task.CompletedTask;
    private readonly bool _deferRemovals;
    private readonly List<int> _deferred = [];
    private Exception? _removalFailure;
    private bool _closing;

    private BackgroundRemovalDevice(IDevice inner, bool deferRemovals)
        : base(inner.FileName, inner.SectorSize, inner.Capacity)
    {
        _inner = inner;
        _deferRemovals = deferRemovals;
        // The inner device found the existing segment files (recoverDevice); truncation starts from them.
        startSegment = inner.StartSegment;
        endSegment = inner.EndSegment;
    }

    /// <summary>Opens the device for the segment files named <paramref name="fileName"/>.N, and unlinks (in the
    /// background) what an earlier run had renamed for removal but not yet unlinked. With
    /// <paramref name="deferRemovals"/>, segments FASTER removes stay until <see cref="RemoveDeferredSegments"/>.</summary>
    public static BackgroundRemovalDevice Open(string fileName, bool deferRemovals = false)
    {
        var inner = Devices.CreateLogDevice(fileName, preallocateFile: false, deleteOnClose: false,
            capacity: Devices.CAPACITY_UNSPECIFIED, recoverDevice: true);
        var device = new BackgroundRemovalDevice(inner, deferRemovals);
        string directory = Path.GetDirectoryName(Path.GetFullPath(fileName))!;
        foreach (string leftover in Directory.EnumerateFiles(directory, RemovedPrefix + Path.GetFileName(fileName) + ".*"))
            device.UnlinkLater(leftover);
        return device;
    }

    /// <summary>The first failure of a removal, if any (the segment was already gone for FASTER; a file that could
    /// not be unlinked only takes disk space, and the next <see cref="Open"/> tries again). Every failure is also
    /// counted on <c>/metrics</c> (<see cref="AlphaMeshMetrics.SegmentRemovalFailures"/>).</summary>
    public Exception? RemovalFailure => Volatile.Read(ref _removalFailure);

    /// <summary>Completes when every unlink queued so far is done.</summary>
    public Task RemovalsCompleted
    {
        get
        {
            lock (_gate)
                return _removals;
        }
    }

    /// <summary>Test hook: unlinks queued from now on wait for <paramref name="release"/> (a crash can then be
    /// simulated between a segment's rename and its unlink).</summary>
    internal void HoldRemovalsUntil(Task release)
    {
        lock (_gate)
            _held = release;
    }

    public override void Initialize(long segmentSize, LightEpoch? epoch = null, bool omitSegmentIdFromFilename = false)
    {
        base.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
        _inner.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
    }

    /// <summary>Segments FASTER removed that wait for <see cref="RemoveDeferredSegments"/> (deferring devices only).</summary>
    public int DeferredSegmentCount
    {
        get
        {
            lock (_gate)
                return _deferred.Count;
        }
    }

    /// <summary>Called by FASTER inside an epoch action: it must call <paramref name="callback"/> and not throw.
    /// FASTER also calls it after the device is disposed (a FasterLog's truncation runs on a task of its own that
    /// its Dispose does not wait for): the file is then deleted in place, or, deferring, left for the next run
    /// (whose first checkpoint truncates from the lowest segment on disk).</summary>
    public override void RemoveSegmentAsync(int segment, AsyncCallback callback, IAsyncResult result)
    {
        try
        {
            if (_deferRemovals)
            {
                lock (_gate)
                    _deferred.Add(segment);
            }
            else
            {
                Remove(segment);
            }
        }
        finally
        {
            callback(result);
        }
    }

    /// <summary>Removes the segments FASTER removed so far (a deferring device keeps them until this is called: once
    /// nothing recovery could use still needs them).</summary>
    public void RemoveDeferredSegments()
    {
        int[] segments;
        lock (_gate)
        {
            segments = [.. _deferred];
            _deferred.Clear();
        }
        foreach (int segment in segments)
            Remove(segment);
    }

    /// <summary>Renames the segment's file, lets the inner device drop its handles and unlinks the file later.
    /// Never throws: a failure is recorded (the segment is gone for FASTER either way).</summary>
    private void Remove(int segment)
    {
        string path = GetSegmentFilename(FileName, segment);
        string renamed = Path.Combine(Path.GetDirectoryName(path)!, RemovedPrefix + Path.GetFileName(path));
        try
        {
            bool moved = false;
            lock (_gate)
            {
                if (!_closing)
                {
                    try
                    {
                        File.Move(path, renamed, overwrite: true);
                        moved = true;
                    }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                    {
                        // Never written, already gone, or not renamable: deleted in place below.
                    }
                }
            }
            _inner.RemoveSegment(segment); // drops its handles (and deletes the file if it still has one open)
            if (moved)
                UnlinkLater(renamed);
            else
                File.Delete(path); // no error if it is gone
        }
        catch (Exception e)
        {
            RecordFailure(e);
        }
    }

    private void UnlinkLater(string path)
    {
        lock (_gate)
        {
            var held = _held;
            _removals = _removals.ContinueWith(async _ =>
            {
                await held.ConfigureAwait(false);
                await UnlinkGraduallyAsync(path).ConfigureAwait(false);
            }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default).Unwrap();
        }
    }

    private async Task UnlinkGraduallyAsync(string path)
    {
        try
        {
            using (var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Write))
            {
                for (long length = RandomAccess.GetLength(handle); length > 0;)
                {
                    length = Math.Max(0, length - ShrinkStepBytes);
                    RandomAccess.SetLength(handle, length);
                    if (length > 0 && !Volatile.Read(ref _closing))
                        await Task.Delay(ShrinkPause).ConfigureAwait(false);
                }
            }
            File.Delete(path);
        }
        catch (FileNotFoundException)
        {
            // already gone
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            RecordFailure(e);
        }
    }

    private void RecordFailure(Exception e)
    {
        Interlocked.CompareExchange(ref _removalFailure, e, null);
        AlphaMeshMetrics.SegmentRemovalFailures.Add(1);
    }

    public override void WriteAsync(IntPtr sourceAddress, int segmentId, ulong destinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context)
        => _inner.WriteAsync(sourceAddress, segmentId, destinationAddress, numBytesToWrite, callback, context);

    public override void ReadAsync(int segmentId, ulong sourceAddress, IntPtr destinationAddress, uint readLength, DeviceIOCompletionCallback callback, object context)
        => _inner.ReadAsync(segmentId, sourceAddress, destinationAddress, readLength, callback, context);

    public override long GetFileSize(int segment) => _inner.GetFileSize(segment);

    public override bool Throttle() => _inner.Throttle();

    public override bool TryComplete() => _inner.TryComplete();

    public override void Reset() => _inner.Reset();

    /// <summary>Closes the files and waits for the queued unlinks, which run without their pauses from now on.</summary>
    public async ValueTask DisposeAsync()
    {
        Task removals;
        lock (_gate)
        {
            _closing = true;
            removals = _removals;
        }
        _inner.Dispose();
        await removals.ConfigureAwait(false);
    }

    public override void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}
