using System.Text.Json;
using Npgsql;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>
/// The webhook outbox: an event is a row written on the caller's connection, inside the transaction of the change
/// that raised it, so it commits with the change or not at all; a crash can neither lose nor invent one. The
/// dispatcher (<see cref="WebhookDispatcher"/>) fans committed events out to the subscribed endpoints and sends them.
/// </summary>
internal static class WebhookOutbox
{
    /// <summary>PostgreSQL notification channel: a NOTIFY is delivered at commit (never for a rolled-back
    /// transaction), so every server's dispatcher wakes as soon as an event can be sent.</summary>
    public const string Channel = "alphamesh_webhooks";

    /// <summary>Serializes the envelope of the body every delivery of an event sends.</summary>
    internal sealed record Envelope(string Id, string Type, string CreatedAt, string Tenant, object Data);

    /// <summary>
    /// Adds an event of <paramref name="tenantId"/> to the outbox. <paramref name="connection"/> must be in the open
    /// transaction of the change: the event commits with it. <paramref name="data"/> is serialized as JSON (camelCase)
    /// into the envelope <c>{id, type, createdAt, tenant, data}</c> now, so later changes do not alter what is sent.
    /// Returns the event id (a UUIDv7: time-ordered, unique per event, so that receivers can dedupe).
    /// </summary>
    public static async Task<Guid> EnqueueAsync(NpgsqlConnection connection, string tenantId, string eventType, object data,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentException.ThrowIfNullOrEmpty(tenantId);
        ArgumentNullException.ThrowIfNull(data);
        if (!WebhookEventTypes.IsKnown(eventType))
            throw new ArgumentException($"'{eventType}' is not a webhook event type (one of {string.Join(", ", WebhookEventTypes.All)}).", nameof(eventType));

        var id = Guid.CreateVersion7();
        // The envelope's createdAt is this server's clock; rows and schedules use the database's.
        var envelope = new Envelope(id.ToString(), eventType, ApiHttp.Rfc3339(DateTime.UtcNow), tenantId, data);
        await using var batch = new NpgsqlBatch(connection)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand("INSERT INTO webhook_events (id, tenant_id, type, payload) VALUES ($1, $2, $3, $4)")
                {
                    Parameters =
                    {
                        new NpgsqlParameter<Guid> { TypedValue = id },
                        new NpgsqlParameter<string> { TypedValue = tenantId },
                        new NpgsqlParameter<string> { TypedValue = eventType },
                        new NpgsqlParameter<string> { TypedValue = JsonSerializer.Serialize(envelope, ApiHttp.Json) },
                    },
                },
                new NpgsqlBatchCommand($"SELECT pg_notify('{Channel}', '')"),
            },
        };
        await batch.ExecuteNonQueryAsync(cancellationToken);
        return id;
    }
}
