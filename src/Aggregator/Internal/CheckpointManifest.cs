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
internal sealed record CheckpointManifest(long Sequence, long Position, Guid Aggregates, Guid Dedupe, string StateFile)
{
    public const string FileName = "checkpoint.manifest";
    private const int Format = 1;

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
            if (int.Parse(values["format"], CultureInfo.InvariantCulture) != Format)
                throw new InvalidOperationException($"The aggregator checkpoint manifest '{path}' has format {values["format"]}; this version reads format {Format}.");
            return new CheckpointManifest(
                long.Parse(values["sequence"], CultureInfo.InvariantCulture),
                long.Parse(values["position"], CultureInfo.InvariantCulture),
                Guid.Parse(values["aggregates"]),
                Guid.Parse(values["dedupe"]),
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
            $"# AlphaMesh aggregator checkpoint. Do not edit.\nformat={Format}\nsequence={Sequence}\nposition={Position}\naggregates={Aggregates:D}\ndedupe={Dedupe:D}\nstate={StateFile}\n");
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(Encoding.UTF8.GetBytes(text));
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        DirectorySync.Flush(directory);
    }
}
