using AlphaMesh.Core;

namespace AlphaMesh.Ingest;

/// <summary>
/// Limits of the ingest path, bound from the configuration section <c>AlphaMesh:Ingest</c>. A request
/// over a request-level limit is refused as a whole; an event over an event-level limit is rejected
/// on its own (see <see cref="RejectionCodes"/>) and the rest of its batch is still accepted.
/// </summary>
public sealed class IngestLimits
{
    /// <summary>The configuration section the limits are bound from.</summary>
    public const string SectionName = "AlphaMesh:Ingest";

    public int MaxEventsPerBatch { get; set; } = 10_000;
    public int MaxRequestBytes { get; set; } = 4 * 1024 * 1024;
    public int MaxIdBytes { get; set; } = 256;
    public int MaxTypeBytes { get; set; } = 256;
    public int MaxCustomerBytes { get; set; } = 256;
    public int MaxDataEntries { get; set; } = 64;
    public int MaxDataKeyBytes { get; set; } = 128;
    public int MaxDataValueBytes { get; set; } = 1024;

    /// <summary>Events older than the receive time minus this are rejected. The aggregator's dedupe
    /// retention must never be shorter, or a retried duplicate could be counted twice.</summary>
    public TimeSpan BackdatingLimit { get; set; } = TimeSpan.FromDays(35);

    /// <summary>Events later than the receive time plus this are rejected (clock skew of senders).</summary>
    public TimeSpan MaxFutureSkew { get; set; } = TimeSpan.FromMinutes(5);

    // Far enough from long.MaxValue nanoseconds that "now +/- limit" cannot overflow for any time
    // of this century; 100 years is more than any sensible backdating limit.
    private static readonly TimeSpan MaxTimeLimit = TimeSpan.FromDays(36_525);

    /// <summary>Throws <see cref="InvalidOperationException"/> naming the setting when a limit makes no sense.</summary>
    public void Validate()
    {
        RequirePositive(MaxEventsPerBatch);
        RequirePositive(MaxRequestBytes);
        RequirePositive(MaxIdBytes);
        RequirePositive(MaxTypeBytes);
        RequirePositive(MaxCustomerBytes);
        RequirePositive(MaxDataEntries);
        RequirePositive(MaxDataKeyBytes);
        RequirePositive(MaxDataValueBytes);
        // The record stores the entry count in 16 bits.
        if (MaxDataEntries > EventRecord.MaxDataEntries)
            Fail(nameof(MaxDataEntries), $"must be at most {EventRecord.MaxDataEntries} (it is {MaxDataEntries})");
        if (BackdatingLimit <= TimeSpan.Zero || BackdatingLimit > MaxTimeLimit)
            Fail(nameof(BackdatingLimit), $"must be greater than 0 and at most {MaxTimeLimit.TotalDays} days (it is {BackdatingLimit})");
        if (MaxFutureSkew < TimeSpan.Zero || MaxFutureSkew > MaxTimeLimit)
            Fail(nameof(MaxFutureSkew), $"must be at least 0 and at most {MaxTimeLimit.TotalDays} days (it is {MaxFutureSkew})");
    }

    private static void RequirePositive(int value, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(value))] string name = "")
    {
        if (value <= 0)
            Fail(name, $"must be greater than 0 (it is {value})");
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void Fail(string setting, string problem)
        => throw new InvalidOperationException($"{SectionName}:{setting} {problem}.");
}
