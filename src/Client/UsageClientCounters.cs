namespace AlphaMesh.Client;

/// <summary>A snapshot of a client's counters (for load harnesses and metrics).</summary>
/// <param name="EventsEnqueued">Events accepted into the buffer.</param>
/// <param name="EventsAcknowledged">Events the server reported durable (duplicates included).</param>
/// <param name="EventsRejected">Events the server refused individually.</param>
/// <param name="EventsFailed">Events of batches that failed as a whole without retry.</param>
/// <param name="BatchesSent">Batches written for the first time.</param>
/// <param name="BatchesResent">Unacknowledged batches written again on a new stream.</param>
/// <param name="Reconnects">Streams opened after a failed one.</param>
/// <param name="BatchesFailed">Batches that failed as a whole without retry.</param>
public readonly record struct UsageClientCounters(
    long EventsEnqueued,
    long EventsAcknowledged,
    long EventsRejected,
    long EventsFailed,
    long BatchesSent,
    long BatchesResent,
    long Reconnects,
    long BatchesFailed);
