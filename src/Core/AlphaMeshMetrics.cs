using System.Diagnostics.Metrics;

namespace AlphaMesh.Core;

/// <summary>AlphaMesh's own instruments share one <see cref="Meter"/> name, which the server exports on <c>/metrics</c>.</summary>
public static class AlphaMeshMetrics
{
    public const string MeterName = "AlphaMesh";

    /// <summary>For the storage layer, which has no dependency injection: instruments whose count is process-wide.</summary>
    internal static readonly Meter Storage = new(MeterName);

    /// <summary>Segment files of a truncated log (event log or aggregator store) that could not be removed; they only
    /// take disk space, and the next open tries again.</summary>
    internal static readonly Counter<long> SegmentRemovalFailures = Storage.CreateCounter<long>(
        "alphamesh.storage.segment_removal_failures", "{file}",
        "Segment files of a truncated log that could not be removed (disk space only; retried at the next open)");
}
