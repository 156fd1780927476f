using System.Buffers.Binary;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using FASTER.core;
using Microsoft.Win32.SafeHandles;

namespace AlphaMesh.Core.Internal;

/// <summary>
/// Keeps FasterLog's commit records in one preallocated file of two fixed slots, written in turn and
/// flushed with fdatasync. FASTER's default manager creates a new commit file for every commit and
/// deletes the old one: each commit then costs file-system journal commits besides the write, which on
/// this kind of disk made the commit cycle (that every reply waits for) several times slower and gave
/// it a long tail. Overwriting in place inside a file whose size never changes needs no metadata write.
/// <para>
/// A slot: magic (4 bytes), payload length (4), commit number (8), XxHash64 of number and payload (8),
/// payload. A torn write damages only the slot being written, whose commit has not returned (so no
/// reply depends on it); recovery takes the newest slot whose checksum holds.
/// </para>
/// </summary>
internal sealed partial class SlotFileCommitManager : ILogCommitManager
{
    public const string FileName = "commits";
    private const int SlotSize = 64 * 1024;
    private const int HeaderSize = 24;
    private const uint Magic = 0x31434D41; // "AMC1"

    private readonly SafeFileHandle _file;
    private readonly byte[] _buffer = new byte[SlotSize];
    private readonly Lock _lock = new();
    private long _lastCommitNum = -1;

    public SlotFileCommitManager(string directory)
    {
        string path = Path.Combine(directory, FileName);
        bool created = !File.Exists(path);
        _file = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read);
        if (created || RandomAccess.GetLength(_file) < 2 * SlotSize)
        {
            // Full size from the start, flushed with its directory entry: later writes never change metadata.
            RandomAccess.Write(_file, new byte[2 * SlotSize], 0);
            FullSync();
            DirectorySync.Flush(directory);
        }
        foreach (var (number, _) in ReadSlots())
            _lastCommitNum = Math.Max(_lastCommitNum, number);
    }

    public void Commit(long beginAddress, long untilAddress, byte[] commitMetadata, long commitNum, bool forceWriteMetadata)
    {
        ArgumentNullException.ThrowIfNull(commitMetadata);
        if (commitMetadata.Length > SlotSize - HeaderSize)
            throw new InvalidOperationException($"A FasterLog commit record of {commitMetadata.Length} bytes does not fit a {SlotSize}-byte commit slot.");
        lock (_lock)
        {
            if (commitNum < 0)
                commitNum = _lastCommitNum + 1;
            var slot = _buffer.AsSpan(0, HeaderSize + commitMetadata.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(slot, Magic);
            BinaryPrimitives.WriteInt32LittleEndian(slot.Slice(4), commitMetadata.Length);
            BinaryPrimitives.WriteInt64LittleEndian(slot.Slice(8), commitNum);
            commitMetadata.CopyTo(slot.Slice(HeaderSize));
            BinaryPrimitives.WriteUInt64LittleEndian(slot.Slice(16), Checksum(commitNum, commitMetadata));
            RandomAccess.Write(_file, slot, (commitNum & 1) * SlotSize);
            DataSync();
            _lastCommitNum = Math.Max(_lastCommitNum, commitNum);
        }
    }

    public byte[] GetCommitMetadata(long commitNum)
    {
        foreach (var (number, payload) in ReadSlots())
        {
            if (number == commitNum)
                return payload;
        }
        return null!; // FASTER's contract: null when there is no such commit
    }

    /// <summary>Valid commits, newest first (FASTER tries them in this order).</summary>
    public IEnumerable<long> ListCommits()
        => ReadSlots().Select(s => s.Number).OrderDescending().ToList();

    public bool HasCommits => _lastCommitNum >= 0;

    // Slots are overwritten in turn; there is nothing to remove one by one.
    public void RemoveCommit(long commitNum)
    {
    }

    public void RemoveAllCommits()
    {
        lock (_lock)
        {
            RandomAccess.Write(_file, new byte[2 * SlotSize], 0);
            DataSync();
            _lastCommitNum = -1;
        }
    }

    public void OnRecovery(long commitNum)
    {
    }

    public void Dispose() => _file.Dispose();

    private List<(long Number, byte[] Payload)> ReadSlots()
    {
        var slots = new List<(long, byte[])>(2);
        var buffer = new byte[SlotSize];
        for (int i = 0; i < 2; i++)
        {
            int read = RandomAccess.Read(_file, buffer, (long)i * SlotSize);
            if (read < HeaderSize || BinaryPrimitives.ReadUInt32LittleEndian(buffer) != Magic)
                continue;
            int length = BinaryPrimitives.ReadInt32LittleEndian(buffer.AsSpan(4));
            if (length < 0 || length > read - HeaderSize)
                continue;
            long number = BinaryPrimitives.ReadInt64LittleEndian(buffer.AsSpan(8));
            var payload = buffer.AsSpan(HeaderSize, length).ToArray();
            if (BinaryPrimitives.ReadUInt64LittleEndian(buffer.AsSpan(16)) == Checksum(number, payload))
                slots.Add((number, payload));
        }
        return slots;
    }

    private static ulong Checksum(long commitNum, ReadOnlySpan<byte> payload)
    {
        var hash = new XxHash64();
        Span<byte> number = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(number, commitNum);
        hash.Append(number);
        hash.Append(payload);
        return hash.GetCurrentHashAsUInt64();
    }

    private void DataSync()
    {
        if (OperatingSystem.IsWindows())
        {
            FullSync();
            return;
        }
        bool added = false;
        _file.DangerousAddRef(ref added);
        try
        {
            if (FDataSync((int)_file.DangerousGetHandle()) != 0)
                throw new IOException($"fdatasync of the commit file failed (errno {Marshal.GetLastPInvokeError()}).");
        }
        finally
        {
            if (added)
                _file.DangerousRelease();
        }
    }

    private void FullSync() => RandomAccess.FlushToDisk(_file);

    [LibraryImport("libc", EntryPoint = "fdatasync", SetLastError = true)]
    private static partial int FDataSync(int fd);
}
