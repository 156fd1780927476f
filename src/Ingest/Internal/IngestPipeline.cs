using System.Buffers;
using System.Diagnostics.Metrics;
using AlphaMesh.Core;
using Microsoft.Extensions.Options;

namespace AlphaMesh.Ingest.Internal;

/// <summary>How a request's bytes are to be read.</summary>
internal enum RequestFormat
{
    Protobuf,
    CloudEventsSingle,
    CloudEventsBatch,
    CloudEventsAuto,
}

/// <summary>Why a request was refused as a whole.</summary>
internal enum RequestFailure
{
    None,
    Malformed,
    Overloaded,
}

/// <summary>One request on its way through the pipeline: its encoded records and, once appended, the
/// log position each touched partition must commit to. Pooled.</summary>
internal sealed class IngestWork
{
    public EncodedBatch Batch { get; private set; } = null!;

    /// <summary>Per partition: the position after this request's records, or -1 when it has none there.</summary>
    public long[] EndPositions { get; private set; } = [];

    public int ReservedBytes { get; private set; }

    /// <summary>The tenant of the API key that sent the request (the metrics' label).</summary>
    public string Tenant { get; private set; } = "";

    internal static IngestWork Create(int partitionCount, int reservedBytes, string tenant)
    {
        // Pooling this small object is not worth it: one allocation per request, not per event.
        return new IngestWork
        {
            Batch = EncodedBatch.Rent(partitionCount),
            EndPositions = ArrayPool<long>.Shared.Rent(partitionCount),
            ReservedBytes = reservedBytes,
            Tenant = tenant,
        };
    }

    internal void ReturnBuffers()
    {
        Batch.Return();
        ArrayPool<long>.Shared.Return(EndPositions);
        Batch = null!;
        EndPositions = [];
    }
}

/// <summary>
/// The transport-neutral ingest path: parse and validate a request into log records, append them to
/// their partitions, wait for the group commit that makes them durable. gRPC and HTTP differ only in
/// how they read the bytes and how they report.
/// </summary>
internal sealed class IngestPipeline
{
    private readonly IEventLog _log;
    private readonly IngestLimits _limits;
    private readonly TimeProvider _time;
    private readonly Counter<long> _acceptedEvents;
    private readonly Counter<long> _rejectedEvents;

    public IngestPipeline(IEventLog log, IOptions<IngestLimits> limits, IOptions<IngestServerOptions> options, TimeProvider time, IMeterFactory meters)
    {
        _log = log;
        _limits = limits.Value;
        _time = time;
        // Counted once per request, when its events are durable (the reply says so): nothing per event.
        var meter = meters.Create(AlphaMeshMetrics.MeterName);
        _acceptedEvents = meter.CreateCounter<long>("alphamesh.ingest.events.accepted", "{event}",
            "Events acknowledged as durable, per tenant (resent duplicates included: the aggregator drops those)");
        _rejectedEvents = meter.CreateCounter<long>("alphamesh.ingest.events.rejected", "{event}",
            "Events rejected one by one in an acknowledged request, per tenant and rejection code");
        Budget = new InFlightBudget(options.Value.MaxInFlightBytes);
        RetryAfter = options.Value.RetryAfter;
    }

    public InFlightBudget Budget { get; }

    public TimeSpan RetryAfter { get; }

    public IngestLimits Limits => _limits;

    /// <summary>Reserves in-flight budget and parses the request. On failure nothing is kept.</summary>
    public RequestFailure TryParse(ReadOnlySpan<byte> request, RequestFormat format, ApiPrincipal principal, out IngestWork? work, out string? error)
    {
        work = null;
        if (request.Length > _limits.MaxRequestBytes)
        {
            error = $"the request is {request.Length} bytes; the limit is {_limits.MaxRequestBytes}";
            return RequestFailure.Malformed;
        }
        if (!Budget.TryAcquire(request.Length))
        {
            error = $"the server has {Budget.Used} bytes of requests in flight and its limit is {Budget.Capacity}; retry after {RetryAfter.TotalMilliseconds} ms";
            return RequestFailure.Overloaded;
        }

        var candidate = IngestWork.Create(_log.PartitionCount, request.Length, principal.TenantId);
        var context = new IngestContext(_limits, NowUnixNanos(), _log.PartitionCount);
        bool parsed = format switch
        {
            RequestFormat.Protobuf => ProtobufBatchParser.TryParse(request, principal.TenantUtf8, context, candidate.Batch, out error),
            RequestFormat.CloudEventsSingle => CloudEventsBatchParser.TryParse(request, CloudEventsMode.Single, principal.TenantUtf8, context, candidate.Batch, out error),
            RequestFormat.CloudEventsBatch => CloudEventsBatchParser.TryParse(request, CloudEventsMode.Batch, principal.TenantUtf8, context, candidate.Batch, out error),
            _ => CloudEventsBatchParser.TryParse(request, CloudEventsMode.Auto, principal.TenantUtf8, context, candidate.Batch, out error),
        };
        if (!parsed)
        {
            Complete(candidate);
            return RequestFailure.Malformed;
        }
        work = candidate;
        error = null;
        return RequestFailure.None;
    }

    /// <summary>Appends each partition's records as one unit; waits when a partition's log has no room
    /// (that wait is what slows a client down when the disk cannot keep up).</summary>
    public async ValueTask AppendAsync(IngestWork work, CancellationToken cancellationToken)
    {
        var batch = work.Batch;
        for (int p = 0; p < _log.PartitionCount; p++)
        {
            work.EndPositions[p] = -1;
            if (!batch.HasRecords(p))
                continue;
            var partition = _log.GetPartition(p);
            var records = batch.GetPartitionBatch(p);
            long end;
            while (!partition.TryAppend(records, out end))
                await partition.WaitForRoomAsync(cancellationToken).ConfigureAwait(false);
            work.EndPositions[p] = end;
        }
    }

    /// <summary>Completes when every record of the request is durable.</summary>
    public async ValueTask WaitDurableAsync(IngestWork work, CancellationToken cancellationToken)
    {
        for (int p = 0; p < _log.PartitionCount; p++)
        {
            long end = work.EndPositions[p];
            if (end >= 0)
                await _log.GetPartition(p).WaitForCommitAsync(end, cancellationToken).ConfigureAwait(false);
        }
        CountDurable(work);
    }

    private void CountDurable(IngestWork work)
    {
        var tenant = new KeyValuePair<string, object?>("tenant", work.Tenant);
        if (work.Batch.AcceptedCount > 0)
            _acceptedEvents.Add(work.Batch.AcceptedCount, tenant);
        var rejections = work.Batch.Rejections;
        if (rejections.IsEmpty)
            return;
        // One addition per code, not per event (the codes are a fixed set of constants).
        var byCode = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var rejection in rejections)
            byCode[rejection.Code] = byCode.GetValueOrDefault(rejection.Code) + 1;
        foreach (var (code, count) in byCode)
            _rejectedEvents.Add(count, tenant, new KeyValuePair<string, object?>("code", code));
    }

    /// <summary>Gives the request's budget and buffers back. Call exactly once per parsed request.</summary>
    public void Complete(IngestWork work)
    {
        Budget.Release(work.ReservedBytes);
        work.ReturnBuffers();
    }

    private long NowUnixNanos() => (_time.GetUtcNow().UtcTicks - DateTime.UnixEpoch.Ticks) * 100;
}
