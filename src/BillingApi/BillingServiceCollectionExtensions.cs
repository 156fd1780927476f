using AlphaMesh.BillingApi.Internal;
using AlphaMesh.Ingest;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace AlphaMesh.BillingApi;

/// <summary>Registers and maps the billing API: its PostgreSQL store (migrated at start), the API key store that
/// ingest and queries authenticate against, the tenant and key endpoints, and webhooks (endpoints and the dispatcher).</summary>
public static class BillingServiceCollectionExtensions
{
    /// <summary>
    /// Adds the billing services and registers the <see cref="IApiKeyStore"/>: keys from PostgreSQL plus
    /// <paramref name="configuredKeys"/> (the bootstrap and configured keys, which cannot be revoked through the API).
    /// The database is opened (and the embedded cluster under <c>&lt;dataDirectory&gt;/postgres</c> started when no
    /// connection string is configured) when the key store is first resolved; the host resolves it before taking traffic.
    /// </summary>
    public static IServiceCollection AddAlphaMeshBilling(this IServiceCollection services, IConfiguration configuration,
        string dataDirectory, IReadOnlyList<StoredApiKey> configuredKeys)
    {
        services.AddOptions<BillingOptions>()
            .Configure(o => o.OperatorTenant = configuration["AlphaMesh:BootstrapTenant"] is { Length: > 0 } t ? t : o.OperatorTenant)
            .Bind(configuration.GetSection(BillingOptions.Section))
            .PostConfigure(o => o.EmbeddedDirectory = Path.GetFullPath(o.EmbeddedDirectory is { Length: > 0 } d ? d : Path.Combine(dataDirectory, "postgres")))
            .Validate(Validated, "invalid AlphaMesh:Billing options")
            .ValidateOnStart();
        services.TryAddSingleton(sp =>
        {
            var options = sp.GetRequiredService<IOptions<BillingOptions>>().Value;
            return BillingDatabase.OpenAsync(options, options.EmbeddedDirectory!, sp.GetRequiredService<ILoggerFactory>(), CancellationToken.None)
                .GetAwaiter().GetResult();
        });
        services.TryAddSingleton<TenantStore>();
        services.TryAddSingleton(sp => PostgresApiKeyStore.StartAsync(sp.GetRequiredService<TenantStore>(), configuredKeys,
            [sp.GetRequiredService<IOptions<BillingOptions>>().Value.OperatorTenant], CancellationToken.None).GetAwaiter().GetResult());
        services.TryAddSingleton<IApiKeyStore>(sp => sp.GetRequiredService<PostgresApiKeyStore>());
        services.TryAddSingleton<IdempotentPost>();
        services.TryAddSingleton<TenantHttpEndpoints>();
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<BillingEngine>();
        services.TryAddSingleton<CatalogHttpEndpoints>();
        services.TryAddSingleton<InvoiceHttpEndpoints>();
        services.TryAddSingleton<WebhookStore>();
        services.TryAddSingleton<WebhookHttpEndpoints>();
        services.AddHostedService<BillingBackgroundService>();
        services.AddHostedService<BillingRunService>();
        services.AddHostedService<WebhookDispatcher>();
        services.AddHostedService<EntitlementThresholdService>();
        services.AddOpenApi("v1");
        return services;
    }

    /// <summary>Maps the tenants and keys, the catalog (customers, plans, subscriptions), the invoice endpoints and
    /// the webhook endpoints. The host registers an <see cref="IBillingUsageSource"/>.</summary>
    public static IEndpointRouteBuilder MapAlphaMeshBilling(this IEndpointRouteBuilder endpoints)
    {
        endpoints.ServiceProvider.GetRequiredService<TenantHttpEndpoints>().Map(endpoints);
        endpoints.ServiceProvider.GetRequiredService<CatalogHttpEndpoints>().Map(endpoints);
        endpoints.ServiceProvider.GetRequiredService<InvoiceHttpEndpoints>().Map(endpoints);
        endpoints.ServiceProvider.GetRequiredService<WebhookHttpEndpoints>().Map(endpoints);
        // The document of every HTTP endpoint of the server, at /openapi/v1.json.
        endpoints.MapOpenApi();
        return endpoints;
    }

    private static bool Validated(BillingOptions options)
    {
        options.Validate();
        return true;
    }
}
