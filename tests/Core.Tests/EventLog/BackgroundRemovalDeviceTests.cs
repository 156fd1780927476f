using AlphaMesh.Core.Internal;
using FASTER.core;

namespace AlphaMesh.Core.Tests.EventLog;

/// <summary>The device's own removal path, on real files: rename, tell FASTER, unlink later.</summary>
public sealed class BackgroundRemovalDeviceTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "alphamesh-device-tests", Guid.NewGuid().ToString("N"));

    public BackgroundRemovalDeviceTests() => Directory.CreateDirectory(_directory);

    public void Dispose()
    {
        if (Directory.Exists(_directory))
            Directory.Delete(_directory, recursive: true);
    }

    private string Segment(int index) => Path.Combine(_directory, $"log.{index}");

    /// <summary>Segment files as a log of <paramref name="count"/> segments leaves them (sparse: the size matters
    /// for the stepwise shrinking, the page cache does not).</summary>
    private void CreateSegments(int count, long length)
    {
        for (int i = 0; i < count; i++)
        {
            using var file = new FileStream(Segment(i), FileMode.CreateNew, FileAccess.Write);
            file.SetLength(length);
        }
    }

    private string[] FilesLeft() => [.. Directory.EnumerateFiles(_directory).Select(Path.GetFileName).Order(StringComparer.Ordinal)!];

    private BackgroundRemovalDevice OpenDevice(LightEpoch epoch, long segmentSize, bool deferRemovals = false)
    {
        var device = BackgroundRemovalDevice.Open(Path.Combine(_directory, "log"), deferRemovals);
        device.Initialize(segmentSize, epoch);
        return device;
    }

    [Fact]
    public async Task TruncateUntilSegment_ExistingSegments_RenamesThemAtOnceAndUnlinksThemLater()
    {
        // 40 MiB each: the unlink shrinks them in three steps first.
        CreateSegments(4, 40L << 20);
        var epoch = new LightEpoch();
        var device = OpenDevice(epoch, 64L << 20);
        Assert.Equal(0, device.StartSegment);
        Assert.Equal(3, device.EndSegment);
        var release = new TaskCompletionSource();
        device.HoldRemovalsUntil(release.Task);

        device.TruncateUntilSegment(2);

        // FASTER sees the segments gone at once; the files wait, renamed, for the background unlink.
        Assert.Equal(2, device.StartSegment);
        Assert.Equal(["log.2", "log.3", "removed-log.0", "removed-log.1"], FilesLeft());
        release.SetResult();
        await device.RemovalsCompleted.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Null(device.RemovalFailure);
        Assert.Equal(["log.2", "log.3"], FilesLeft());
        device.Dispose();
        epoch.Dispose();
    }

    [Fact]
    public void Open_CrashBetweenRenameAndUnlink_UnlinksTheRenamedFilesAndRecoversOnlyTheSegments()
    {
        CreateSegments(4, 4096);
        var epoch = new LightEpoch();
        var crashed = OpenDevice(epoch, 1L << 20);
        var never = new TaskCompletionSource();
        crashed.HoldRemovalsUntil(never.Task);
        crashed.TruncateUntilSegment(2);
        Assert.Contains("removed-log.0", FilesLeft());

        // The process dies here: no Dispose, the renamed files stay. The next run must not take them for segments.
        var reopened = BackgroundRemovalDevice.Open(Path.Combine(_directory, "log"));
        reopened.Dispose(); // waits for its unlinks

        Assert.Equal(2, reopened.StartSegment);
        Assert.Equal(3, reopened.EndSegment);
        Assert.Null(reopened.RemovalFailure);
        Assert.Equal(["log.2", "log.3"], FilesLeft());
        never.SetResult();
        crashed.Dispose();
        epoch.Dispose();
    }

    [Fact]
    public async Task TruncateUntilSegment_DeferringDevice_KeepsTheFilesUntilRemoveDeferredSegments()
    {
        CreateSegments(4, 4096);
        var epoch = new LightEpoch();
        var device = OpenDevice(epoch, 1L << 20, deferRemovals: true);

        device.TruncateUntilSegment(2);

        // FASTER sees the segments gone; their files stay, under their own names, for a recovery that may need them.
        Assert.Equal(2, device.StartSegment);
        Assert.Equal(2, device.DeferredSegmentCount);
        Assert.Equal(["log.0", "log.1", "log.2", "log.3"], FilesLeft());

        device.RemoveDeferredSegments();
        await device.RemovalsCompleted.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, device.DeferredSegmentCount);
        Assert.Null(device.RemovalFailure);
        Assert.Equal(["log.2", "log.3"], FilesLeft());
        device.Dispose();
        epoch.Dispose();
    }

    [Fact]
    public void Open_CrashBeforeRemoveDeferredSegments_FindsTheDeferredSegmentsAgain()
    {
        CreateSegments(4, 4096);
        var epoch = new LightEpoch();
        var crashed = OpenDevice(epoch, 1L << 20, deferRemovals: true);
        crashed.TruncateUntilSegment(2);

        // The process dies before the checkpoint that no longer needs segments 0 and 1 is recorded: the next run
        // recovers the previous checkpoint, and finds them.
        var reopened = BackgroundRemovalDevice.Open(Path.Combine(_directory, "log"), deferRemovals: true);

        Assert.Equal(0, reopened.StartSegment);
        Assert.Equal(3, reopened.EndSegment);
        Assert.Equal(["log.0", "log.1", "log.2", "log.3"], FilesLeft());
        reopened.Dispose();
        crashed.Dispose();
        Assert.Equal(["log.0", "log.1", "log.2", "log.3"], FilesLeft()); // closing removes nothing deferred
        epoch.Dispose();
    }

    [Fact]
    public void TruncateUntilSegment_AfterDispose_DeletesTheFilesInPlace()
    {
        // A FasterLog truncates on a task of its own, which may run after the log (and its device) was disposed.
        CreateSegments(3, 4096);
        var epoch = new LightEpoch();
        var device = OpenDevice(epoch, 1L << 20);
        device.Dispose();

        device.TruncateUntilSegment(2);

        Assert.Equal(["log.2"], FilesLeft());
        Assert.True(device.RemovalsCompleted.IsCompleted);
        epoch.Dispose();
    }

    [Fact]
    public void Dispose_RemovalsPending_WaitsUntilTheirFilesAreGone()
    {
        // Large (sparse) files: shrinking them takes many steps, which Dispose runs without the pauses.
        CreateSegments(3, 512L << 20);
        var epoch = new LightEpoch();
        var device = OpenDevice(epoch, 1L << 30);

        device.TruncateUntilSegment(2);
        device.Dispose();

        Assert.True(device.RemovalsCompleted.IsCompleted);
        Assert.Equal(["log.2"], FilesLeft());
        epoch.Dispose();
    }

    [Fact]
    public async Task TruncateUntilSegment_SegmentCannotBeRemoved_OthersGoFailureRecordedAndCounted()
    {
        // Root ignores file permissions, so the failure comes from the file's kind: segment 1's path is a directory
        // with a file in it, which can be neither renamed as a file nor unlinked.
        CreateSegments(3, 4096);
        var epoch = new LightEpoch();
        var device = OpenDevice(epoch, 1L << 20);
        File.Delete(Segment(1));
        Directory.CreateDirectory(Segment(1));
        File.WriteAllText(Path.Combine(Segment(1), "keep"), "x");
        long counted = 0;
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == AlphaMeshMetrics.MeterName && instrument.Name == "alphamesh.storage.segment_removal_failures")
                l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref counted, value));
        listener.Start();

        device.TruncateUntilSegment(2);
        await device.RemovalsCompleted.WaitAsync(TimeSpan.FromSeconds(30));

        // FASTER's callback ran for both (the log moved on); segment 0 went; segment 1's failure is kept and counted.
        Assert.Equal(2, device.StartSegment);
        Assert.Equal(["log.2"], FilesLeft());
        Assert.True(Directory.Exists(Segment(1)));
        Assert.NotNull(device.RemovalFailure);
        Assert.True(Interlocked.Read(ref counted) >= 1, "the failed removal was not counted");
        device.Dispose();
        epoch.Dispose();
    }
}
