// TEMPORARY until branch core-log is merged.
namespace AlphaMesh.Core;
public static class EventLogFactory { public static IEventLog OpenFasterLog(EventLogOptions options) => throw new NotImplementedException(); }
