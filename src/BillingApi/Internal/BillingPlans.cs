using System.Collections.Concurrent;
using AlphaMesh.Rating;
using Npgsql;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>Plan versions by (tenant, plan, version). A version never changes once stored, so it is parsed once per
/// process and kept.</summary>
internal static class BillingPlans
{
    private static readonly ConcurrentDictionary<(string Tenant, string Plan, int Version), PlanVersion> Versions = new();

    public static async Task<PlanVersion> PhasePlanAsync(NpgsqlConnection connection, string tenant, PhaseRow phase, CancellationToken cancellationToken)
    {
        var key = (tenant, phase.PlanCode, phase.PlanVersion);
        if (Versions.TryGetValue(key, out var plan))
            return plan;
        var row = await CatalogStore.GetVersionAsync(connection, tenant, phase.PlanCode, phase.PlanVersion, cancellationToken)
            ?? throw new InvalidOperationException($"plan {phase.PlanCode} v{phase.PlanVersion} of tenant {tenant} is missing");
        return Versions.GetOrAdd(key, row.ToPlanVersion());
    }

    /// <summary>The latest billing date invoiced for the subscription (void invoices included: the period was billed).</summary>
    public static async Task<DateOnly?> LastInvoicedDateAsync(NpgsqlConnection connection, string tenant, string subscription, CancellationToken cancellationToken)
    {
        await using var command = CatalogStore.Command(connection,
            "SELECT max(billing_date) FROM invoices WHERE tenant_id = $1 AND subscription_id = $2 AND reason <> 'subscription_start'", tenant, subscription);
        return await command.ExecuteScalarAsync(cancellationToken) is DateOnly day ? day : null;
    }
}
