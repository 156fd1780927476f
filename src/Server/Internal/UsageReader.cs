using AlphaMesh.Aggregator;

namespace AlphaMesh.Server.Internal;

/// <summary>How a read ended; each transport maps it to its own status (HTTP 200/404/400, gRPC OK/NOT_FOUND/INVALID_ARGUMENT).</summary>
internal enum ReadStatus
{
    Ok,
    NotFound,
    InvalidArgument,

    /// <summary>The aggregator cannot answer now (a partition stopped): HTTP 503, gRPC UNAVAILABLE.</summary>
    Unavailable,
}

/// <summary>The answer to a read: the value, or why there is none in words a user can act on.</summary>
internal readonly record struct ReadResult<T>(ReadStatus Status, T? Value, string Message)
{
    public static ReadResult<T> Ok(T value) => new(ReadStatus.Ok, value, "");

    public static ReadResult<T> NotFound(string message) => new(ReadStatus.NotFound, default, message);

    public static ReadResult<T> Invalid(IEnumerable<string> errors) => new(ReadStatus.InvalidArgument, default, string.Join(" ", errors));

    public static ReadResult<T> Unavailable(string message) => new(ReadStatus.Unavailable, default, message);
}

/// <summary>
/// The read questions both transports answer (HTTP <see cref="UsageHttpEndpoints"/>, gRPC <see cref="UsageQueryGrpcService"/>),
/// answered once so that they cannot drift apart: meters, usage and entitlements of one tenant. Another tenant's
/// meter or customer is NOT_FOUND, exactly like one that does not exist. The caller has authorized the tenant and
/// converted the arguments (<see cref="UsageArguments"/>), collecting what was wrong with them in <c>errors</c>.
/// </summary>
internal sealed class UsageReader(IMeterCatalog catalog, IAggregator aggregator, TimeProvider time)
{
    public IReadOnlyList<MeterDefinition> ListMeters(string tenant) => catalog.List(tenant);

    public ReadResult<MeterDefinition> GetMeter(string tenant, string key, List<string> errors)
    {
        if (errors.Count > 0)
            return ReadResult<MeterDefinition>.Invalid(errors);
        return catalog.Find(tenant, key) is { } meter ? ReadResult<MeterDefinition>.Ok(meter) : ReadResult<MeterDefinition>.NotFound(NoMeter(key));
    }

    /// <summary>Runs <paramref name="query"/> unless <paramref name="errors"/> already holds a problem of its arguments.</summary>
    public async Task<ReadResult<IReadOnlyList<UsageRow>>> GetUsageAsync(UsageQuery query, List<string> errors, CancellationToken cancellationToken)
    {
        if (errors.Count > 0)
            return ReadResult<IReadOnlyList<UsageRow>>.Invalid(errors);
        UsageResult result;
        try
        {
            result = await aggregator.Usage.QueryAsync(query, cancellationToken).ConfigureAwait(false);
        }
        catch (AggregatorStoppedException e)
        {
            return ReadResult<IReadOnlyList<UsageRow>>.Unavailable(e.Message + "; usage is served again after a restart, which recovers it from its last checkpoint.");
        }
        catch (UsageQueryException e)
        {
            return e.Error == UsageQueryError.MeterNotFound
                ? ReadResult<IReadOnlyList<UsageRow>>.NotFound(NoMeter(query.MeterKey))
                : ReadResult<IReadOnlyList<UsageRow>>.Invalid([e.Message]);
        }
        if (query.Customer is not null && !result.CustomerKnown)
            return ReadResult<IReadOnlyList<UsageRow>>.NotFound($"there is no customer '{query.Customer}'");
        return ReadResult<IReadOnlyList<UsageRow>>.Ok(result.Rows);
    }

    /// <summary>Served from memory. A customer without usage is not NOT_FOUND here: a gateway asks before the
    /// customer's first event, and the answer is per tenant anyway (another tenant's usage never shows).</summary>
    public ReadResult<EntitlementCheck> CheckEntitlement(string tenant, string customer, string meter, List<string> errors)
    {
        if (errors.Count > 0)
            return ReadResult<EntitlementCheck>.Invalid(errors);
        var check = aggregator.Entitlements.Check(tenant, customer, meter, time.GetUtcNow());
        return check.MeterFound ? ReadResult<EntitlementCheck>.Ok(check) : ReadResult<EntitlementCheck>.NotFound(NoMeter(meter));
    }

    public static string NoMeter(string key) => $"there is no meter '{key}'";
}
