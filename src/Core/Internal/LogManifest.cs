using System.Globalization;

namespace AlphaMesh.Core.Internal;

/// <summary>The layout of an event log that is fixed once the log exists.</summary>
internal readonly record struct LogLayout(int Partitions, long SegmentBytes);

/// <summary>
/// The small file that fixes the format version, partition count and segment size of an event log directory.
/// Routing depends on the partition count, and segment files are named by the addresses they hold, so a log must
/// never be reopened with another count or segment size.
/// </summary>
internal static class LogManifest
{
    public const string FileName = "alphamesh-eventlog.manifest";
    // 2: commit records in one slot file (SlotFileCommitManager) instead of FASTER's commit directory. The segment
    // size line came later within format 2; a manifest without it is completed on open (see OpenOrCreate).
    public const int CurrentFormat = 2;

    /// <summary>Returns the layout of the log in <paramref name="directory"/>, creating the manifest from the
    /// configured values (0 partitions = <paramref name="defaultPartitions"/>, no segment size =
    /// <see cref="EventLogOptions.DefaultSegmentSizeBytes"/>) when there is none.</summary>
    public static LogLayout OpenOrCreate(string directory, int configuredPartitions, int defaultPartitions, long? configuredSegmentBytes)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
        {
            var layout = new LogLayout(configuredPartitions > 0 ? configuredPartitions : defaultPartitions,
                configuredSegmentBytes ?? EventLogOptions.DefaultSegmentSizeBytes);
            Write(directory, path, layout);
            return layout;
        }

        var (format, existing, recordedSegmentBytes) = Read(path);
        if (format != CurrentFormat)
            throw new InvalidOperationException(
                $"The event log in '{directory}' has format version {format}; this version of AlphaMesh reads format {CurrentFormat}.");
        // 0 means "not configured": an existing log keeps its count even when the number of cores changed.
        if (configuredPartitions > 0 && configuredPartitions != existing)
            throw new InvalidOperationException(
                $"The event log in '{directory}' has {existing} partitions, but {configuredPartitions} are configured. "
                + "The partition count is fixed once the log exists, because events are routed by it: "
                + $"configure {existing} partitions, or use a new directory.");

        if (recordedSegmentBytes is not { } segmentBytes)
        {
            // Written before the manifest recorded the segment size: the log was made with the size configured
            // then, which is the size configured now unless someone changed it, or else that version's default.
            var completed = new LogLayout(existing, configuredSegmentBytes ?? EventLogOptions.UnrecordedSegmentSizeBytes);
            Write(directory, path, completed);
            return completed;
        }
        if (configuredSegmentBytes is { } configured && configured != segmentBytes)
            throw new InvalidOperationException(
                $"The event log in '{directory}' has segments of {segmentBytes} bytes, but EventLog.SegmentSizeBytes is {configured}. "
                + "The segment size is fixed once the log exists, because segment files are named by the addresses they hold: "
                + $"remove the setting or set it to {segmentBytes}, or use a new directory.");
        return new LogLayout(existing, segmentBytes);
    }

    private static (int Format, int Partitions, long? SegmentBytes) Read(string path)
    {
        int format = -1, partitions = -1;
        long? segmentBytes = null;
        foreach (string line in File.ReadAllLines(path))
        {
            int eq = line.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
                continue;
            var key = line.AsSpan(0, eq).Trim();
            var value = line.AsSpan(eq + 1).Trim();
            if (key.SequenceEqual("format") && int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int f))
                format = f;
            else if (key.SequenceEqual("partitions") && int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int p))
                partitions = p;
            else if (key.SequenceEqual("segmentBytes"))
                segmentBytes = long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out long b) && b > 0
                    ? b
                    : throw new InvalidOperationException($"The event log manifest '{path}' is damaged (segmentBytes '{value}' is not a positive number).");
        }
        if (format < 0 || partitions <= 0)
            throw new InvalidOperationException($"The event log manifest '{path}' is damaged (no format or partition count).");
        return (format, partitions, segmentBytes);
    }

    private static void Write(string directory, string path, LogLayout layout)
    {
        // Written to a temporary file, flushed and renamed, so that a crash leaves either no manifest or a whole one.
        string temp = path + ".tmp";
        string text = string.Create(CultureInfo.InvariantCulture,
            $"# AlphaMesh event log. Do not edit: events are routed by the partition count, and segment files are named by the addresses they hold.\nformat={CurrentFormat}\npartitions={layout.Partitions}\nsegmentBytes={layout.SegmentBytes}\n");
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(System.Text.Encoding.UTF8.GetBytes(text));
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        DirectorySync.Flush(directory);
    }
}
