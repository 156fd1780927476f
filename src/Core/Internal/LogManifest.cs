using System.Globalization;

namespace AlphaMesh.Core.Internal;

/// <summary>
/// The small file that fixes the format version and partition count of an event log directory. Routing
/// depends on the partition count, so a log must never be reopened with another one.
/// </summary>
internal static class LogManifest
{
    public const string FileName = "alphamesh-eventlog.manifest";
    // 2: commit records in one slot file (SlotFileCommitManager) instead of FASTER's commit directory.
    public const int CurrentFormat = 2;

    /// <summary>Returns the partition count of the log in <paramref name="directory"/>, creating the manifest
    /// with <paramref name="configuredPartitions"/> (0 = <paramref name="defaultPartitions"/>) when there is none.</summary>
    public static int OpenOrCreate(string directory, int configuredPartitions, int defaultPartitions)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
        {
            int partitions = configuredPartitions > 0 ? configuredPartitions : defaultPartitions;
            Write(directory, path, partitions);
            return partitions;
        }

        var (format, existing) = Read(path);
        if (format != CurrentFormat)
            throw new InvalidOperationException(
                $"The event log in '{directory}' has format version {format}; this version of AlphaMesh reads format {CurrentFormat}.");
        // 0 means "not configured": an existing log keeps its count even when the number of cores changed.
        if (configuredPartitions > 0 && configuredPartitions != existing)
            throw new InvalidOperationException(
                $"The event log in '{directory}' has {existing} partitions, but {configuredPartitions} are configured. "
                + "The partition count is fixed once the log exists, because events are routed by it: "
                + $"configure {existing} partitions, or use a new directory.");
        return existing;
    }

    private static (int Format, int Partitions) Read(string path)
    {
        int format = -1, partitions = -1;
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
        }
        if (format < 0 || partitions <= 0)
            throw new InvalidOperationException($"The event log manifest '{path}' is damaged (no format or partition count).");
        return (format, partitions);
    }

    private static void Write(string directory, string path, int partitions)
    {
        // Written to a temporary file, flushed and renamed, so that a crash leaves either no manifest or a whole one.
        string temp = path + ".tmp";
        string text = string.Create(CultureInfo.InvariantCulture,
            $"# AlphaMesh event log. Do not edit: events are routed by the partition count.\nformat={CurrentFormat}\npartitions={partitions}\n");
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(System.Text.Encoding.UTF8.GetBytes(text));
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        DirectorySync.Flush(directory);
    }
}
