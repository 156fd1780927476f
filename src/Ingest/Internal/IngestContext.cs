namespace AlphaMesh.Ingest.Internal;

/// <summary>What a parser needs to know about the request besides its bytes: the limits, the server's
/// receive time (event time of events sent without one, ingest time of all) and the partition count.</summary>
internal readonly record struct IngestContext(IngestLimits Limits, long NowUnixNanos, int PartitionCount);

/// <summary>One refused event: its index in the request, a <see cref="RejectionCodes"/> code and a message
/// that names the problem (and the limit, where one was exceeded).</summary>
internal readonly record struct RejectionEntry(int Index, string Code, string Message);
