using AlphaMesh.Ingest;
using Npgsql;

namespace AlphaMesh.BillingApi.Internal;

internal sealed record TenantRow(string Id, string Name, DateTime CreatedAt);

internal sealed record ApiKeyRow(Guid Id, string TenantId, string Name, string Prefix, ApiScopes Scopes, DateTime CreatedAt, DateTime? RevokedAt);

/// <summary>SQL for tenants and API keys. Writes take the caller's connection and transaction, so that an
/// Idempotency-Key record commits together with the change it answers for.</summary>
internal sealed class TenantStore(BillingDatabase database)
{
    private const string KeyColumns = "id, tenant_id, name, prefix, scopes, created_at, revoked_at";

    /// <summary>Makes sure the tenants of configured keys exist, so that keys can be issued for them.</summary>
    public async Task EnsureTenantsAsync(IEnumerable<string> tenantIds, CancellationToken cancellationToken)
    {
        await using var command = database.DataSource.CreateCommand(
            "INSERT INTO tenants (id, name) SELECT t, t FROM unnest($1::text[]) AS t ON CONFLICT (id) DO NOTHING");
        command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = tenantIds.Distinct(StringComparer.Ordinal).ToArray() });
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>The new tenant, or null when the id is taken.</summary>
    public static async Task<TenantRow?> CreateTenantAsync(NpgsqlConnection connection, string id, string name, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING id, name, created_at", connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = id });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = name });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? ReadTenant(reader) : null;
    }

    public async Task<TenantRow?> GetTenantAsync(string id, CancellationToken cancellationToken)
    {
        await using var command = database.DataSource.CreateCommand("SELECT id, name, created_at FROM tenants WHERE id = $1");
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = id });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? ReadTenant(reader) : null;
    }

    /// <summary>Tenants in id order after <paramref name="after"/>; only <paramref name="onlyId"/> when given.</summary>
    public async Task<List<TenantRow>> ListTenantsAsync(string? onlyId, string? after, int limit, CancellationToken cancellationToken)
    {
        await using var command = database.DataSource.CreateCommand(
            "SELECT id, name, created_at FROM tenants WHERE ($1::text IS NULL OR id = $1) AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3");
        command.Parameters.Add(new NpgsqlParameter<string?> { TypedValue = onlyId });
        command.Parameters.Add(new NpgsqlParameter<string?> { TypedValue = after });
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = limit });
        var rows = new List<TenantRow>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            rows.Add(ReadTenant(reader));
        return rows;
    }

    /// <summary>Stores a new key (its hash only) and bumps the key generation in the same transaction.</summary>
    public static async Task<ApiKeyRow> CreateKeyAsync(NpgsqlConnection connection, string tenantId, string name, ApiScopes scopes, string key,
        CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            $"INSERT INTO api_keys (id, tenant_id, name, prefix, sha256, scopes) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {KeyColumns}", connection);
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = Guid.CreateVersion7() });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = tenantId });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = name });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = ApiKey.DisplayPrefix(key) });
        command.Parameters.Add(new NpgsqlParameter<byte[]> { TypedValue = ApiKey.Hash(key) });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = ApiKey.FormatScopes(scopes) });
        ApiKeyRow row;
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            await reader.ReadAsync(cancellationToken);
            row = ReadKey(reader);
        }
        await BumpGenerationAsync(connection, cancellationToken);
        return row;
    }

    /// <summary>Keys of a tenant in id (creation) order after <paramref name="after"/>, revoked ones included.</summary>
    public async Task<List<ApiKeyRow>> ListKeysAsync(string tenantId, Guid? after, int limit, CancellationToken cancellationToken)
    {
        await using var command = database.DataSource.CreateCommand(
            $"SELECT {KeyColumns} FROM api_keys WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3");
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = tenantId });
        command.Parameters.Add(new NpgsqlParameter<Guid?> { TypedValue = after });
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = limit });
        var rows = new List<ApiKeyRow>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            rows.Add(ReadKey(reader));
        return rows;
    }

    /// <summary>Revokes a key of the tenant; revoking it again keeps the first time. Null when the tenant has no such key.</summary>
    public async Task<ApiKeyRow?> RevokeKeyAsync(string tenantId, Guid id, CancellationToken cancellationToken)
    {
        await using var connection = await database.DataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using var command = new NpgsqlCommand(
            $"UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE tenant_id = $1 AND id = $2 RETURNING {KeyColumns}", connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = tenantId });
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = id });
        ApiKeyRow? row = null;
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            if (await reader.ReadAsync(cancellationToken))
                row = ReadKey(reader);
        }
        if (row is null)
            return null;
        await BumpGenerationAsync(connection, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return row;
    }

    public async Task<long> GetGenerationAsync(CancellationToken cancellationToken)
    {
        await using var command = database.DataSource.CreateCommand("SELECT generation FROM api_key_generation");
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>Every key that is not revoked, with the generation it was read at (one snapshot).</summary>
    public async Task<(long Generation, List<StoredApiKey> Keys)> LoadActiveKeysAsync(CancellationToken cancellationToken)
    {
        await using var connection = await database.DataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken);
        long generation;
        await using (var command = new NpgsqlCommand("SELECT generation FROM api_key_generation", connection))
            generation = (long)(await command.ExecuteScalarAsync(cancellationToken))!;
        var keys = new List<StoredApiKey>();
        await using (var command = new NpgsqlCommand("SELECT sha256, tenant_id, scopes, prefix FROM api_keys WHERE revoked_at IS NULL", connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                var principal = new ApiPrincipal(reader.GetString(1), ParseScopes(reader.GetString(2)), reader.GetString(3));
                keys.Add(new StoredApiKey(reader.GetFieldValue<byte[]>(0), principal));
            }
        }
        await transaction.CommitAsync(cancellationToken);
        return (generation, keys);
    }

    /// <summary>Deletes responses kept for Idempotency-Keys older than the retention.</summary>
    public async Task<int> DeleteExpiredIdempotencyKeysAsync(TimeSpan retention, CancellationToken cancellationToken)
    {
        await using var command = database.DataSource.CreateCommand("DELETE FROM idempotency_keys WHERE created_at < now() - $1");
        command.Parameters.Add(new NpgsqlParameter<TimeSpan> { TypedValue = retention });
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static async Task BumpGenerationAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("UPDATE api_key_generation SET generation = generation + 1", connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>An empty scope list grants nothing (ApiKey.ParseScopes reads empty as all, for configuration).</summary>
    private static ApiScopes ParseScopes(string text) => text.Length == 0 ? ApiScopes.None : ApiKey.ParseScopes(text);

    private static TenantRow ReadTenant(NpgsqlDataReader reader) => new(reader.GetString(0), reader.GetString(1), reader.GetDateTime(2));

    private static ApiKeyRow ReadKey(NpgsqlDataReader reader) => new(
        reader.GetGuid(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), ParseScopes(reader.GetString(4)),
        reader.GetDateTime(5), reader.IsDBNull(6) ? null : reader.GetDateTime(6));
}
