using AlphaMesh.Aggregator;

namespace AlphaMesh.Server.Internal;

/// <summary>
/// Logs, once per partition, that its aggregator loop stopped on a failure and why. The health check, the
/// <c>alphamesh_aggregator_stopped</c> metric and the 503 answers report it too, but only to whoever asks; the log is
/// where an operator looks first. The aggregator has no logger of its own, so this looks at its progress every second.
/// </summary>
internal sealed partial class AggregatorStopLogger(IAggregator aggregator, ILogger<AggregatorStopLogger> logger) : BackgroundService
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);
    private readonly HashSet<int> _logged = [];

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval);
        do
        {
            LogNewlyStopped();
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    /// <summary>Logs the partitions that stopped since the last look.</summary>
    private void LogNewlyStopped()
    {
        foreach (var progress in aggregator.GetProgress())
        {
            if (progress.Failure is { } failure && _logged.Add(progress.Partition))
                PartitionStopped(logger, progress.Partition, failure.InnerException?.Message ?? failure.Message, failure);
        }
    }

    [LoggerMessage(10, LogLevel.Critical, "The aggregator of partition {Partition} stopped: {Reason}. Ingest still accepts and logs its events; " +
        "its usage queries and entitlement checks answer 503 until the server is restarted, which recovers it from its last checkpoint and replays the log.")]
    private static partial void PartitionStopped(ILogger logger, int partition, string reason, Exception failure);
}
