namespace AlphaMesh.Client.Internal;

/// <summary>The live counters behind <see cref="UsageClientCounters"/>; updated with <see cref="Interlocked"/>.</summary>
internal sealed class ClientCounters
{
    public long EventsEnqueued;
    public long EventsAcknowledged;
    public long EventsRejected;
    public long EventsFailed;
    public long BatchesSent;
    public long BatchesResent;
    public long Reconnects;
    public long BatchesFailed;

    public UsageClientCounters Snapshot() => new(
        Volatile.Read(ref EventsEnqueued),
        Volatile.Read(ref EventsAcknowledged),
        Volatile.Read(ref EventsRejected),
        Volatile.Read(ref EventsFailed),
        Volatile.Read(ref BatchesSent),
        Volatile.Read(ref BatchesResent),
        Volatile.Read(ref Reconnects),
        Volatile.Read(ref BatchesFailed));
}
