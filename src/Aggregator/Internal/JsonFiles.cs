using System.Text.Json;
using System.Text.Json.Serialization;
using AlphaMesh.Core.Internal;

namespace AlphaMesh.Aggregator.Internal;

/// <summary>Small JSON documents replaced atomically: a temporary file, flushed, renamed over the old one, and the
/// directory flushed, so that a crash leaves the old document or the new one, never a torn one.</summary>
internal static class JsonFiles
{
    public static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseUpper) },
    };

    public static T? Read<T>(string path)
    {
        if (!File.Exists(path))
            return default;
        try
        {
            return JsonSerializer.Deserialize<T>(File.ReadAllBytes(path), Options);
        }
        catch (JsonException e)
        {
            throw new InvalidOperationException($"The file '{path}' is not valid: {e.Message}", e);
        }
    }

    public static void Write<T>(string path, T value)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(directory);
        string temp = path + ".tmp";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            JsonSerializer.Serialize(stream, value, Options);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        DirectorySync.Flush(directory);
    }
}
