using Microsoft.Extensions.Logging;

namespace AlphaMesh.Ingest.Internal;

internal static partial class IngestLog
{
    [LoggerMessage(1, LogLevel.Debug, "Refused a {Transport} request of tenant {Tenant}: {Reason}")]
    public static partial void RequestRefused(ILogger logger, string transport, string tenant, string reason);

    [LoggerMessage(2, LogLevel.Debug, "A stream of tenant {Tenant} ended: {Reason}")]
    public static partial void StreamEnded(ILogger logger, string tenant, string reason);

    [LoggerMessage(3, LogLevel.Warning, "Ingest of tenant {Tenant} failed while waiting for the log")]
    public static partial void AppendFailed(ILogger logger, string tenant, Exception exception);

    [LoggerMessage(4, LogLevel.Information, "Authentication failed on {Transport}: {Reason}")]
    public static partial void AuthenticationFailed(ILogger logger, string transport, string reason);
}
