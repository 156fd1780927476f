namespace AlphaMesh.Ingest.Internal;

/// <summary>Bounds the bytes of requests received but not yet acknowledged, across all connections.</summary>
internal sealed class InFlightBudget(long capacity)
{
    private long _used;

    public long Capacity { get; } = capacity;

    public long Used => Volatile.Read(ref _used);

    /// <summary>Takes <paramref name="bytes"/> from the budget; false, taking nothing, when they do not fit.
    /// A single request larger than the whole budget is let through when nothing else is in flight, so
    /// that a small budget cannot refuse a valid request forever.</summary>
    public bool TryAcquire(long bytes)
    {
        while (true)
        {
            long used = Volatile.Read(ref _used);
            if (used + bytes > Capacity && used != 0)
                return false;
            if (Interlocked.CompareExchange(ref _used, used + bytes, used) == used)
                return true;
        }
    }

    public void Release(long bytes) => Interlocked.Add(ref _used, -bytes);
}
