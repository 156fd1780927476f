using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using AlphaMesh.Aggregator;
using AlphaMesh.Ingest;
using AlphaMesh.Ingest.Internal;

namespace AlphaMesh.Server.Internal;

/// <summary>
/// The HTTP endpoints over the aggregator: meters (<c>/v1/meters</c>), usage (<c>/v1/meters/{key}/usage</c>),
/// entitlements and the counts of dropped events (<c>/v1/event-counters</c>). They live in the server, not in the
/// aggregator library, so that the library stays free of ASP.NET; they authorize like ingest
/// (<see cref="BearerAuthorization"/>) and answer errors in the same <c>{"error":{"code","message"}}</c> shape. Every call is scoped to the API key's tenant: another tenant's
/// meter or customer looks exactly like one that does not exist (404). The read questions are answered by
/// <see cref="UsageReader"/> and their arguments converted by <see cref="UsageArguments"/>, shared with gRPC.
/// </summary>
internal sealed class UsageHttpEndpoints(IApiKeyStore keys, IMeterCatalog catalog, IAggregator aggregator, UsageReader reader)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    public void Map(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPost("/v1/meters", CreateMeterAsync);
        endpoints.MapGet("/v1/meters", ListMetersAsync);
        endpoints.MapGet("/v1/meters/{key}", GetMeterAsync);
        endpoints.MapGet("/v1/meters/{key}/usage", GetUsageAsync);
        endpoints.MapGet("/v1/customers/{customer}/entitlements/{meter}", CheckEntitlementAsync);
        endpoints.MapGet("/v1/entitlements", ListLimitsAsync);
        endpoints.MapPut("/v1/entitlements", SetLimitAsync);
        endpoints.MapGet("/v1/event-counters", GetEventCountersAsync);
    }

    private async Task CreateMeterAsync(HttpContext http)
    {
        if (await AuthorizeAsync(http, ApiScopes.Admin) is not { } principal)
            return;
        var body = await ReadBodyAsync<MeterBody>(http);
        if (body is null)
            return;
        var errors = new List<string>();
        var aggregation = UsageArguments.ParseEnum<Aggregation>(body.Aggregation, "aggregation", required: true, errors);
        var windowSize = body.WindowSize is null ? WindowSize.Hour : UsageArguments.ParseEnum<WindowSize>(body.WindowSize, "windowSize", required: false, errors);
        if (errors.Count > 0)
        {
            await WriteErrorAsync(http, 400, "invalid_argument", string.Join(" ", errors));
            return;
        }
        var definition = new MeterDefinition
        {
            Tenant = principal.TenantId,
            Key = body.Key ?? "",
            EventType = body.EventType ?? "",
            Aggregation = aggregation,
            ValueProperty = string.IsNullOrEmpty(body.ValueProperty) ? null : body.ValueProperty,
            GroupBy = body.GroupBy ?? [],
            WindowSize = windowSize,
        };
        var existing = catalog.Find(principal.TenantId, definition.Key);
        try
        {
            var meter = await catalog.CreateAsync(definition, http.RequestAborted);
            await WriteJsonAsync(http, existing is null ? 201 : 200, ToBody(meter));
        }
        catch (MeterValidationException e)
        {
            await WriteErrorAsync(http, 400, "invalid_argument", string.Join(" ", e.Errors));
        }
        catch (MeterConflictException e)
        {
            await WriteErrorAsync(http, 409, "already_exists", e.Message);
        }
    }

    private async Task ListMetersAsync(HttpContext http)
    {
        if (await AuthorizeAsync(http, ApiScopes.Read) is not { } principal)
            return;
        var meters = reader.ListMeters(principal.TenantId).Select(ToBody).ToList();
        await WriteJsonAsync(http, 200, new DataBody<MeterBody>(meters));
    }

    private async Task GetMeterAsync(HttpContext http, string key)
    {
        if (await AuthorizeAsync(http, ApiScopes.Read) is not { } principal)
            return;
        var meter = reader.GetMeter(principal.TenantId, key, errors: []);
        if (meter.Status != ReadStatus.Ok)
        {
            await WriteErrorAsync(http, meter);
            return;
        }
        await WriteJsonAsync(http, 200, ToBody(meter.Value!));
    }

    private async Task GetUsageAsync(HttpContext http, string key)
    {
        if (await AuthorizeAsync(http, ApiScopes.Read) is not { } principal)
            return;
        var query = http.Request.Query;
        var errors = new List<string>();
        var from = UsageArguments.ParseTime(query["from"], "from", errors);
        var to = UsageArguments.ParseTime(query["to"], "to", errors);
        var windowSize = UsageArguments.ParseWindowSize(query["windowSize"], errors);
        string? customer = query["customer"].ToString() is { Length: > 0 } c ? c : null;
        var groupBy = query["groupBy"].ToString().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var filters = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, value) in query)
        {
            if (name.StartsWith("filter[", StringComparison.Ordinal) && name.EndsWith(']') && name.Length > "filter[]".Length)
                filters[name["filter[".Length..^1]] = value.ToString();
            else if (name is not ("from" or "to" or "windowSize" or "customer" or "groupBy"))
                errors.Add($"unknown query parameter '{name}' (use customer, from, to, windowSize, groupBy, filter[property]).");
        }

        var usage = await reader.GetUsageAsync(new UsageQuery
        {
            Tenant = principal.TenantId,
            MeterKey = key,
            Customer = customer,
            From = from,
            To = to,
            WindowSize = windowSize,
            GroupBy = groupBy,
            Filters = filters,
        }, errors, http.RequestAborted);
        if (usage.Status != ReadStatus.Ok)
        {
            await WriteErrorAsync(http, usage);
            return;
        }
        var rows = usage.Value!.Select(r => new UsageRowBody(Rfc3339(r.WindowStart), Rfc3339(r.WindowEnd), r.Customer, r.GroupBy, Number(r.Value), r.EventCount)).ToList();
        await WriteJsonAsync(http, 200, new DataBody<UsageRowBody>(rows));
    }

    /// <summary>Served from memory (see <see cref="UsageReader.CheckEntitlement"/>).</summary>
    private async Task CheckEntitlementAsync(HttpContext http, string customer, string meter)
    {
        if (await AuthorizeAsync(http, ApiScopes.Read) is not { } principal)
            return;
        var result = reader.CheckEntitlement(principal.TenantId, customer, meter, errors: []);
        if (result.Status != ReadStatus.Ok)
        {
            await WriteErrorAsync(http, result);
            return;
        }
        var check = result.Value;
        await WriteJsonAsync(http, 200, new EntitlementBody(check.HasAccess, Number(check.Usage), NumberOrNull(check.Limit),
            NumberOrNull(check.Remaining), Rfc3339(check.ResetsAt)));
    }

    /// <summary>What the aggregator dropped of the tenant's events, so far: duplicates (an event id counted before)
    /// and, per meter, events that lacked the meter's value property or carried a non-numeric one. Like a usage
    /// query, the answer includes every event acknowledged before the request.</summary>
    private async Task GetEventCountersAsync(HttpContext http)
    {
        if (await AuthorizeAsync(http, ApiScopes.Read) is not { } principal)
            return;
        await aggregator.WaitForCommittedAsync(http.RequestAborted);
        var counters = aggregator.GetCounters(principal.TenantId);
        var invalid = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var (meter, count) in counters.InvalidByMeter)
            invalid[meter] = count;
        await WriteJsonAsync(http, 200, new EventCountersBody(counters.Duplicates, invalid));
    }

    private async Task ListLimitsAsync(HttpContext http)
    {
        if (await AuthorizeAsync(http, ApiScopes.Read) is not { } principal)
            return;
        var limits = aggregator.Entitlements.ListLimits(principal.TenantId).Select(l => new LimitBody(l.MeterKey, l.Customer, Number(l.Limit))).ToList();
        await WriteJsonAsync(http, 200, new DataBody<LimitBody>(limits));
    }

    /// <summary>Sets the limit of a meter per calendar month for one customer, or with no customer the tenant's default.</summary>
    private async Task SetLimitAsync(HttpContext http)
    {
        if (await AuthorizeAsync(http, ApiScopes.Admin) is not { } principal)
            return;
        var body = await ReadBodyAsync<LimitBody>(http);
        if (body is null)
            return;
        if (string.IsNullOrEmpty(body.Meter) || string.IsNullOrEmpty(body.Limit)
            || !decimal.TryParse(body.Limit, NumberStyles.Number, CultureInfo.InvariantCulture, out decimal limit) || limit < 0
            || body.Customer is { Length: 0 })
        {
            await WriteErrorAsync(http, 400, "invalid_argument",
                "send {\"meter\": key, \"customer\": id or null for the tenant's default, \"limit\": a non-negative decimal as a string}");
            return;
        }
        if (catalog.Find(principal.TenantId, body.Meter) is null)
        {
            await WriteErrorAsync(http, 404, "not_found", UsageReader.NoMeter(body.Meter));
            return;
        }
        await aggregator.Entitlements.SetLimitAsync(new EntitlementLimit(principal.TenantId, body.Meter, body.Customer, limit), http.RequestAborted);
        await WriteJsonAsync(http, 200, new LimitBody(body.Meter, body.Customer, Number(limit)));
    }

    private async Task<ApiPrincipal?> AuthorizeAsync(HttpContext http, ApiScopes scope)
    {
        var outcome = BearerAuthorization.Check(keys, http.Request.Headers.Authorization, scope, out var principal, out var reason);
        if (outcome == AuthOutcome.Allowed)
            return principal;
        if (outcome == AuthOutcome.Unauthenticated)
            http.Response.Headers.WWWAuthenticate = "Bearer";
        await WriteErrorAsync(http, outcome == AuthOutcome.Forbidden ? 403 : 401,
            outcome == AuthOutcome.Forbidden ? "permission_denied" : "unauthenticated", reason);
        return null;
    }

    private static async Task<T?> ReadBodyAsync<T>(HttpContext http) where T : class
    {
        const int MaxBodyBytes = 64 * 1024;
        if (http.Request.ContentLength > MaxBodyBytes)
        {
            await WriteErrorAsync(http, 400, "invalid_argument", $"the request is over the limit of {MaxBodyBytes} bytes");
            return null;
        }
        try
        {
            // Read at most one byte past the limit, so that a body without a Content-Length cannot grow unbounded.
            var buffer = new byte[MaxBodyBytes + 1];
            int length = 0;
            int read;
            while (length < buffer.Length && (read = await http.Request.Body.ReadAsync(buffer.AsMemory(length), http.RequestAborted)) > 0)
                length += read;
            if (length > MaxBodyBytes)
                throw new JsonException($"the request is over the limit of {MaxBodyBytes} bytes");
            var body = JsonSerializer.Deserialize<T>(buffer.AsSpan(0, length), Json);
            if (body is null)
                throw new JsonException("the body must be a JSON object");
            return body;
        }
        catch (JsonException e)
        {
            await WriteErrorAsync(http, 400, "invalid_argument", "malformed request: " + e.Message);
            return null;
        }
    }

    private static string Rfc3339(DateTimeOffset value)
        => value.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.FFFFFFF'Z'", CultureInfo.InvariantCulture);

    private static string Number(decimal value) => UsageArguments.Number(value);

    private static string? NumberOrNull(decimal? value) => value is { } v ? Number(v) : null;

    private static MeterBody ToBody(MeterDefinition meter) => new()
    {
        Key = meter.Key,
        EventType = meter.EventType,
        Aggregation = UsageArguments.EnumText(meter.Aggregation),
        ValueProperty = meter.ValueProperty,
        GroupBy = [.. meter.GroupBy],
        WindowSize = UsageArguments.EnumText(meter.WindowSize),
        CreatedAt = Rfc3339(meter.CreatedAt),
    };

    private static async Task WriteJsonAsync<T>(HttpContext http, int status, T body)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(http.Response.Body, body, Json, http.RequestAborted);
    }

    internal static Task WriteErrorAsync(HttpContext http, int status, string code, string message)
        => WriteJsonAsync(http, status, new ErrorBody(new ErrorDetail(code, message)));

    private static Task WriteErrorAsync<T>(HttpContext http, ReadResult<T> result) => result.Status switch
    {
        ReadStatus.NotFound => WriteErrorAsync(http, 404, "not_found", result.Message),
        ReadStatus.Unavailable => WriteErrorAsync(http, 503, "unavailable", result.Message),
        _ => WriteErrorAsync(http, 400, "invalid_argument", result.Message),
    };

    private sealed class MeterBody
    {
        public string? Key { get; set; }
        public string? EventType { get; set; }
        public string? Aggregation { get; set; }
        public string? ValueProperty { get; set; }
        public List<string>? GroupBy { get; set; }
        public string? WindowSize { get; set; }

        /// <summary>Set by the server; ignored in a request.</summary>
        public string? CreatedAt { get; set; }
    }

    private sealed record DataBody<T>(IReadOnlyList<T> Data);

    private sealed record UsageRowBody(string WindowStart, string WindowEnd, string Customer, IReadOnlyDictionary<string, string> GroupBy, string Value, long Events);

    private sealed record EntitlementBody(bool HasAccess, string Usage, string? Limit, string? Remaining, string ResetsAt);

    private sealed record LimitBody(string? Meter, string? Customer, string? Limit);

    private sealed record EventCountersBody(long Duplicates, IReadOnlyDictionary<string, long> InvalidEvents);
}
