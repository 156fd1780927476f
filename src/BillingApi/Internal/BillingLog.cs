using Microsoft.Extensions.Logging;

namespace AlphaMesh.BillingApi.Internal;

internal static partial class BillingLog
{
    [LoggerMessage(100, LogLevel.Information, "Applied billing migration {Version} ({Name})")]
    public static partial void MigrationApplied(ILogger logger, int version, string name);

    [LoggerMessage(101, LogLevel.Information, "The billing database is at migration {DatabaseVersion}, newer than this server's {KnownVersion}; running on it (migrations only expand)")]
    public static partial void DatabaseAhead(ILogger logger, int databaseVersion, int knownVersion);

    [LoggerMessage(102, LogLevel.Information, "No AlphaMesh:Billing:ConnectionString: creating the embedded PostgreSQL cluster in {Directory}")]
    public static partial void EmbeddedInitializing(ILogger logger, string directory);

    [LoggerMessage(103, LogLevel.Information, "Embedded PostgreSQL started on 127.0.0.1:{Port} ({Directory})")]
    public static partial void EmbeddedStarted(ILogger logger, int port, string directory);

    [LoggerMessage(104, LogLevel.Information, "Embedded PostgreSQL was already running on 127.0.0.1:{Port}; using it")]
    public static partial void EmbeddedReused(ILogger logger, int port);

    [LoggerMessage(105, LogLevel.Warning, "Could not stop the embedded PostgreSQL")]
    public static partial void EmbeddedStopFailed(ILogger logger, Exception exception);

    [LoggerMessage(106, LogLevel.Warning, "Could not refresh API keys from PostgreSQL; still using the last known set")]
    public static partial void KeyRefreshFailed(ILogger logger, Exception exception);

    [LoggerMessage(107, LogLevel.Warning, "Could not delete expired idempotency keys")]
    public static partial void IdempotencyCleanupFailed(ILogger logger, Exception exception);

    [LoggerMessage(114, LogLevel.Information, "Billing run for tenant {Tenant}: {Subscriptions} subscriptions, {Created} invoices created, {Recalculated} recalculated, {Finalized} finalized, {Failed} failed in {Seconds:F1} s; phases (summed over parallel chunks): {Phases}")]
    public static partial void BillingRunPhases(ILogger logger, string tenant, int subscriptions, int created, int recalculated, int finalized, int failed,
        double seconds, BillingRunTimings phases);

    [LoggerMessage(109, LogLevel.Warning, "The background billing run failed; it runs again at the next interval")]
    public static partial void BillingRunFailed(ILogger logger, Exception exception);

    [LoggerMessage(110, LogLevel.Warning, "A webhook dispatch round failed; trying again after the poll interval")]
    public static partial void WebhookRoundFailed(ILogger logger, Exception exception);

    [LoggerMessage(111, LogLevel.Warning, "Could not LISTEN for webhook events; polling until the connection is back")]
    public static partial void WebhookListenFailed(ILogger logger, Exception exception);

    [LoggerMessage(112, LogLevel.Warning, "Could not record a webhook attempt of delivery {DeliveryId}; it is retried when its claim ends")]
    public static partial void WebhookRecordFailed(ILogger logger, Guid deliveryId, Exception exception);

    // Not the URL: receivers often carry a token in it.
    [LoggerMessage(113, LogLevel.Warning, "Webhook delivery {DeliveryId} of event {EventId} failed for good after {Attempts} attempts (last: {LastError})")]
    public static partial void WebhookGaveUp(ILogger logger, Guid deliveryId, Guid eventId, int attempts, string lastError);
}
