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

    [Fact]
    public async Task TruncateUntilSegment_ExistingSegments_RemovesTheEarlierFilesAndKeepsTheRest()
    {
        // 40 MiB each: the unlink shrinks them in three steps first.
        CreateSegments(4, 40L << 20);
        var epoch = new LightEpoch();
        var device = BackgroundRemovalDevice.Open(Path.Combine(_directory, "log"));
        device.Initialize(64L << 20, epoch);
        Assert.Equal(0, device.StartSegment);
        Assert.Equal(3, device.EndSegment);

        device.TruncateUntilSegment(2);

        // FASTER sees the segments gone at once; the files are unlinked in the background.
        Assert.Equal(2, device.StartSegment);
        Assert.False(File.Exists(Segment(0)));
        Assert.False(File.Exists(Segment(1)));
        await device.RemovalsCompleted.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Null(device.RemovalFailure);
        Assert.Equal(["log.2", "log.3"], FilesLeft());
        device.Dispose();
        epoch.Dispose();
    }

    [Fact]
    public void Open_FilesRenamedForRemovalByAnEarlierRun_UnlinksThemAndRecoversOnlyTheSegments()
    {
        CreateSegments(2, 4096);
        // A crash between the rename and the unlink leaves these; they must not count as segments.
        File.WriteAllBytes(Path.Combine(_directory, BackgroundRemovalDevice.RemovedPrefix + "log.0"), new byte[8192]);
        File.WriteAllBytes(Path.Combine(_directory, BackgroundRemovalDevice.RemovedPrefix + "log.1"), new byte[8192]);

        var device = BackgroundRemovalDevice.Open(Path.Combine(_directory, "log"));
        device.Dispose(); // waits for the unlinks

        Assert.Equal(0, device.StartSegment);
        Assert.Equal(1, device.EndSegment);
        Assert.Null(device.RemovalFailure);
        Assert.Equal(["log.0", "log.1"], FilesLeft());
    }

    [Fact]
    public void Dispose_RemovalsPending_WaitsUntilTheirFilesAreGone()
    {
        // Large (sparse) files: shrinking them takes many steps, which Dispose runs without the pauses.
        CreateSegments(3, 512L << 20);
        var epoch = new LightEpoch();
        var device = BackgroundRemovalDevice.Open(Path.Combine(_directory, "log"));
        device.Initialize(1L << 30, epoch);

        device.TruncateUntilSegment(2);
        device.Dispose();

        Assert.True(device.RemovalsCompleted.IsCompleted);
        Assert.Equal(["log.2"], FilesLeft());
        epoch.Dispose();
    }
}
