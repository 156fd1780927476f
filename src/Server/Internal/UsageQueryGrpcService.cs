using AlphaMesh.Aggregator;
using AlphaMesh.Ingest;
using AlphaMesh.Ingest.Internal;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Proto = AlphaMesh.Usage.V1;

namespace AlphaMesh.Server.Internal;

/// <summary>
/// gRPC <c>alphamesh.usage.v1.UsageQuery</c>: the same questions as the HTTP endpoints (<see cref="UsageHttpEndpoints"/>),
/// answered by the same <see cref="UsageReader"/> with arguments converted by the same <see cref="UsageArguments"/>, and
/// authorized like ingest (<see cref="GrpcAuthorization"/>, the <c>read</c> scope). Errors are RPC statuses:
/// NOT_FOUND, INVALID_ARGUMENT with every problem named, UNAUTHENTICATED, PERMISSION_DENIED.
/// </summary>
internal sealed class UsageQueryGrpcService(IApiKeyStore keys, UsageReader reader, ILogger<UsageQueryGrpcService> logger)
    : Proto.UsageQuery.UsageQueryBase
{
    public override async Task<Proto.GetUsageReply> GetUsage(Proto.GetUsageRequest request, ServerCallContext context)
    {
        var principal = Authorize(context);
        var errors = new List<string>();
        var query = new UsageQuery
        {
            Tenant = principal.TenantId,
            MeterKey = UsageArguments.Required(request.Meter, "meter", errors),
            Customer = request.Customer is { Length: > 0 } customer ? customer : null,
            From = UsageArguments.ToTime(request.From, "from", errors),
            To = UsageArguments.ToTime(request.To, "to", errors),
            WindowSize = UsageArguments.ToWindowSize(request.WindowSize, errors),
            GroupBy = request.GroupBy,
            Filters = request.Filters,
        };
        var usage = Answer(await reader.GetUsageAsync(query, errors, context.CancellationToken).ConfigureAwait(false));

        var reply = new Proto.GetUsageReply();
        foreach (var row in usage)
        {
            var message = new Proto.UsageRow
            {
                WindowStart = Timestamp.FromDateTimeOffset(row.WindowStart),
                WindowEnd = Timestamp.FromDateTimeOffset(row.WindowEnd),
                Customer = row.Customer,
                Value = UsageArguments.Number(row.Value),
                EventCount = row.EventCount,
            };
            foreach (var (key, value) in row.GroupBy)
                message.GroupBy[key] = value;
            reply.Rows.Add(message);
        }
        return reply;
    }

    public override Task<Proto.CheckEntitlementReply> CheckEntitlement(Proto.CheckEntitlementRequest request, ServerCallContext context)
    {
        var principal = Authorize(context);
        var errors = new List<string>();
        string customer = UsageArguments.Required(request.Customer, "customer", errors);
        string meter = UsageArguments.Required(request.Meter, "meter", errors);
        var check = Answer(reader.CheckEntitlement(principal.TenantId, customer, meter, errors));

        var reply = new Proto.CheckEntitlementReply
        {
            HasAccess = check.HasAccess,
            Usage = UsageArguments.Number(check.Usage),
            ResetsAt = Timestamp.FromDateTimeOffset(check.ResetsAt),
        };
        if (check.Limit is { } limit)
            reply.Limit = UsageArguments.Number(limit);
        if (check.Remaining is { } remaining)
            reply.Remaining = UsageArguments.Number(remaining);
        return Task.FromResult(reply);
    }

    public override Task<Proto.ListMetersReply> ListMeters(Proto.ListMetersRequest request, ServerCallContext context)
    {
        var principal = Authorize(context);
        var reply = new Proto.ListMetersReply();
        foreach (var meter in reader.ListMeters(principal.TenantId))
            reply.Meters.Add(ToProto(meter));
        return Task.FromResult(reply);
    }

    public override Task<Proto.Meter> GetMeter(Proto.GetMeterRequest request, ServerCallContext context)
    {
        var principal = Authorize(context);
        var errors = new List<string>();
        string key = UsageArguments.Required(request.Key, "key", errors);
        return Task.FromResult(ToProto(Answer(reader.GetMeter(principal.TenantId, key, errors))));
    }

    private ApiPrincipal Authorize(ServerCallContext context) => GrpcAuthorization.Authorize(keys, context, ApiScopes.Read, logger);

    /// <summary>The value of a successful read; otherwise the RPC ends with NOT_FOUND or INVALID_ARGUMENT and the reason.</summary>
    private static T Answer<T>(ReadResult<T> result) => result.Status switch
    {
        ReadStatus.Ok => result.Value!,
        ReadStatus.NotFound => throw new RpcException(new Status(StatusCode.NotFound, result.Message)),
        ReadStatus.Unavailable => throw new RpcException(new Status(StatusCode.Unavailable, result.Message)),
        _ => throw new RpcException(new Status(StatusCode.InvalidArgument, result.Message)),
    };

    private static Proto.Meter ToProto(MeterDefinition meter)
    {
        var message = new Proto.Meter
        {
            Key = meter.Key,
            EventType = meter.EventType,
            Aggregation = UsageArguments.ToProto(meter.Aggregation),
            ValueProperty = meter.ValueProperty ?? "",
            WindowSize = UsageArguments.ToProto(meter.WindowSize),
            CreatedAt = Timestamp.FromDateTimeOffset(meter.CreatedAt),
        };
        message.GroupBy.Add(meter.GroupBy);
        return message;
    }
}
