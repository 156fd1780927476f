using Npgsql;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>
/// Publishes invoice and credit-note events into the webhook outbox (<see cref="WebhookOutbox"/>) in the caller's
/// transaction, so an event exists exactly when its change committed. A billing run finalizes thousands of invoices in
/// one transaction, so events are written in bulk: one statement builds every envelope in SQL from the rows
/// themselves. A tenant without a webhook endpoint gets no events (nobody could receive them).
/// </summary>
internal static class InvoiceEvents
{
    /// <summary>The invoice as a webhook event carries it: what a receiver needs to fetch or reconcile it.</summary>
    private const string InvoiceData = """
        json_build_object('id', i.id, 'number', CASE WHEN i.number IS NULL THEN NULL ELSE 'INV-' || lpad(i.number::text, 6, '0') END,
            'status', i.status, 'customer', i.customer_id, 'subscription', i.subscription_id, 'billingDate', i.billing_date::text,
            'reason', i.reason, 'periodStart', i.period_start::text, 'periodEnd', i.period_end::text, 'currency', i.currency, 'total', i.total::text)
        """;

    private const string CreditNoteData = """
        json_build_object('id', n.id, 'invoice', n.invoice_id, 'reason', n.reason, 'total', n.total::text, 'createdBy', n.created_by,
            'createdAt', to_char(n.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        """;

    public static Task PublishAsync(NpgsqlConnection connection, string tenant, string type, string objectId, CancellationToken cancellationToken) =>
        PublishAsync(connection, tenant, type, [objectId], cancellationToken);

    /// <summary>One <paramref name="type"/> event per invoice (or, for <c>credit_note.created</c>, per credit note) of <paramref name="ids"/>.</summary>
    public static async Task PublishAsync(NpgsqlConnection connection, string tenant, string type, IReadOnlyList<string> ids, CancellationToken cancellationToken)
    {
        if (ids.Count == 0)
            return;
        bool creditNote = type == WebhookEventTypes.CreditNoteCreated;
        string source = creditNote
            ? $"SELECT {CreditNoteData} AS data, n.id AS object_id FROM credit_notes n WHERE n.tenant_id = $1 AND n.id = ANY($3::text[])"
            : $"SELECT {InvoiceData} AS data, i.id AS object_id FROM invoices i WHERE i.tenant_id = $1 AND i.id = ANY($3::text[])";
        var eventIds = ids.Select(_ => Guid.CreateVersion7()).ToArray();
        await using var batch = new NpgsqlBatch(connection)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand($"""
                    INSERT INTO webhook_events (id, tenant_id, type, payload)
                    SELECT e.event_id, $1, $2, json_build_object('id', e.event_id::text, 'type', $2,
                           'createdAt', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'tenant', $1, 'data', s.data)::text
                    FROM ({source}) s JOIN unnest($3::text[], $4::uuid[]) AS e(object_id, event_id) ON e.object_id = s.object_id
                    WHERE EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.tenant_id = $1 AND w.deleted_at IS NULL)
                    """)
                {
                    Parameters =
                    {
                        new NpgsqlParameter<string> { TypedValue = tenant },
                        new NpgsqlParameter<string> { TypedValue = type },
                        new NpgsqlParameter<string[]> { TypedValue = [.. ids] },
                        new NpgsqlParameter<Guid[]> { TypedValue = eventIds },
                    },
                },
                new NpgsqlBatchCommand($"SELECT pg_notify('{WebhookOutbox.Channel}', '')"),
            },
        };
        await batch.ExecuteNonQueryAsync(cancellationToken);
    }
}
