namespace AlphaMesh.Client;

/// <summary>
/// Receives the outcome of the tagged events of one batch (see <see cref="UsageClientOptions.OnTaggedEventsFinished"/>).
/// </summary>
/// <param name="outcome">The batch's tagged events and what became of them; valid only during the call.</param>
public delegate void UsageTaggedEventsHandler(UsageTaggedEvents outcome);

/// <summary>
/// What became of the events of one batch that were enqueued with a tag
/// (<see cref="UsageClient.TryEnqueueTagged"/>, <see cref="UsageClient.EnqueueTaggedAsync"/>): every tag in
/// <see cref="Tags"/> is either acknowledged as durable, rejected (listed in <see cref="Rejections"/>), or, when
/// <see cref="Failure"/> is set, failed with the whole batch. Reported once per batch instead of once per event, so a
/// caller that tracks many events pays no task per event.
/// </summary>
/// <remarks>
/// The spans point into the client's buffers, which are reused after the handler returns: copy what you keep.
/// Walking the tags with the rejections side by side:
/// <code>
/// int next = 0;
/// for (int i = 0; i &lt; outcome.Tags.Length; i++)
/// {
///     if (next &lt; outcome.Rejections.Length &amp;&amp; outcome.Rejections[next].Position == i) { next++; continue; } // rejected
///     if (outcome.Failure is null) Book(outcome.Tags[i]); // acknowledged
/// }
/// </code>
/// </remarks>
public readonly ref struct UsageTaggedEvents
{
    internal UsageTaggedEvents(string batchId, ReadOnlySpan<long> tags, ReadOnlySpan<UsageTaggedRejection> rejections, UsageBatchFailedException? failure)
    {
        BatchId = batchId;
        Tags = tags;
        Rejections = rejections;
        Failure = failure;
    }

    /// <summary>The batch the events were sent in.</summary>
    public string BatchId { get; }

    /// <summary>The tags of the batch's tagged events, in the order they were enqueued. Never empty.</summary>
    public ReadOnlySpan<long> Tags { get; }

    /// <summary>The events the server refused one by one, in <see cref="UsageTaggedRejection.Position"/> order; empty
    /// when none was (always empty when <see cref="Failure"/> is set).</summary>
    public ReadOnlySpan<UsageTaggedRejection> Rejections { get; }

    /// <summary>Set when the batch failed as a whole without retry: none of <see cref="Tags"/> was acknowledged.</summary>
    public UsageBatchFailedException? Failure { get; }

    /// <summary>How many of <see cref="Tags"/> the server acknowledged as durable.</summary>
    public int AcknowledgedCount => Failure is null ? Tags.Length - Rejections.Length : 0;
}

/// <summary>One tagged event the server refused (for example it failed validation). Not retried.</summary>
/// <param name="Position">The event's index in <see cref="UsageTaggedEvents.Tags"/>.</param>
/// <param name="Tag">The event's tag.</param>
/// <param name="Code">The server's rejection code, for example <c>INVALID_ARGUMENT</c>.</param>
/// <param name="Message">The server's message.</param>
public readonly record struct UsageTaggedRejection(int Position, long Tag, string Code, string Message);
