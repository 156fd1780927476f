using System.Globalization;
using System.Text;
using AlphaMesh.Core.Internal;

namespace AlphaMesh.Aggregator.Internal;

/// <summary>
/// The one file that makes a partition's checkpoint a unit: the log position to resume from, the two FASTER
/// checkpoints and the state file taken at that position. It is written (to a temporary file, flushed, renamed,
/// directory flushed) only after everything it references is durable, so a crash at any moment leaves either the
/// previous manifest or the new one, each pointing at a complete checkpoint.
/// </summary>
internal sealed record CheckpointManifest(long Sequence, long Position, StoreCheckpoint Aggregates, StoreCheckpoint Dedupe, string StateFile)
{
    /// <summary>The state files to read in order (<see cref="StateFile"/> names them separated by spaces): a full
    /// one, then the changes of each later checkpoint. A manifest of an earlier version names one.</summary>
    public string[] StateFiles => StateFile.Split(' ', StringSplitOptions.RemoveEmptyEntries);

    public const string FileName = "checkpoint.manifest";
    // Format 2: each store's checkpoint is an index checkpoint and a (later or same) log checkpoint. Format 1 had one
    // full checkpoint per store; it still reads, as the same token for both.
    private const int Format = 2;

    public static CheckpointManifest? TryRead(string directory)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
            return null;
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string line in File.ReadAllLines(path))
        {
            int eq = line.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0)
                values[line[..eq].Trim()] = line[(eq + 1)..].Trim();
        }
        try
        {
            int format = int.Parse(values["format"], CultureInfo.InvariantCulture);
            if (format is not (1 or Format))
                throw new InvalidOperationException($"The aggregator checkpoint manifest '{path}' has format {values["format"]}; this version reads formats 1 and {Format}.");
            StoreCheckpoint Store(string name) => format == 1
                ? new StoreCheckpoint(Guid.Parse(values[name]), Guid.Parse(values[name]))
                : new StoreCheckpoint(Guid.Parse(values[name + ".index"]), Guid.Parse(values[name + ".log"]));
            return new CheckpointManifest(
                long.Parse(values["sequence"], CultureInfo.InvariantCulture),
                long.Parse(values["position"], CultureInfo.InvariantCulture),
                Store("aggregates"),
                Store("dedupe"),
                values["state"]);
        }
        catch (Exception e) when (e is KeyNotFoundException or FormatException or OverflowException)
        {
            throw new InvalidOperationException($"The aggregator checkpoint manifest '{path}' is damaged: {e.Message}", e);
        }
    }

    public void Write(string directory)
    {
        string path = Path.Combine(directory, FileName);
        string temp = path + ".tmp";
        string text = string.Create(CultureInfo.InvariantCulture,
            $"# AlphaMesh aggregator checkpoint. Do not edit.\nformat={Format}\nsequence={Sequence}\nposition={Position}\naggregates.index={Aggregates.Index:D}\naggregates.log={Aggregates.Log:D}\ndedupe.index={Dedupe.Index:D}\ndedupe.log={Dedupe.Log:D}\nstate={StateFile}\n");
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(Encoding.UTF8.GetBytes(text));
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        DirectorySync.Flush(directory);
    }
}

/// <summary>A store's part of a checkpoint: the index checkpoint and the log checkpoint to recover together (the same
/// token for a full checkpoint).</summary>
internal readonly record struct StoreCheckpoint(Guid Index, Guid Log);
