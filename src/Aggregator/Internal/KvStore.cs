using System.Numerics;
using FASTER.core;

namespace AlphaMesh.Aggregator.Internal;

/// <summary>The FASTER sizes of one store, as bit counts (validated from <see cref="AggregatorOptions"/>).</summary>
internal readonly record struct StoreSizes(long IndexBytes, long MemoryBytes, long PageBytes, long SegmentBytes)
{
    public static StoreSizes From(AggregatorOptions options, long memoryBytes, long indexBytes, string store)
    {
        Check(options.PageSizeBytes, nameof(options.PageSizeBytes));
        Check(memoryBytes, store + "MemoryBytes");
        Check(indexBytes, store + "IndexBytes");
        Check(options.SegmentSizeBytes, nameof(options.SegmentSizeBytes));
        if (options.PageSizeBytes < 4096)
            throw new ArgumentException($"Aggregator.PageSizeBytes must be at least 4096, not {options.PageSizeBytes}.");
        // FASTER needs a few pages in memory: one being filled, others flushing and the read-only region.
        if (memoryBytes < 4L * options.PageSizeBytes)
            throw new ArgumentException($"Aggregator.{store}MemoryBytes ({memoryBytes} bytes) must hold at least four pages of {options.PageSizeBytes} bytes.");
        if (options.SegmentSizeBytes < options.PageSizeBytes)
            throw new ArgumentException($"Aggregator.SegmentSizeBytes ({options.SegmentSizeBytes}) must be at least Aggregator.PageSizeBytes ({options.PageSizeBytes}).");
        if (indexBytes < 64)
            throw new ArgumentException($"Aggregator.{store}IndexBytes must be at least 64, not {indexBytes}.");
        return new StoreSizes(indexBytes, memoryBytes, options.PageSizeBytes, options.SegmentSizeBytes);
    }

    private static void Check(long value, string name)
    {
        if (value <= 0 || !BitOperations.IsPow2(value))
            throw new ArgumentException($"Aggregator.{name} must be a power of two, not {value}.", name);
    }
}

