using AlphaMesh.Ingest;
using AlphaMesh.Ingest.Internal;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>
/// API keys from PostgreSQL plus the keys from configuration, answered from an in-memory snapshot: the ingest and
/// query paths authenticate every request without a database round trip, as fast as before. The snapshot is
/// replaced (never mutated) when the key generation in the database moves: at once after a change made through this
/// server, and otherwise within <see cref="BillingOptions.KeyRefreshInterval"/>, so a key revoked anywhere stops
/// working within seconds. When PostgreSQL is unreachable the last snapshot stays in force.
/// </summary>
internal sealed class PostgresApiKeyStore : IApiKeyStore
{
    private readonly TenantStore _store;
    private readonly IReadOnlyList<StoredApiKey> _configuredKeys;
    private readonly SemaphoreSlim _refreshing = new(1, 1);
    private InMemoryApiKeyStore _snapshot;
    private long _generation = -1;

    private PostgresApiKeyStore(TenantStore store, IReadOnlyList<StoredApiKey> configuredKeys)
    {
        _store = store;
        _configuredKeys = configuredKeys;
        _snapshot = new InMemoryApiKeyStore(configuredKeys);
    }

    /// <summary>Loads the keys before the server takes traffic; the tenants of configured keys are created if missing.</summary>
    public static async Task<PostgresApiKeyStore> StartAsync(TenantStore store, IReadOnlyList<StoredApiKey> configuredKeys,
        IEnumerable<string> tenants, CancellationToken cancellationToken)
    {
        await store.EnsureTenantsAsync(configuredKeys.Select(k => k.Principal.TenantId).Concat(tenants), cancellationToken);
        var keys = new PostgresApiKeyStore(store, configuredKeys);
        await keys.RefreshAsync(cancellationToken);
        return keys;
    }

    public int Count => Volatile.Read(ref _snapshot).Count;

    public bool TryAuthenticate(ReadOnlySpan<char> presentedKey, out ApiPrincipal? principal)
        => Volatile.Read(ref _snapshot).TryAuthenticate(presentedKey, out principal);

    /// <summary>Reloads the keys if the generation moved since the last load. One small query when nothing changed.</summary>
    public async Task RefreshAsync(CancellationToken cancellationToken)
    {
        await _refreshing.WaitAsync(cancellationToken);
        try
        {
            if (_generation >= 0 && await _store.GetGenerationAsync(cancellationToken) == _generation)
                return;
            var (generation, keys) = await _store.LoadActiveKeysAsync(cancellationToken);
            keys.AddRange(_configuredKeys);
            Volatile.Write(ref _snapshot, new InMemoryApiKeyStore(keys));
            _generation = generation;
        }
        finally
        {
            _refreshing.Release();
        }
    }
}

/// <summary>Polls for key changes and deletes expired Idempotency-Key records.</summary>
internal sealed class BillingBackgroundService(PostgresApiKeyStore keys, TenantStore store, IOptions<BillingOptions> options,
    ILogger<BillingBackgroundService> logger) : BackgroundService
{
    private static readonly TimeSpan CleanupInterval = TimeSpan.FromMinutes(10);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.KeyRefreshInterval);
        var nextCleanup = DateTime.UtcNow;
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    await keys.RefreshAsync(stoppingToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    BillingLog.KeyRefreshFailed(logger, e);
                }
                if (DateTime.UtcNow >= nextCleanup)
                {
                    nextCleanup = DateTime.UtcNow + CleanupInterval;
                    try
                    {
                        await store.DeleteExpiredIdempotencyKeysAsync(options.Value.IdempotencyRetention, stoppingToken);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        BillingLog.IdempotencyCleanupFailed(logger, e);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }
}
