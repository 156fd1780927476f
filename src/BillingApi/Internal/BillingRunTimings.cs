using System.Diagnostics;
using System.Globalization;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>The parts of a billing run whose time <see cref="BillingRunTimings"/> adds up.</summary>
internal enum BillingPhase
{
    /// <summary>Reading the due subscriptions, their plans, existing invoices and billed lines.</summary>
    Read,

    /// <summary>Waiting for the aggregator's usage (the all-customer query of each meter and range).</summary>
    Usage,

    /// <summary>Working out the lines (rating), usage waits excluded.</summary>
    Rating,

    /// <summary>The chunks' write transactions, commit included, outbox excluded.</summary>
    Writes,

    /// <summary>Writing webhook events into the outbox.</summary>
    Outbox,

    /// <summary>Finalizing and numbering drafts whose grace period is over, outbox excluded.</summary>
    Finalize,
}

/// <summary>
/// Where a billing run's time went, per phase, summed over the chunks that run in parallel (so the phases add up to
/// more than the wall time when chunks overlap). Two timestamps per measured step: cheap enough to keep on in every
/// run, so that an operator sees from the log which part a slow run spent its time in.
/// </summary>
internal sealed class BillingRunTimings
{
    private static readonly BillingPhase[] Phases = Enum.GetValues<BillingPhase>();
    private readonly long[] _ticks = new long[Phases.Length];

    /// <summary>Adds the time since <paramref name="started"/> (a <see cref="Stopwatch.GetTimestamp"/>) to
    /// <paramref name="phase"/> and returns it in timestamp ticks.</summary>
    public long Add(BillingPhase phase, long started)
    {
        long elapsed = Stopwatch.GetTimestamp() - started;
        Interlocked.Add(ref _ticks[(int)phase], elapsed);
        return elapsed;
    }

    /// <summary>Moves time measured inside <paramref name="from"/> to another phase measured within it.</summary>
    public void Move(BillingPhase from, long ticks) => Interlocked.Add(ref _ticks[(int)from], -ticks);

    public TimeSpan this[BillingPhase phase] => Stopwatch.GetElapsedTime(0, Volatile.Read(ref _ticks[(int)phase]));

    /// <summary>"read 1.2 s, usage 0.3 s, ...".</summary>
    public override string ToString() => string.Join(", ",
        Phases.Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.ToString().ToLowerInvariant()} {this[p].TotalSeconds:F1} s")));
}
