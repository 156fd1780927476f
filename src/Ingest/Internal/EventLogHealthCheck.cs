using AlphaMesh.Core;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace AlphaMesh.Ingest.Internal;

/// <summary>Healthy while every partition of the event log answers; ingest is useless without it.</summary>
internal sealed class EventLogHealthCheck(IEventLog log) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            for (int p = 0; p < log.PartitionCount; p++)
                _ = log.GetPartition(p).CommittedPosition;
            return Task.FromResult(HealthCheckResult.Healthy($"{log.PartitionCount} partitions"));
        }
        catch (Exception e) when (e is ObjectDisposedException or InvalidOperationException or IOException)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy("the event log is not available", e));
        }
    }
}
