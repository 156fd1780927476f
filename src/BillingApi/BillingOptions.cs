namespace AlphaMesh.BillingApi;

/// <summary>Settings of the billing API, bound from <c>AlphaMesh:Billing</c>.</summary>
public sealed class BillingOptions
{
    public const string Section = "AlphaMesh:Billing";

    /// <summary>An Npgsql connection string. Empty: the server runs its own PostgreSQL cluster under
    /// <see cref="EmbeddedDirectory"/> (see README).</summary>
    public string? ConnectionString { get; set; }

    /// <summary>Where the embedded cluster lives; default <c>&lt;data&gt;/postgres</c>.</summary>
    public string? EmbeddedDirectory { get; set; }

    /// <summary>Directory of PostgreSQL's initdb and pg_ctl; default the newest <c>/usr/lib/postgresql/*/bin</c>, else PATH.</summary>
    public string? PostgresBinDirectory { get; set; }

    /// <summary>How often a server looks for key changes made elsewhere (another server, SQL). A revoked key stops
    /// working within this interval plus one reload; keep it well under 5 s.</summary>
    public TimeSpan KeyRefreshInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>How long a response to a POST with an Idempotency-Key is kept for replay.</summary>
    public TimeSpan IdempotencyRetention { get; set; } = TimeSpan.FromHours(24);

    /// <summary>The tenant whose admin keys may create tenants and manage every tenant's keys (the operator).</summary>
    public string OperatorTenant { get; set; } = "default";

    /// <summary>Webhook delivery (<c>AlphaMesh:Billing:Webhooks</c>).</summary>
    public WebhookOptions Webhooks { get; set; } = new();

    public void Validate()
    {
        if (KeyRefreshInterval <= TimeSpan.Zero || KeyRefreshInterval > TimeSpan.FromSeconds(4))
            throw new InvalidOperationException($"AlphaMesh:Billing:KeyRefreshInterval ({KeyRefreshInterval}) must be more than 0 and at most 4 s, so that a revoked key stops working within 5 s.");
        if (IdempotencyRetention < TimeSpan.FromMinutes(1))
            throw new InvalidOperationException($"AlphaMesh:Billing:IdempotencyRetention ({IdempotencyRetention}) must be at least one minute.");
        if (string.IsNullOrWhiteSpace(OperatorTenant))
            throw new InvalidOperationException("AlphaMesh:Billing:OperatorTenant must not be empty.");
        Webhooks.Validate();
    }
}
