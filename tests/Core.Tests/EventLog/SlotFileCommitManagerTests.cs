using AlphaMesh.Core.Internal;

namespace AlphaMesh.Core.Tests.EventLog;

public sealed class SlotFileCommitManagerTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "alphamesh-commits-" + Guid.NewGuid().ToString("N"));

    public SlotFileCommitManagerTests() => Directory.CreateDirectory(_directory);

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static byte[] Metadata(int seed) => Enumerable.Range(0, 200).Select(i => (byte)(i * 7 + seed)).ToArray();

    [Fact]
    public void ListCommits_AfterSeveralCommits_NewestTwoNewestFirstWithTheirMetadata()
    {
        using (var manager = new SlotFileCommitManager(_directory))
        {
            for (int n = 1; n <= 5; n++)
                manager.Commit(0, n * 100, Metadata(n), n, forceWriteMetadata: false);
        }

        using var reopened = new SlotFileCommitManager(_directory);
        Assert.True(reopened.HasCommits);
        Assert.Equal([5L, 4L], reopened.ListCommits());
        Assert.Equal(Metadata(5), reopened.GetCommitMetadata(5));
        Assert.Equal(Metadata(4), reopened.GetCommitMetadata(4));
        Assert.Null(reopened.GetCommitMetadata(3));
    }

    [Fact]
    public void ListCommits_NewestSlotTorn_FallsBackToThePreviousCommit()
    {
        using (var manager = new SlotFileCommitManager(_directory))
        {
            manager.Commit(0, 100, Metadata(1), 1, forceWriteMetadata: false);
            manager.Commit(0, 200, Metadata(2), 2, forceWriteMetadata: false);
        }
        // A crash in the middle of writing commit 2's slot (slot 0): part of its payload is garbage.
        using (var file = new FileStream(Path.Combine(_directory, SlotFileCommitManager.FileName), FileMode.Open))
        {
            file.Position = 24 + 50;
            file.Write(new byte[40]);
        }

        using var reopened = new SlotFileCommitManager(_directory);
        Assert.Equal([1L], reopened.ListCommits());
        Assert.Equal(Metadata(1), reopened.GetCommitMetadata(1));
    }

    [Fact]
    public void ListCommits_NewFile_NoCommitsAndFullSize()
    {
        using var manager = new SlotFileCommitManager(_directory);

        Assert.False(manager.HasCommits);
        Assert.Empty(manager.ListCommits());
        Assert.Equal(128 * 1024, new FileInfo(Path.Combine(_directory, SlotFileCommitManager.FileName)).Length);
    }

    [Fact]
    public void Commit_MetadataLargerThanASlot_ThrowsNamingTheSizes()
    {
        using var manager = new SlotFileCommitManager(_directory);

        var error = Assert.Throws<InvalidOperationException>(() => manager.Commit(0, 1, new byte[70_000], 1, forceWriteMetadata: false));
        Assert.Contains("70000", error.Message, StringComparison.Ordinal);
    }
}
