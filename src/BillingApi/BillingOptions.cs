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

    /// <summary>How many chunks of subscriptions a billing run bills at once (each on its own connection).</summary>
    public int BillingRunParallelism { get; set; } = 8;

    /// <summary>Subscriptions a billing run bills per transaction (a chunk): one commit per chunk rather than per
    /// subscription; one that cannot be billed writes nothing and holds up no other. Larger chunks cost fewer statements
    /// and fewer turns at the tenant's invoice-number counter, which the chunks of a tenant take one after another:
    /// 1,000 billed 100,000 subscriptions in about two thirds of the time 250 took (benchmarks/RESULTS.md).</summary>
    public int BillingRunChunkSize { get; set; } = 1000;

    /// <summary>How often the server runs billing for every tenant as of the current time; zero turns the background
    /// run off (billing then runs only through <c>POST /v1/billing-runs</c>).</summary>
    public TimeSpan BillingRunInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>How late usage may arrive after its time: the ingest backdating limit. A final invoice's usage is
    /// compared with the aggregator's for this long (plus one period), and differences become adjustment lines.</summary>
    public TimeSpan LateUsageWindow { get; set; } = TimeSpan.FromDays(35);

    /// <summary>How often customers' usage is compared with their limits to raise <c>entitlement.threshold_reached</c>
    /// (80% and 100%); zero turns it off.</summary>
    public TimeSpan EntitlementCheckInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Webhook delivery (<c>AlphaMesh:Billing:Webhooks</c>).</summary>
    public WebhookOptions Webhooks { get; set; } = new();

    public void Validate()
    {
        if (BillingRunParallelism is < 1 or > 64)
            throw new InvalidOperationException($"AlphaMesh:Billing:BillingRunParallelism ({BillingRunParallelism}) must be from 1 to 64.");
        if (BillingRunChunkSize is < 1 or > 10_000)
            throw new InvalidOperationException($"AlphaMesh:Billing:BillingRunChunkSize ({BillingRunChunkSize}) must be from 1 to 10,000.");
        if (BillingRunInterval < TimeSpan.Zero)
            throw new InvalidOperationException($"AlphaMesh:Billing:BillingRunInterval ({BillingRunInterval}) must not be negative.");
        if (LateUsageWindow < TimeSpan.Zero || LateUsageWindow > TimeSpan.FromDays(400))
            throw new InvalidOperationException($"AlphaMesh:Billing:LateUsageWindow ({LateUsageWindow}) must be from 0 to 400 days.");
        if (KeyRefreshInterval <= TimeSpan.Zero || KeyRefreshInterval > TimeSpan.FromSeconds(4))
            throw new InvalidOperationException($"AlphaMesh:Billing:KeyRefreshInterval ({KeyRefreshInterval}) must be more than 0 and at most 4 s, so that a revoked key stops working within 5 s.");
        if (IdempotencyRetention < TimeSpan.FromMinutes(1))
            throw new InvalidOperationException($"AlphaMesh:Billing:IdempotencyRetention ({IdempotencyRetention}) must be at least one minute.");
        if (string.IsNullOrWhiteSpace(OperatorTenant))
            throw new InvalidOperationException("AlphaMesh:Billing:OperatorTenant must not be empty.");
        Webhooks.Validate();
        if (EntitlementCheckInterval < TimeSpan.Zero)
            throw new InvalidOperationException($"AlphaMesh:Billing:EntitlementCheckInterval ({EntitlementCheckInterval}) must not be negative.");
    }
}
