using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using FASTER.core;

namespace AlphaMesh.Aggregator.Internal;

/// <summary>A 128-bit hash: the key of the dedupe store (event ids and UNIQUE_COUNT markers).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct HashKey
{
    public ulong Low;
    public ulong High;

    public HashKey(UInt128 value)
    {
        Low = (ulong)value;
        High = (ulong)(value >> 64);
    }
}

internal sealed class HashKeyComparer : IFasterEqualityComparer<HashKey>
{
    public static readonly HashKeyComparer Instance = new();

    // The key already is a good hash.
    public long GetHashCode64(ref HashKey key) => (long)key.Low;

    public bool Equals(ref HashKey k1, ref HashKey k2) => k1.Low == k2.Low && k1.High == k2.High;
}

/// <summary>Value of the dedupe store: when the entry may be dropped (Unix nanoseconds).</summary>
internal struct DedupeValue
{
    public long ExpiresAt;
}

/// <summary>RMW output of the dedupe store: whether the key was there before.</summary>
internal struct DedupeOutput
{
    public bool Existed;
}

/// <summary>"Insert if absent" in one RMW: a new key gets its expiry, an existing one keeps its value. An existing
/// key found below the mutable region (read-only or on disk) is copied to the tail: UNIQUE_COUNT markers of
/// recurring values are hit by every event that carries them, and would otherwise cost a disk read each time once
/// the stream of new event ids has pushed them out of memory.</summary>
internal sealed class DedupeFunctions : FunctionsBase<HashKey, DedupeValue, DedupeValue, DedupeOutput, Empty>
{
    public override bool InitialUpdater(ref HashKey key, ref DedupeValue input, ref DedupeValue value, ref DedupeOutput output, ref RMWInfo rmwInfo)
    {
        value = input;
        output.Existed = false;
        return true;
    }

    public override bool InPlaceUpdater(ref HashKey key, ref DedupeValue input, ref DedupeValue value, ref DedupeOutput output, ref RMWInfo rmwInfo)
    {
        output.Existed = true;
        return true;
    }


    public override bool CopyUpdater(ref HashKey key, ref DedupeValue input, ref DedupeValue oldValue, ref DedupeValue newValue, ref DedupeOutput output, ref RMWInfo rmwInfo)
    {
        newValue = oldValue;
        output.Existed = true;
        return true;
    }
}

/// <summary>Compaction drops the entries whose expiry passed.</summary>
internal readonly struct ExpiredDedupeEntries(long now) : ICompactionFunctions<HashKey, DedupeValue>
{
    public bool IsDeleted(ref HashKey key, ref DedupeValue value) => value.ExpiresAt <= now;
}

/// <summary>Compaction drops the windows that ended a retention before <paramref name="now"/>.</summary>
internal readonly struct ExpiredWindows(long now, long retention) : ICompactionFunctions<AggregateKey, AggregateState>
{
    public bool IsDeleted(ref AggregateKey key, ref AggregateState value) => Windows.End((WindowSize)key.Level, key.WindowStart) + retention <= now;
}

/// <summary>Key of the aggregates store: a series (128-bit hash of tenant, meter, customer, group values), a level
/// (the window size) and the window's start.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct AggregateKey
{
    public ulong SeriesLow;
    public ulong SeriesHigh;
    public long WindowStart;
    public long Level;

    public AggregateKey(UInt128 series, WindowSize level, long windowStart)
    {
        SeriesLow = (ulong)series;
        SeriesHigh = (ulong)(series >> 64);
        WindowStart = windowStart;
        Level = (long)level;
    }

    public readonly UInt128 Series => new(SeriesHigh, SeriesLow);
}

internal sealed class AggregateKeyComparer : IFasterEqualityComparer<AggregateKey>
{
    public static readonly AggregateKeyComparer Instance = new();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public long GetHashCode64(ref AggregateKey key)
    {
        // The series is a good hash already; mix in the window (a multiply-xorshift finaliser) so that the windows
        // of one series spread over the index.
        ulong h = key.SeriesLow ^ ((ulong)key.WindowStart * 0x9E3779B97F4A7C15UL) ^ ((ulong)key.Level << 56);
        h ^= h >> 33;
        h *= 0xFF51AFD7ED558CCDUL;
        h ^= h >> 33;
        return (long)h;
    }

    public bool Equals(ref AggregateKey k1, ref AggregateKey k2)
        => k1.SeriesLow == k2.SeriesLow && k1.SeriesHigh == k2.SeriesHigh && k1.WindowStart == k2.WindowStart && k1.Level == k2.Level;
}

/// <summary>RMW and read output of the aggregates store.</summary>
internal struct AggregateOutput
{
    public AggregateState State;
    public decimal Delta;
    public bool Rejected;
}

internal sealed class AggregateFunctions : FunctionsBase<AggregateKey, AggregateState, AggregateInput, AggregateOutput, Empty>
{
    public override bool SingleReader(ref AggregateKey key, ref AggregateInput input, ref AggregateState value, ref AggregateOutput dst, ref ReadInfo readInfo)
    {
        dst.State = value;
        return true;
    }

    public override bool ConcurrentReader(ref AggregateKey key, ref AggregateInput input, ref AggregateState value, ref AggregateOutput dst, ref ReadInfo readInfo)
    {
        dst.State = value;
        return true;
    }

    public override bool InitialUpdater(ref AggregateKey key, ref AggregateInput input, ref AggregateState value, ref AggregateOutput output, ref RMWInfo rmwInfo)
    {
        value = default;
        output.Rejected = !value.Apply(input, out output.Delta);
        return true;
    }

    public override bool InPlaceUpdater(ref AggregateKey key, ref AggregateInput input, ref AggregateState value, ref AggregateOutput output, ref RMWInfo rmwInfo)
    {
        output.Rejected = !value.Apply(input, out output.Delta);
        return true;
    }

    public override bool CopyUpdater(ref AggregateKey key, ref AggregateInput input, ref AggregateState oldValue, ref AggregateState newValue, ref AggregateOutput output, ref RMWInfo rmwInfo)
    {
        newValue = oldValue;
        output.Rejected = !newValue.Apply(input, out output.Delta);
        return true;
    }
}
