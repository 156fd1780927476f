namespace AlphaMesh.PeerBaselines;

/// <summary>
/// One system the events go through. <see cref="SetupAsync"/> (not timed) makes the schema or meters; the timed part
/// is <see cref="IngestAsync"/>, which returns once every event is acknowledged as stored, then
/// <see cref="ReadUsageAsync"/>, the usage of every customer as that system answers it.
/// </summary>
internal abstract class PeerTarget : IAsyncDisposable
{
    /// <summary>The row's name in the table.</summary>
    public abstract string Name { get; }

    /// <summary>The server's version as it reports it (known after <see cref="SetupAsync"/>).</summary>
    public string Version { get; protected set; } = "";

    /// <summary>What an acknowledgement means on disk, with the settings that decide it.</summary>
    public abstract string Durability { get; }

    /// <summary>How the events are sent, stored and deduplicated (batching, statements, schema).</summary>
    public abstract string Method { get; }

    public abstract Task SetupAsync(EventSet events, CancellationToken cancellationToken);

    /// <summary>Sends every event; <paramref name="lanes"/> are the event indexes of each parallel sender.</summary>
    public abstract Task IngestAsync(EventSet events, int[][] lanes, CancellationToken cancellationToken);

    /// <summary>Usage per customer over the events' time range: COUNT of events and SUM of amounts.</summary>
    public abstract Task<Dictionary<string, CustomerUsage>> ReadUsageAsync(EventSet events, CancellationToken cancellationToken);

    public virtual ValueTask DisposeAsync() => ValueTask.CompletedTask;

    /// <summary>Runs one lane per task and fails as soon as one does.</summary>
    protected static Task RunLanesAsync(int[][] lanes, Func<int, int[], Task> lane)
    {
        var tasks = new Task[lanes.Length];
        for (int l = 0; l < lanes.Length; l++)
        {
            int index = l;
            tasks[l] = Task.Run(() => lane(index, lanes[index]));
        }
        return Task.WhenAll(tasks);
    }
}
