using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>
/// Raises <c>entitlement.threshold_reached</c> when a customer's usage of a limited meter reaches 80% and 100% of its
/// limit, once per period and threshold: every <see cref="BillingOptions.EntitlementCheckInterval"/> it asks the
/// aggregator's memory, for tenants with a webhook endpoint, which customers have reached 80% of the limit that applies
/// to them: their own, or the tenant's default for every customer with usage of the meter and no limit of its own. Each
/// announcement is recorded under a primary key in the same transaction as its outbox event, so several servers
/// announce it once. What is recorded is also kept in memory for the tenant's current period (read with one query the
/// first time a check needs it, then added to), so a customer already announced costs no round trip at later checks;
/// a restart reads it again, and the primary key still decides.
/// </summary>
internal sealed class EntitlementThresholdService(BillingDatabase database, IBillingUsageSource usage, TimeProvider time,
    IOptions<BillingOptions> options, ILogger<EntitlementThresholdService> logger) : BackgroundService
{
    private static readonly int[] Thresholds = [80, 100];

    /// <summary>Per tenant, the announcements known to be recorded for its current period: a bit per threshold
    /// (bit i for <see cref="Thresholds"/>[i]) per (customer, meter).</summary>
    private readonly Dictionary<string, Announcements> _announced = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _checking = new(1, 1);
    private long _insertsTried;

    private sealed class Announcements(DateTimeOffset periodStart)
    {
        public DateTimeOffset PeriodStart { get; } = periodStart;
        public Dictionary<(string Customer, string Meter), byte> Reached { get; } = [];
    }

    /// <summary>Announcements this service has tried to record (one database round trip each), whether they were new or
    /// not: a customer already announced costs none at later checks.</summary>
    internal long InsertsTried => Volatile.Read(ref _insertsTried);

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

    /// <summary>Announces every threshold reached and not yet announced; returns how many it announced. One check runs
    /// at a time.</summary>
    public async Task<int> CheckAsync(CancellationToken cancellationToken)
    {
        await _checking.WaitAsync(cancellationToken);
        try
        {
            return await CheckOnceAsync(cancellationToken);
        }
        finally
        {
            _checking.Release();
        }
    }

    private async Task<int> CheckOnceAsync(CancellationToken cancellationToken)
    {
        int announced = 0;
        await using var connection = await database.DataSource.OpenConnectionAsync(cancellationToken);
        List<string> tenants;
        await using (var list = CatalogStore.Command(connection, """
            SELECT DISTINCT tenant_id FROM webhook_endpoints WHERE deleted_at IS NULL
              AND (event_types && ARRAY['*', 'entitlement.threshold_reached']::text[]) ORDER BY tenant_id
            """))
            tenants = await CatalogStore.ReadAllAsync(list, r => r.GetString(0), cancellationToken);
        foreach (string gone in _announced.Keys.Except(tenants, StringComparer.Ordinal).ToList())
            _announced.Remove(gone);
        var now = time.GetUtcNow();
        foreach (var tenant in tenants)
        {
            // Only customers at the lowest threshold or beyond come back; the announcements are read for the first.
            Dictionary<(string Customer, string Meter), byte>? known = null;
            foreach (var limit in usage.ListLimitUsage(tenant, Thresholds[0], now))
            {
                known ??= await AnnouncedAsync(connection, tenant, limit.PeriodStart, cancellationToken);
                for (int i = 0; i < Thresholds.Length; i++)
                {
                    byte bit = (byte)(1 << i);
                    if (limit.Limit <= 0 || limit.Usage * 100 < limit.Limit * Thresholds[i]
                        || (known.GetValueOrDefault((limit.Customer, limit.Meter)) & bit) != 0)
                        continue;
                    Interlocked.Increment(ref _insertsTried);
                    if (await AnnounceAsync(connection, tenant, limit, Thresholds[i], cancellationToken))
                        announced++;
                    // Recorded now, or by another server before (the insert found its row): either way it is done.
                    known[(limit.Customer, limit.Meter)] = (byte)(known.GetValueOrDefault((limit.Customer, limit.Meter)) | bit);
                }
            }
        }
        return announced;
    }

    /// <summary>The tenant's recorded announcements of the period, read from the database when the period is not the one
    /// kept (the first check of this server, or a new month).</summary>
    private async Task<Dictionary<(string Customer, string Meter), byte>> AnnouncedAsync(NpgsqlConnection connection, string tenant,
        DateTimeOffset periodStart, CancellationToken cancellationToken)
    {
        if (_announced.TryGetValue(tenant, out var kept) && kept.PeriodStart == periodStart)
            return kept.Reached;
        var announcements = new Announcements(periodStart);
        await using (var read = CatalogStore.Command(connection, """
            SELECT customer_id, meter, threshold FROM entitlement_notifications WHERE tenant_id = $1 AND period_start = $2
            """, tenant, periodStart.UtcDateTime))
        await using (var reader = await read.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                int i = Array.IndexOf(Thresholds, reader.GetInt32(2));
                if (i < 0)
                    continue;
                var key = (reader.GetString(0), reader.GetString(1));
                announcements.Reached[key] = (byte)(announcements.Reached.GetValueOrDefault(key) | (1 << i));
            }
        }
        _announced[tenant] = announcements;
        return announcements.Reached;
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
