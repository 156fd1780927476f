namespace AlphaMesh.BillingApi;

/// <summary>The event types a webhook endpoint can subscribe to; the <c>type</c> of a delivered event.</summary>
public static class WebhookEventTypes
{
    /// <summary>An invoice was created (as a draft).</summary>
    public const string InvoiceCreated = "invoice.created";

    /// <summary>An invoice was finalized: numbered and immutable.</summary>
    public const string InvoiceFinalized = "invoice.finalized";

    /// <summary>An invoice was voided.</summary>
    public const string InvoiceVoided = "invoice.voided";

    /// <summary>A credit note was issued against a finalized invoice.</summary>
    public const string CreditNoteCreated = "credit_note.created";

    /// <summary>A customer's usage reached 80% or 100% of an entitlement limit (once per period and threshold).</summary>
    public const string EntitlementThresholdReached = "entitlement.threshold_reached";

    /// <summary>Every type above, in this order.</summary>
    public static IReadOnlyList<string> All { get; } =
        [InvoiceCreated, InvoiceFinalized, InvoiceVoided, CreditNoteCreated, EntitlementThresholdReached];

    /// <summary>Whether <paramref name="type"/> is one of <see cref="All"/> (exactly, case-sensitive).</summary>
    public static bool IsKnown(string? type) => type is not null && All.Contains(type, StringComparer.Ordinal);
}
