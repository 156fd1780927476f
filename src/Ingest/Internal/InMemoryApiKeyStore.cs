using System.Buffers.Binary;
using System.Collections.Frozen;
using System.Security.Cryptography;

namespace AlphaMesh.Ingest.Internal;

/// <summary>
/// API keys held in memory as SHA-256 hashes. Lookup goes by the first 8 bytes of the presented
/// key's hash, then the whole hash is compared in constant time, so neither the key nor its hash
/// leaks through timing.
/// </summary>
internal sealed class InMemoryApiKeyStore : IApiKeyStore
{
    private readonly FrozenDictionary<ulong, StoredApiKey[]> _byHashPrefix;

    public InMemoryApiKeyStore(IEnumerable<StoredApiKey> keys)
    {
        _byHashPrefix = keys
            .GroupBy(k => BinaryPrimitives.ReadUInt64LittleEndian(k.Sha256))
            .ToFrozenDictionary(g => g.Key, g => g.ToArray());
        Count = _byHashPrefix.Values.Sum(v => v.Length);
    }

    public int Count { get; }

    public bool TryAuthenticate(ReadOnlySpan<char> presentedKey, out ApiPrincipal? principal)
    {
        principal = null;
        if (presentedKey.IsEmpty)
            return false;
        Span<byte> hash = stackalloc byte[ApiKey.HashBytes];
        ApiKey.HashInto(presentedKey, hash);
        if (!_byHashPrefix.TryGetValue(BinaryPrimitives.ReadUInt64LittleEndian(hash), out var candidates))
            return false;
        foreach (var candidate in candidates)
        {
            if (CryptographicOperations.FixedTimeEquals(candidate.Sha256, hash))
            {
                principal = candidate.Principal;
                return true;
            }
        }
        return false;
    }
}
