using System.Text.Json;
using AlphaMesh.Ingest;
using AlphaMesh.Ingest.Internal;

namespace AlphaMesh.Server;

/// <summary>
/// API keys of the embedded server, from three places: <c>AlphaMesh:ApiKeys</c> in configuration
/// (hashes), the <c>ALPHAMESH_BOOTSTRAP_KEY</c> environment variable (the first tenant's key, for
/// automation), and <c>api-keys.json</c> in the data directory (hashes of keys the server made).
/// On a first start with none of them, the server makes one tenant and one key, and writes the key
/// to a file only its owner can read; the key itself is never logged.
/// </summary>
internal static class LocalApiKeys
{
    public const string BootstrapKeyVariable = "ALPHAMESH_BOOTSTRAP_KEY";
    public const string KeysFileName = "api-keys.json";
    public const string BootstrapKeyFileName = "bootstrap-api-key";

    /// <summary><paramref name="Keys"/> go to the billing API's key store, which serves them with the keys in PostgreSQL.</summary>
    public sealed record Loaded(InMemoryApiKeyStore Store, IReadOnlyList<StoredApiKey> Keys, string? CreatedKeyFile);

    public static Loaded Load(IConfiguration configuration, string dataDirectory)
    {
        var keys = new List<StoredApiKey>();
        foreach (var configured in configuration.GetSection("AlphaMesh:ApiKeys").Get<List<ConfiguredApiKey>>() ?? [])
            keys.Add(FromConfiguration(configured));

        string bootstrapTenant = configuration["AlphaMesh:BootstrapTenant"] is { Length: > 0 } t ? t : "default";
        var bootstrapKey = configuration[BootstrapKeyVariable];
        if (!string.IsNullOrEmpty(bootstrapKey))
            keys.Add(new StoredApiKey(ApiKey.Hash(bootstrapKey), new ApiPrincipal(bootstrapTenant, ApiScopes.All, ApiKey.DisplayPrefix(bootstrapKey))));

        var keysFile = Path.Combine(dataDirectory, KeysFileName);
        var saved = File.Exists(keysFile) ? ReadKeysFile(keysFile) : [];
        foreach (var configured in saved)
            keys.Add(FromConfiguration(configured));

        string? createdKeyFile = null;
        if (keys.Count == 0)
        {
            var key = ApiKey.Generate();
            var entry = new ConfiguredApiKey
            {
                Tenant = bootstrapTenant,
                Sha256 = Convert.ToHexStringLower(ApiKey.Hash(key)),
                Scopes = "ingest,read,admin",
                Prefix = ApiKey.DisplayPrefix(key),
            };
            createdKeyFile = Path.Combine(dataDirectory, BootstrapKeyFileName);
            WriteOwnerOnly(createdKeyFile, key + "\n");
            WriteOwnerOnly(keysFile, JsonSerializer.Serialize(new List<ConfiguredApiKey> { entry }, JsonOptions));
            keys.Add(FromConfiguration(entry));
        }
        return new Loaded(new InMemoryApiKeyStore(keys), keys, createdKeyFile);
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    private static List<ConfiguredApiKey> ReadKeysFile(string path)
    {
        try
        {
            return JsonSerializer.Deserialize<List<ConfiguredApiKey>>(File.ReadAllText(path), JsonOptions) ?? [];
        }
        catch (JsonException e)
        {
            throw new InvalidOperationException($"The API key file {path} is not valid JSON: {e.Message}", e);
        }
    }

    private static StoredApiKey FromConfiguration(ConfiguredApiKey key)
    {
        if (string.IsNullOrWhiteSpace(key.Tenant))
            throw new InvalidOperationException("An API key in configuration has no Tenant.");
        byte[] hash;
        try
        {
            hash = Convert.FromHexString(key.Sha256);
        }
        catch (FormatException)
        {
            hash = [];
        }
        if (hash.Length != ApiKey.HashBytes)
            throw new InvalidOperationException($"The API key of tenant '{key.Tenant}' has Sha256 '{key.Sha256}'; it must be 64 hex digits (SHA-256 of the key).");
        return new StoredApiKey(hash, new ApiPrincipal(key.Tenant, ApiKey.ParseScopes(key.Scopes), key.Prefix ?? ""));
    }

    private static void WriteOwnerOnly(string path, string content)
    {
        var temp = path + ".tmp";
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var stream = new FileStream(temp, options))
        using (var writer = new StreamWriter(stream))
        {
            writer.Write(content);
            writer.Flush();
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
    }
}