/// <summary>
/// One FASTER KV on local disk with the one session its partition's loop uses. The loop is the only user, so
/// the store runs without record locking (<see cref="ConcurrencyControlMode.None"/>). Checkpoints are kept until
/// the aggregator's manifest no longer references them (FASTER's own removal of outdated checkpoints is off,
/// because a checkpoint is only complete, for the aggregator, once the manifest that pairs it with the log
/// position is written).
/// </summary>
internal sealed class KvStore<TKey, TValue, TInput, TOutput, TFunctions> : IDisposable
    where TKey : struct
    where TValue : struct
    where TOutput : struct
    where TFunctions : IFunctions<TKey, TValue, TInput, TOutput, Empty>
{
    private readonly IDevice _device;
    private readonly DeviceLogCommitCheckpointManager _checkpoints;

    public KvStore(string directory, StoreSizes sizes, IFasterEqualityComparer<TKey> comparer, TFunctions functions)
    {
        Directory.CreateDirectory(directory);
        _device = Devices.CreateLogDevice(Path.Combine(directory, "hlog"), preallocateFile: false, deleteOnClose: false,
            capacity: Devices.CAPACITY_UNSPECIFIED, recoverDevice: true);
        _checkpoints = new DeviceLogCommitCheckpointManager(new LocalStorageNamedDeviceFactory(),
            new DefaultCheckpointNamingScheme(Path.Combine(directory, "checkpoints")), removeOutdated: false);
        try
        {
            Kv = new FasterKV<TKey, TValue>(new FasterKVSettings<TKey, TValue>
            {
                IndexSize = sizes.IndexBytes,
                LogDevice = _device,
                PageSize = sizes.PageBytes,
                MemorySize = sizes.MemoryBytes,
                SegmentSize = sizes.SegmentBytes,
                CheckpointManager = _checkpoints,
                RemoveOutdatedCheckpoints = false,
                TryRecoverLatest = false,
                ConcurrencyControlMode = ConcurrencyControlMode.None,
                EqualityComparer = comparer,
                // Queries read old windows; copying them to the tail would only grow the log.
                ReadCopyOptions = ReadCopyOptions.None,
            });
            Session = Kv.For(functions).NewSession<TFunctions>(functions);
        }
        catch
        {
            Kv?.Dispose();
            _checkpoints.Dispose();
            _device.Dispose();
            throw;
        }
    }

    public FasterKV<TKey, TValue> Kv { get; }

    public ClientSession<TKey, TValue, TInput, TOutput, Empty, TFunctions> Session { get; private set; }

    /// <summary>Restores the full checkpoint <paramref name="token"/> (taken by <see cref="CheckpointAsync"/>).</summary>
    public void Recover(Guid token, TFunctions functions)
    {
        Session.Dispose();
        Kv.Recover(token);
        Session = Kv.For(functions).NewSession<TFunctions>(functions);
    }

    /// <summary>A read-modify-write; waits for the disk when the key is not in memory.</summary>
    public TOutput Rmw(ref TKey key, ref TInput input)
    {
        TOutput output = default;
        var status = Session.RMW(ref key, ref input, ref output);
        if (status.IsPending)
            output = CompletePending();
        return output;
    }

    /// <summary>Writes the value whole (no read of the old one).</summary>
    public void Upsert(ref TKey key, ref TValue value)
    {
        if (Session.Upsert(ref key, ref value).IsPending)
            CompletePending();
    }

    /// <summary>A read; false when the key is absent.</summary>
    public bool TryRead(ref TKey key, ref TInput input, out TOutput output)
    {
        output = default;
        var status = Session.Read(ref key, ref input, ref output);
        if (status.IsPending)
        {
            Session.CompletePendingWithOutputs(out var completed, wait: true);
            try
            {
                bool found = false;
                while (completed.Next())
                {
                    found = completed.Current.Status.Found;
                    output = completed.Current.Output;
                }
                return found;
            }
            finally
            {
                completed.Dispose();
            }
        }
        return status.Found;
    }

    private TOutput CompletePending()
    {
        TOutput output = default;
        Session.CompletePendingWithOutputs(out var completed, wait: true);
        try
        {
            while (completed.Next())
                output = completed.Current.Output;
        }
        finally
        {
            completed.Dispose();
        }
        return output;
    }

    /// <summary>Takes a full (index and log) checkpoint and waits until it is durable. Fold-over: the log's
    /// in-memory part is flushed and becomes read-only, so the checkpoint writes only what changed since the last one.</summary>
    public async ValueTask<Guid> CheckpointAsync(CancellationToken cancellationToken)
    {
        // FASTER takes one checkpoint at a time, and a checkpoint whose caller stopped waiting (the loop is cancelled
        // at shutdown, then the final checkpoint follows) goes on inside FASTER: let it finish first. FASTER itself
        // gets no token: cancelling its state machine half way leaves a checkpoint that the next one cannot finish.
        cancellationToken.ThrowIfCancellationRequested();
        await Kv.CompleteCheckpointAsync(CancellationToken.None).ConfigureAwait(false);
        var (success, token) = await Kv.TakeFullCheckpointAsync(CheckpointType.FoldOver, CancellationToken.None).ConfigureAwait(false);
        if (!success)
            throw new InvalidOperationException("FASTER refused the checkpoint (another checkpoint was in progress).");
        return token;
    }

    /// <summary>Deletes the checkpoints other than <paramref name="keep"/>.</summary>
    public void PurgeExcept(Guid keep)
    {
        foreach (var token in new List<Guid>(_checkpoints.GetLogCheckpointTokens()))
        {
            if (token != keep)
                _checkpoints.Purge(token);
        }
        foreach (var token in new List<Guid>(_checkpoints.GetIndexCheckpointTokens()))
        {
            if (token != keep)
                _checkpoints.Purge(token);
        }
    }

    public long LogBytes => Kv.Log.TailAddress - Kv.Log.BeginAddress;

    public void Dispose()
    {
        Session.Dispose();
        Kv.Dispose();
        _checkpoints.Dispose();
        _device.Dispose();
    }
}
