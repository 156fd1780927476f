namespace AlphaMesh.BillingApi;

/// <summary>Webhook delivery settings, bound from <c>AlphaMesh:Billing:Webhooks</c>.</summary>
public sealed class WebhookOptions
{
    /// <summary>Median delay before the first retry; later retries back off exponentially with jitter
    /// (Polly's decorrelated jitter: medians of about 2x, 4x, 8x this), each at most <see cref="MaxRetryDelay"/>.</summary>
    public TimeSpan FirstRetryDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Longest wait between two attempts.</summary>
    public TimeSpan MaxRetryDelay { get; set; } = TimeSpan.FromHours(1);

    /// <summary>How long after its creation a delivery is still tried; the last attempt is at this age at the latest,
    /// and a delivery that has not succeeded then is marked failed for good.</summary>
    public TimeSpan MaxAge { get; set; } = TimeSpan.FromHours(24);

    /// <summary>How long one attempt waits for the receiver's answer (status line and headers) before it counts as failed.</summary>
    public TimeSpan AttemptTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How often the dispatcher looks for due work when nothing woke it (an event enqueued on any server wakes it
    /// at once through PostgreSQL NOTIFY, and it sleeps only until its own next retry is due).</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Attempts one server sends at once.</summary>
    public int MaxConcurrentDeliveries { get; set; } = 8;

    /// <summary>Whether this server sends webhooks. Events are stored either way; another server can send them.</summary>
    public bool DispatcherEnabled { get; set; } = true;

    /// <summary>Throws with the setting at fault when a value makes no sense.</summary>
    public void Validate()
    {
        static void Positive(TimeSpan value, string name)
        {
            if (value <= TimeSpan.Zero)
                throw new InvalidOperationException($"AlphaMesh:Billing:Webhooks:{name} ({value}) must be more than 0.");
        }
        Positive(FirstRetryDelay, nameof(FirstRetryDelay));
        Positive(MaxRetryDelay, nameof(MaxRetryDelay));
        Positive(MaxAge, nameof(MaxAge));
        Positive(AttemptTimeout, nameof(AttemptTimeout));
        Positive(PollInterval, nameof(PollInterval));
        if (MaxRetryDelay < FirstRetryDelay)
            throw new InvalidOperationException($"AlphaMesh:Billing:Webhooks:MaxRetryDelay ({MaxRetryDelay}) must be at least FirstRetryDelay ({FirstRetryDelay}).");
        if (AttemptTimeout > TimeSpan.FromMinutes(5))
            throw new InvalidOperationException($"AlphaMesh:Billing:Webhooks:AttemptTimeout ({AttemptTimeout}) must be at most 5 minutes.");
        if (MaxConcurrentDeliveries is < 1 or > 256)
            throw new InvalidOperationException($"AlphaMesh:Billing:Webhooks:MaxConcurrentDeliveries ({MaxConcurrentDeliveries}) must be from 1 to 256.");
    }
}
