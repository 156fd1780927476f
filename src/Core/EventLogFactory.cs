using AlphaMesh.Core.Internal;

namespace AlphaMesh.Core;

/// <summary>Opens the event log implementations.</summary>
public static class EventLogFactory
{
    /// <summary>
    /// Opens (or creates) the embedded event log: one FasterLog per partition under
    /// <see cref="EventLogOptions.Directory"/>. An existing log recovers to its last commit. Throws
    /// <see cref="ArgumentException"/> for invalid options and <see cref="InvalidOperationException"/>
    /// when the configured partition count differs from the one the log was created with.
    /// </summary>
    public static IEventLog OpenFasterLog(EventLogOptions options) => FasterEventLog.Open(options, backgroundCommit: true);
}
