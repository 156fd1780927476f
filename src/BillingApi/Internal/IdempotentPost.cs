using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;
using Npgsql;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>What a POST operation answers, and what is kept for a replay (the same, except that secrets are left out).</summary>
internal readonly record struct PostOutcome(ApiResult Response, ApiResult Stored)
{
    public PostOutcome(ApiResult response) : this(response, response) { }

    /// <summary>Runs once the change has committed (not on a replay): for effects outside the database.</summary>
    public Func<CancellationToken, Task>? AfterCommit { get; init; }
}

/// <summary>
/// Runs a POST in one transaction and honours <c>Idempotency-Key</c>: the key's record is inserted in the same
/// transaction as the change, so the change and its stored answer commit together or not at all. The same key with
/// the same request (method, path, body) replays the stored answer; with another request it is a 409. A second
/// request with a key whose first request is still running waits on the row lock and then replays.
/// </summary>
internal sealed class IdempotentPost(BillingDatabase database, IOptions<BillingOptions> options)
{
    public const string Header = "Idempotency-Key";
    public const string ReplayedHeader = "Idempotent-Replayed";

    public async Task ExecuteAsync(HttpContext http, string tenantId, byte[] body,
        Func<NpgsqlConnection, CancellationToken, Task<PostOutcome>> operation)
    {
        var cancellationToken = http.RequestAborted;
        string? key = null;
        if (http.Request.Headers.TryGetValue(Header, out var values))
        {
            key = values.ToString();
            if (values.Count != 1 || key.Length is 0 or > 255 || !key.All(c => c is >= ' ' and <= '~'))
            {
                await ApiHttp.WriteAsync(http, ApiHttp.BadRequest("Idempotency-Key must be one value of 1 to 255 printable ASCII characters.", Header));
                return;
            }
        }

        await using var connection = await database.DataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        byte[]? fingerprint = null;
        if (key is not null)
        {
            fingerprint = Fingerprint(http.Request.Method, http.Request.Path.Value ?? "", body);
            if (!await ClaimAsync(connection, tenantId, key, fingerprint, cancellationToken))
            {
                await ReplayAsync(http, connection, tenantId, key, fingerprint, cancellationToken);
                return;
            }
        }

        var outcome = await operation(connection, cancellationToken);
        if (key is not null)
        {
            await using var store = new NpgsqlCommand(
                "UPDATE idempotency_keys SET status_code = $3, response_body = $4 WHERE tenant_id = $1 AND key = $2", connection);
            store.Parameters.Add(new NpgsqlParameter<string> { TypedValue = tenantId });
            store.Parameters.Add(new NpgsqlParameter<string> { TypedValue = key });
            store.Parameters.Add(new NpgsqlParameter<int> { TypedValue = outcome.Stored.Status });
            store.Parameters.Add(new NpgsqlParameter<string> { TypedValue = JsonSerializer.Serialize(outcome.Stored.Body, outcome.Stored.Body.GetType(), ApiHttp.Json) });
            await store.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        if (outcome.AfterCommit is { } afterCommit)
            await afterCommit(cancellationToken);
        await ApiHttp.WriteAsync(http, outcome.Response);
    }

    /// <summary>Inserts the key's record; false when a live one exists (an expired one is taken over).</summary>
    private async Task<bool> ClaimAsync(NpgsqlConnection connection, string tenantId, string key, byte[] fingerprint, CancellationToken cancellationToken)
    {
        await using var claim = new NpgsqlCommand("""
            INSERT INTO idempotency_keys (tenant_id, key, request_sha256, status_code, response_body) VALUES ($1, $2, $3, 0, '')
            ON CONFLICT (tenant_id, key) DO UPDATE SET request_sha256 = excluded.request_sha256, status_code = 0, response_body = '', created_at = now()
            WHERE idempotency_keys.created_at < now() - $4
            """, connection);
        claim.Parameters.Add(new NpgsqlParameter<string> { TypedValue = tenantId });
        claim.Parameters.Add(new NpgsqlParameter<string> { TypedValue = key });
        claim.Parameters.Add(new NpgsqlParameter<byte[]> { TypedValue = fingerprint });
        claim.Parameters.Add(new NpgsqlParameter<TimeSpan> { TypedValue = options.Value.IdempotencyRetention });
        return await claim.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    private static async Task ReplayAsync(HttpContext http, NpgsqlConnection connection, string tenantId, string key, byte[] fingerprint,
        CancellationToken cancellationToken)
    {
        await using var read = new NpgsqlCommand(
            "SELECT request_sha256, status_code, response_body FROM idempotency_keys WHERE tenant_id = $1 AND key = $2", connection);
        read.Parameters.Add(new NpgsqlParameter<string> { TypedValue = tenantId });
        read.Parameters.Add(new NpgsqlParameter<string> { TypedValue = key });
        await using var reader = await read.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        if (!CryptographicOperations.FixedTimeEquals(reader.GetFieldValue<byte[]>(0), fingerprint))
        {
            await ApiHttp.WriteAsync(http, ApiHttp.Error(409, "idempotency_key_reused",
                $"Idempotency-Key '{key}' was already used with a different request (method, path or body); use a new key for a new request.", Header));
            return;
        }
        http.Response.StatusCode = reader.GetInt32(1);
        http.Response.ContentType = http.Response.StatusCode >= 400 ? ApiHttp.ProblemContentType : "application/json";
        http.Response.Headers[ReplayedHeader] = "true";
        await http.Response.WriteAsync(reader.GetString(2), cancellationToken);
    }

    private static byte[] Fingerprint(string method, string path, byte[] body)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes(method + " " + path + "\n"));
        hash.AppendData(body);
        return hash.GetHashAndReset();
    }
}
