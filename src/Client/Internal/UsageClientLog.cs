using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace AlphaMesh.Client.Internal;

// LoggerMessage.Define rather than [LoggerMessage]: the logging abstractions come to this project
// transitively through Grpc.Net.Client, without their source generator.
internal static class UsageClientLog
{
    private static readonly Action<ILogger, int, int, TimeSpan, Exception?> s_streamFailed = LoggerMessage.Define<int, int, TimeSpan>(
        LogLevel.Warning, new EventId(1, "StreamFailed"),
        "Usage stream failed (attempt {Attempt}); resending {Unacknowledged} unacknowledged batches after {Delay}.");

    private static readonly Action<ILogger, string, int, StatusCode, Exception?> s_batchFailed = LoggerMessage.Define<string, int, StatusCode>(
        LogLevel.Error, new EventId(2, "BatchFailed"),
        "Usage batch {BatchId} ({EventCount} events) failed with {StatusCode} and is not retried.");

    private static readonly Action<ILogger, Exception?> s_callbackFailed = LoggerMessage.Define(
        LogLevel.Error, new EventId(3, "CallbackFailed"), "A UsageClientOptions callback (OnBatchFailed, OnBatchAcknowledged or OnTaggedEventsFinished) threw.");

    public static void StreamFailed(ILogger? logger, int attempt, int unacknowledged, TimeSpan delay, Exception error)
    {
        if (logger is not null)
        {
            s_streamFailed(logger, attempt, unacknowledged, delay, error);
        }
    }

    public static void BatchFailed(ILogger? logger, UsageBatchFailedException error)
    {
        if (logger is not null)
        {
            s_batchFailed(logger, error.BatchId, error.EventCount, error.StatusCode, error.InnerException);
        }
    }

    public static void CallbackFailed(ILogger? logger, Exception error)
    {
        if (logger is not null)
        {
            s_callbackFailed(logger, error);
        }
    }
}
