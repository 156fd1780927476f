using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>
/// Raises <c>entitlement.threshold_reached</c> when a customer's usage of a limited meter reaches 80% and 100% of its
/// limit, once per period and threshold: every <see cref="BillingOptions.EntitlementCheckInterval"/> it reads the
/// customers' limits and usage from the aggregator's memory, for tenants with a webhook endpoint, and records each
/// announcement under a primary key in the same transaction as its outbox event, so several servers announce it once.
/// Limits that are only a tenant default (no customer) are not watched: that would mean every customer of the tenant.
/// </summary>
internal sealed class EntitlementThresholdService(BillingDatabase database, IBillingUsageSource usage, TimeProvider time,
    IOptions<BillingOptions> options, ILogger<EntitlementThresholdService> logger) : BackgroundService
{
    private static readonly int[] Thresholds = [80, 100];

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (options.Value.EntitlementCheckInterval == TimeSpan.Zero)
            return;
        using var timer = new PeriodicTimer(options.Value.EntitlementCheckInterval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    await CheckAsync(stoppingToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    logger.LogWarning(e, "Checking entitlement thresholds failed; trying again at the next interval");
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Announces every threshold reached and not yet announced; returns how many it announced.</summary>
    public async Task<int> CheckAsync(CancellationToken cancellationToken)
    {
        int announced = 0;
        await using var connection = await database.DataSource.OpenConnectionAsync(cancellationToken);
        List<string> tenants;
        await using (var list = CatalogStore.Command(connection, """
            SELECT DISTINCT tenant_id FROM webhook_endpoints WHERE deleted_at IS NULL
              AND (event_types && ARRAY['*', 'entitlement.threshold_reached']::text[]) ORDER BY tenant_id
            """))
            tenants = await CatalogStore.ReadAllAsync(list, r => r.GetString(0), cancellationToken);
        var now = time.GetUtcNow();
        foreach (var tenant in tenants)
        {
            foreach (var limit in usage.ListLimitUsage(tenant, now))
            {
                foreach (int threshold in Thresholds)
                {
                    if (limit.Limit <= 0 || limit.Usage * 100 < limit.Limit * threshold)
                        continue;
                    if (await AnnounceAsync(connection, tenant, limit, threshold, cancellationToken))
                        announced++;
                }
            }
        }
        return announced;
    }

    private static async Task<bool> AnnounceAsync(NpgsqlConnection connection, string tenant, LimitUsage limit, int threshold, CancellationToken cancellationToken)
    {
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using (var record = CatalogStore.Command(connection, """
            INSERT INTO entitlement_notifications (tenant_id, customer_id, meter, period_start, threshold, usage, usage_limit)
            VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING
            """, tenant, limit.Customer, limit.Meter, limit.PeriodStart.UtcDateTime, threshold, limit.Usage, limit.Limit))
        {
            if (await record.ExecuteNonQueryAsync(cancellationToken) == 0)
                return false;
        }
        await WebhookOutbox.EnqueueAsync(connection, tenant, WebhookEventTypes.EntitlementThresholdReached, new
        {
            customer = limit.Customer,
            meter = limit.Meter,
            threshold,
            usage = ApiHttp.Decimal(limit.Usage),
            limit = ApiHttp.Decimal(limit.Limit),
            periodStart = ApiHttp.Rfc3339(limit.PeriodStart.UtcDateTime),
            resetsAt = ApiHttp.Rfc3339(limit.ResetsAt.UtcDateTime),
        }, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return true;
    }
}
