using Grpc.Core;

namespace AlphaMesh.Client;

/// <summary>
/// A whole batch failed and will not be retried: the server refused the stream with a status that retrying
/// cannot fix (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT, ...), or the client was disposed first.
/// </summary>
public sealed class UsageBatchFailedException : Exception
{
    /// <summary>Creates the exception.</summary>
    public UsageBatchFailedException(string batchId, int eventCount, StatusCode statusCode, string message, Exception? innerException = null)
        : base($"Usage batch {batchId} ({eventCount} events) failed with {statusCode}: {message}", innerException)
    {
        BatchId = batchId;
        EventCount = eventCount;
        StatusCode = statusCode;
    }

    /// <summary>The failed batch.</summary>
    public string BatchId { get; }

    /// <summary>How many events the batch held.</summary>
    public int EventCount { get; }

    /// <summary>The gRPC status that failed the batch.</summary>
    public StatusCode StatusCode { get; }
}
