namespace AlphaMesh.Aggregator.Internal;

/// <summary>
/// Where a store's log stood at which ingest time, oldest first: taken at checkpoints, at most one per 64th of the
/// retention, kept in the state file. Every record below a mark was written by the time the latest ingest time
/// applied was the mark's, so below the newest mark a retention old nearly everything has expired: a compaction
/// there drops much and moves little to the tail, and a live record moves about once per retention. (Compacting a
/// fixed share of the log instead moved the live records again at every checkpoint.) Ingest time, not the clock, so
/// that a replay compacts the same way.
/// </summary>
internal sealed class CompactionMarks(long retentionNanos)
{
    private const int MarksPerRetention = 64;

    private readonly List<(long Address, long IngestTime)> _marks = [];

    public int Count => _marks.Count;

    /// <summary>Notes the log's tail at the latest ingest time applied, unless the last mark is younger than a 64th
    /// of the retention.</summary>
    public void Record(long tail, long now)
    {
        if (_marks.Count == 0 || now - _marks[^1].IngestTime >= retentionNanos / MarksPerRetention)
            _marks.Add((tail, now));
    }

    /// <summary>The address of the newest mark a retention old, or -1.</summary>
    public long ExpiredUntil(long now)
    {
        int expired = ExpiredCount(now);
        return expired == 0 ? -1 : _marks[expired - 1].Address;
    }

    /// <summary>After a compaction up to <paramref name="compacted"/>: the marks below it are of no more use.</summary>
    public void Compacted(long compacted) => _marks.RemoveAll(mark => mark.Address <= compacted);

    /// <summary>When no compaction ran: of the expired marks only the newest is of use later.</summary>
    public void KeepNewestExpired(long now)
    {
        int expired = ExpiredCount(now);
        if (expired > 1)
            _marks.RemoveRange(0, expired - 1);
    }

    private int ExpiredCount(long now)
    {
        int expired = 0;
        while (expired < _marks.Count && _marks[expired].IngestTime + retentionNanos <= now)
            expired++;
        return expired;
    }

    public void Write(BinaryWriter writer)
    {
        writer.Write(_marks.Count);
        foreach (var (address, ingestTime) in _marks)
        {
            writer.Write(address);
            writer.Write(ingestTime);
        }
    }

    public void Read(BinaryReader reader)
    {
        _marks.Clear();
        for (int i = reader.ReadInt32(); i > 0; i--)
            _marks.Add((reader.ReadInt64(), reader.ReadInt64()));
    }

    public void Clear() => _marks.Clear();
}
