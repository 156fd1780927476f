using System.Security.Cryptography;
using System.Text;

namespace AlphaMesh.Ingest;

/// <summary>What an API key may do.</summary>
[Flags]
public enum ApiScopes
{
    None = 0,
    Ingest = 1,
    Read = 2,
    Admin = 4,
    All = Ingest | Read | Admin,
}

/// <summary>The tenant and scopes an API key grants.</summary>
public sealed class ApiPrincipal
{
    public ApiPrincipal(string tenantId, ApiScopes scopes, string keyPrefix)
    {
        TenantId = tenantId;
        TenantUtf8 = Encoding.UTF8.GetBytes(tenantId);
        Scopes = scopes;
        KeyPrefix = keyPrefix;
    }

    public string TenantId { get; }

    /// <summary>The tenant id as UTF-8, as the event log stores it (kept to avoid encoding it per request).</summary>
    public byte[] TenantUtf8 { get; }

    public ApiScopes Scopes { get; }

    /// <summary>The first characters of the key, safe to show and log.</summary>
    public string KeyPrefix { get; }

    public bool Has(ApiScopes scope) => (Scopes & scope) == scope;
}

/// <summary>One stored key: the SHA-256 of the key and what it grants.</summary>
public readonly record struct StoredApiKey(byte[] Sha256, ApiPrincipal Principal);

/// <summary>
/// Resolves presented API keys. The ingest and query paths call it for every request, so an
/// implementation answers from memory; keys are kept only as SHA-256 hashes.
/// </summary>
public interface IApiKeyStore
{
    bool TryAuthenticate(ReadOnlySpan<char> presentedKey, out ApiPrincipal? principal);
}

/// <summary>Hashing and formatting of API keys.</summary>
public static class ApiKey
{
    public const string Prefix = "amk_";
    public const int HashBytes = 32;

    /// <summary>A new random key: "amk_" and 32 random bytes in base64url.</summary>
    public static string Generate()
        => Prefix + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    /// <summary>SHA-256 of the key's UTF-8 bytes. Keys are long random secrets, so a fast hash is
    /// enough: there is nothing to brute-force that a slow hash would protect.</summary>
    public static byte[] Hash(ReadOnlySpan<char> key)
    {
        var hash = new byte[HashBytes];
        HashInto(key, hash);
        return hash;
    }

    public static void HashInto(ReadOnlySpan<char> key, Span<byte> hash)
    {
        int maxBytes = Encoding.UTF8.GetMaxByteCount(key.Length);
        byte[]? rented = null;
        Span<byte> utf8 = maxBytes <= 512 ? stackalloc byte[512] : (rented = System.Buffers.ArrayPool<byte>.Shared.Rent(maxBytes));
        try
        {
            int length = Encoding.UTF8.GetBytes(key, utf8);
            SHA256.HashData(utf8.Slice(0, length), hash);
        }
        finally
        {
            if (rented is not null)
                System.Buffers.ArrayPool<byte>.Shared.Return(rented, clearArray: true);
        }
    }

    /// <summary>The part of a key that may be shown: its first 8 characters.</summary>
    public static string DisplayPrefix(string key) => key.Length <= 8 ? key : key[..8];

    public static ApiScopes ParseScopes(string? scopes)
    {
        if (string.IsNullOrWhiteSpace(scopes))
            return ApiScopes.All;
        var result = ApiScopes.None;
        foreach (var part in scopes.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            result |= part.ToLowerInvariant() switch
            {
                "ingest" => ApiScopes.Ingest,
                "read" => ApiScopes.Read,
                "admin" => ApiScopes.Admin,
                "all" => ApiScopes.All,
                _ => throw new FormatException($"Unknown API key scope '{part}'; the scopes are ingest, read, admin."),
            };
        }
        return result;
    }

    public static string FormatScopes(ApiScopes scopes)
    {
        var parts = new List<string>(3);
        if ((scopes & ApiScopes.Ingest) != 0) parts.Add("ingest");
        if ((scopes & ApiScopes.Read) != 0) parts.Add("read");
        if ((scopes & ApiScopes.Admin) != 0) parts.Add("admin");
        return string.Join(',', parts);
    }
}
