using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>Runs billing for every tenant with subscriptions as of the current time, every
/// <see cref="BillingOptions.BillingRunInterval"/>. Safe on several servers at once: a run is idempotent.</summary>
internal sealed class BillingRunService(BillingDatabase database, BillingEngine engine, TimeProvider time, IOptions<BillingOptions> options,
    ILogger<BillingRunService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (options.Value.BillingRunInterval == TimeSpan.Zero)
            return;
        using var timer = new PeriodicTimer(options.Value.BillingRunInterval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    List<string> tenants;
                    await using (var connection = await database.DataSource.OpenConnectionAsync(stoppingToken))
                    await using (var command = CatalogStore.Command(connection, "SELECT DISTINCT tenant_id FROM subscriptions ORDER BY tenant_id"))
                        tenants = await CatalogStore.ReadAllAsync(command, r => r.GetString(0), stoppingToken);
                    // Each run logs what it did and where its time went (BillingLog.BillingRunPhases).
                    foreach (var tenant in tenants)
                        await engine.RunAsync(tenant, time.GetUtcNow(), null, stoppingToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    BillingLog.BillingRunFailed(logger, e);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }
}
