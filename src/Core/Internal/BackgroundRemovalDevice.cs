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
/// </summary>
internal sealed class BackgroundRemovalDevice : StorageDeviceBase
{
    /// <summary>Prefix of a segment file renamed for removal.</summary>
    internal const string RemovedPrefix = "removed-";

    private readonly IDevice _inner;
    private readonly object _gate = new();
    private Task _removals = Task.CompletedTask;
    private Exception? _removalFailure;
    private volatile bool _closing;

    private BackgroundRemovalDevice(IDevice inner)
        : base(inner.FileName, inner.SectorSize, inner.Capacity)
    {
        _inner = inner;
        // The inner device found the existing segment files (recoverDevice); truncation starts from them.
        startSegment = inner.StartSegment;
        endSegment = inner.EndSegment;
    }

    /// <summary>Opens the device for the segment files named <paramref name="fileName"/>.N, and unlinks (now, in
    /// the background) what an earlier run had renamed for removal but not yet unlinked.</summary>
    public static BackgroundRemovalDevice Open(string fileName)
    {
        var inner = Devices.CreateLogDevice(fileName, preallocateFile: false, deleteOnClose: false,
            capacity: Devices.CAPACITY_UNSPECIFIED, recoverDevice: true);
        var device = new BackgroundRemovalDevice(inner);
        string directory = Path.GetDirectoryName(Path.GetFullPath(fileName))!;
        foreach (string leftover in Directory.EnumerateFiles(directory, RemovedPrefix + Path.GetFileName(fileName) + ".*"))
            device.Unlink(leftover);
        return device;
    }

    /// <summary>The first failure of a background unlink, if any (the segment was already gone for FASTER; a file
    /// that could not be unlinked only takes disk space).</summary>
    public Exception? RemovalFailure => Volatile.Read(ref _removalFailure);

    /// <summary>Completes when every removal requested so far has unlinked its file.</summary>
    public Task RemovalsCompleted
    {
        get
        {
            lock (_gate)
                return _removals;
        }
    }

    public override void Initialize(long segmentSize, LightEpoch? epoch = null, bool omitSegmentIdFromFilename = false)
    {
        base.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
        _inner.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
    }

    public override void RemoveSegmentAsync(int segment, AsyncCallback callback, IAsyncResult result)
    {
        string path = GetSegmentFilename(FileName, segment);
        string renamed = Path.Combine(Path.GetDirectoryName(path)!, RemovedPrefix + Path.GetFileName(path));
        bool moved;
        try
        {
            File.Move(path, renamed, overwrite: true);
            moved = true;
        }
        catch (FileNotFoundException)
        {
            moved = false; // never written, or already gone
        }
        catch (IOException)
        {
            moved = false; // cannot rename (another platform's locking): the inner device deletes it in place
        }
        _inner.RemoveSegment(segment);
        callback(result);
        if (moved)
            Unlink(renamed);
    }

    // Shrinking a renamed file in steps, with a pause between, spreads the page cache's work over about half a
    // second: unlinked whole, a 256 MiB segment kept one of this machine's two cores in the kernel for up to 0.28 s.
    private const long ShrinkStepBytes = 16L << 20;
    private static readonly TimeSpan ShrinkPause = TimeSpan.FromMilliseconds(20);

    private void Unlink(string path)
    {
        lock (_gate)
            _removals = _removals.ContinueWith(_ => UnlinkGraduallyAsync(path), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default).Unwrap();
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
                    if (length > 0 && !_closing)
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
            Interlocked.CompareExchange(ref _removalFailure, e, null);
        }
    }

    public override void WriteAsync(IntPtr sourceAddress, int segmentId, ulong destinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context)
        => _inner.WriteAsync(sourceAddress, segmentId, destinationAddress, numBytesToWrite, callback, context);

    public override void ReadAsync(int segmentId, ulong sourceAddress, IntPtr destinationAddress, uint readLength, DeviceIOCompletionCallback callback, object context)
        => _inner.ReadAsync(segmentId, sourceAddress, destinationAddress, readLength, callback, context);

    public override long GetFileSize(int segment) => _inner.GetFileSize(segment);

    public override bool Throttle() => _inner.Throttle();

    public override bool TryComplete() => _inner.TryComplete();

    public override void Reset() => _inner.Reset();

    public override void Dispose()
    {
        _closing = true; // what is left is unlinked without pauses
        _inner.Dispose();
        // Removals are short and bounded (one unlink each); waiting keeps a closed log from changing its
        // directory afterwards (tests delete it, a restart reopens it).
        RemovalsCompleted.GetAwaiter().GetResult();
    }
}
