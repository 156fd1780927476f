using AlphaMesh.Aggregator;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace AlphaMesh.Server.Internal;

/// <summary><c>/healthz</c> is unhealthy once a partition's aggregator loop has stopped: ingest still takes events
/// (they are in the log), but usage and entitlements of that partition are not answered until a restart.</summary>
internal sealed class AggregatorHealthCheck(IAggregator aggregator) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(aggregator.Failure is { } failure
            ? HealthCheckResult.Unhealthy(failure.Message + " (restart the server to recover it from its last checkpoint)")
            : HealthCheckResult.Healthy());
}
