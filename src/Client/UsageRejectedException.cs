namespace AlphaMesh.Client;

/// <summary>The server refused one event of a batch (for example it failed validation). Not retried.</summary>
public sealed class UsageRejectedException : Exception
{
    /// <summary>Creates the exception for the event at <paramref name="index"/> of batch <paramref name="batchId"/>.</summary>
    public UsageRejectedException(string code, string reason, string batchId, int index)
        : base($"Usage event {index} of batch {batchId} was rejected: {code}: {reason}")
    {
        Code = code;
        Reason = reason;
        BatchId = batchId;
        Index = index;
    }

    /// <summary>The server's rejection code, for example <c>INVALID_ARGUMENT</c>.</summary>
    public string Code { get; }

    /// <summary>The server's message.</summary>
    public string Reason { get; }

    /// <summary>The batch the event was sent in.</summary>
    public string BatchId { get; }

    /// <summary>The index of the event in its batch.</summary>
    public int Index { get; }
}
