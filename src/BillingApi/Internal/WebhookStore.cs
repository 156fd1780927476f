using Npgsql;

namespace AlphaMesh.BillingApi.Internal;

internal sealed record WebhookEndpointRow(Guid Id, string TenantId, string Url, string Description, string[] EventTypes, DateTime CreatedAt);

internal sealed record WebhookAttemptRow(int Number, DateTime StartedAt, DateTime? FinishedAt, int? HttpStatus, string? Error, double? DurationMs);

internal sealed record WebhookDeliveryRow(Guid Id, Guid EventId, string EventType, string Status, int AttemptCount, DateTime CreatedAt,
    DateTime? NextAttemptAt, DateTime? CompletedAt, List<WebhookAttemptRow> Attempts);

/// <summary>SQL for webhook endpoints and their delivery records. Every query is filtered by the tenant, so another
/// tenant's endpoint is not found exactly like one that does not exist.</summary>
internal sealed class WebhookStore(BillingDatabase database)
{
    private const string EndpointColumns = "id, tenant_id, url, description, event_types, created_at";

    /// <summary>Creates an endpoint on the caller's transaction (the Idempotency-Key record commits with it).</summary>
    public static async Task<WebhookEndpointRow> CreateEndpointAsync(NpgsqlConnection connection, string tenantId, string url, string description,
        string[] eventTypes, string secret, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            $"INSERT INTO webhook_endpoints (id, tenant_id, url, description, event_types, secret) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {EndpointColumns}",
            connection);
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = Guid.CreateVersion7() });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = tenantId });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = url });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = description });
        command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = eventTypes });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = secret });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return ReadEndpoint(reader);
    }

    public async Task<WebhookEndpointRow?> GetEndpointAsync(string tenantId, Guid id, CancellationToken cancellationToken)
    {
        await using var command = database.DataSource.CreateCommand(
            $"SELECT {EndpointColumns} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL");
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = tenantId });
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = id });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? ReadEndpoint(reader) : null;
    }

    /// <summary>The tenant's endpoints in creation (id) order after <paramref name="after"/>.</summary>
    public async Task<List<WebhookEndpointRow>> ListEndpointsAsync(string tenantId, Guid? after, int limit, CancellationToken cancellationToken)
    {
        await using var command = database.DataSource.CreateCommand(
            $"SELECT {EndpointColumns} FROM webhook_endpoints WHERE tenant_id = $1 AND deleted_at IS NULL AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3");
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = tenantId });
        command.Parameters.Add(new NpgsqlParameter<Guid?> { TypedValue = after });
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = limit });
        var rows = new List<WebhookEndpointRow>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            rows.Add(ReadEndpoint(reader));
        return rows;
    }

    /// <summary>Deletes an endpoint: it gets no new deliveries and its pending ones are canceled, in one transaction.
    /// The row and its delivery records stay (marked deleted) for the audit trail. Null when the tenant has no such endpoint.</summary>
    public async Task<WebhookEndpointRow?> DeleteEndpointAsync(string tenantId, Guid id, CancellationToken cancellationToken)
    {
        await using var connection = await database.DataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        WebhookEndpointRow? row = null;
        await using (var command = new NpgsqlCommand(
            $"UPDATE webhook_endpoints SET deleted_at = now() WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING {EndpointColumns}", connection))
        {
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = tenantId });
            command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = id });
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            if (await reader.ReadAsync(cancellationToken))
                row = ReadEndpoint(reader);
        }
        if (row is null)
            return null;
        await using (var cancel = new NpgsqlCommand(
            "UPDATE webhook_deliveries SET status = 'canceled', next_attempt_at = NULL, completed_at = now() WHERE endpoint_id = $1 AND status = 'pending'",
            connection))
        {
            cancel.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = id });
            await cancel.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        return row;
    }

    /// <summary>Deliveries to an endpoint, newest event first, before the event <paramref name="before"/>, each with every attempt.</summary>
    public async Task<List<WebhookDeliveryRow>> ListDeliveriesAsync(Guid endpointId, Guid? before, int limit, CancellationToken cancellationToken)
    {
        await using var command = database.DataSource.CreateCommand("""
            SELECT d.id, d.event_id, e.type, d.status, d.attempt_count, d.created_at, d.next_attempt_at, d.completed_at,
                   a.number, a.started_at, a.finished_at, a.http_status, a.error, a.duration_ms
            FROM (SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 AND ($2::uuid IS NULL OR event_id < $2) ORDER BY event_id DESC LIMIT $3) d
            JOIN webhook_events e ON e.id = d.event_id
            LEFT JOIN webhook_attempts a ON a.delivery_id = d.id
            ORDER BY d.event_id DESC, a.number
            """);
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = endpointId });
        command.Parameters.Add(new NpgsqlParameter<Guid?> { TypedValue = before });
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = limit });
        var rows = new List<WebhookDeliveryRow>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var id = reader.GetGuid(0);
            if (rows.Count == 0 || rows[^1].Id != id)
            {
                rows.Add(new WebhookDeliveryRow(id, reader.GetGuid(1), reader.GetString(2), reader.GetString(3), reader.GetInt32(4), reader.GetDateTime(5),
                    NullableTime(reader, 6), NullableTime(reader, 7), []));
            }
            if (!reader.IsDBNull(8))
            {
                rows[^1].Attempts.Add(new WebhookAttemptRow(reader.GetInt32(8), reader.GetDateTime(9), NullableTime(reader, 10),
                    reader.IsDBNull(11) ? null : reader.GetInt32(11), reader.IsDBNull(12) ? null : reader.GetString(12),
                    reader.IsDBNull(13) ? null : reader.GetDouble(13)));
            }
        }
        return rows;
    }

    private static DateTime? NullableTime(NpgsqlDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetDateTime(ordinal);

    private static WebhookEndpointRow ReadEndpoint(NpgsqlDataReader reader) => new(
        reader.GetGuid(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetFieldValue<string[]>(4), reader.GetDateTime(5));
}
