using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using AlphaMesh.Aggregator;
using AlphaMesh.Server.Tests.Support;
using AlphaMesh.Usage.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Reflection.V1Alpha;
using Microsoft.Extensions.DependencyInjection;
using Aggregation = AlphaMesh.Aggregator.Aggregation;
using UsageRow = AlphaMesh.Usage.V1.UsageRow;
using WindowSize = AlphaMesh.Usage.V1.WindowSize;

namespace AlphaMesh.Server.Tests;

/// <summary>
/// gRPC <c>alphamesh.usage.v1.UsageQuery</c> against the real in-process server (Kestrel on loopback, a real
/// Grpc.Net.Client channel): the same answers as the HTTP endpoints and as an in-test oracle, tenant isolation,
/// entitlements and reflection. Argument and scope errors are in <see cref="UsageQueryGrpcErrorTests"/>.
/// </summary>
public sealed class UsageQueryGrpcTests : IAsyncLifetime
{
    private InProcessServer _server = null!;
    private UsageApi _api = null!;

    public async Task InitializeAsync()
    {
        _server = await InProcessServer.StartAsync();
        _api = new UsageApi(_server);
    }

    public async Task DisposeAsync()
    {
        _api.Dispose();
        await _server.DisposeAsync();
    }

    /// <summary>One usage question, asked over both transports.</summary>
    public sealed record Question(string Meter, WindowSize Window, string[] GroupBy, (string Key, string Value)[] Filters, string? Customer = null)
    {
        public override string ToString() => $"{Meter} {Window} groupBy=[{string.Join(",", GroupBy)}] filters=[{string.Join(",", Filters)}] customer={Customer}";
    }

    private static readonly Question[] Questions =
    [
        new("tokens", WindowSize.Hour, ["region"], []),
        new("tokens", WindowSize.Day, ["tier", "region"], []),
        new("tokens", WindowSize.Month, [], []),
        new("tokens", WindowSize.Unspecified, [], [], Customer: "cust-2"),
        new("tokens", WindowSize.Day, ["region"], [("tier", "pro")]),
        new("tokens", WindowSize.Month, ["tier"], [("region", "eu")], Customer: "cust-0"),
        new("calls", WindowSize.Day, ["region"], []),
        new("calls", WindowSize.Month, [], [("region", "us")]),
        new("users", WindowSize.Day, [], []),
        new("users", WindowSize.Month, ["region"], []),
        new("users", WindowSize.Hour, [], [("region", "eu")]),
        new("users", WindowSize.Month, [], [], Customer: "cust-4"),
    ];

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task GetUsage_RandomizedEvents_EqualsHttpAndOracle(int seed)
    {
        await CreateMetersAsync();
        var events = RandomEvents(count: 500, seed);
        await _api.IngestAsync(events, batchSize: 128);

        foreach (var question in Questions)
        {
            var grpc = await _api.Query.GetUsageAsync(Request(question), Requests.Auth(ServerSettings.ReadOnlyKey));
            var grpcRows = grpc.Rows.Select(r => ToRow(r, question.GroupBy)).ToList();

            var (status, body) = await _api.GetJsonAsync(HttpPath(question));
            Assert.True(status == HttpStatusCode.OK, body.ToString());
            var httpRows = body.GetProperty("data").EnumerateArray().Select(r => ToRow(r, question.GroupBy)).ToList();

            // The same rows, in the same order, with the very same decimal text.
            Assert.Equal(httpRows, grpcRows);
            var expected = Oracle(events, question);
            Assert.True(expected.Count > 0, $"the oracle has no rows for {question}: a weak question");
            // A UNIQUE_COUNT row counts values first seen in its windows, not events: its event count is not checked.
            Assert.Equal(expected, grpcRows.Select(r => r with { Value = Normalize(r.Value), Events = question.Meter == "users" ? null : r.Events }).ToList());
        }
    }

    [Fact]
    public async Task GetUsage_OtherTenantKey_NotFoundForCustomerAndMeterLikeUnknownOnes()
    {
        await CreateMetersAsync();
        await _api.IngestAsync(RandomEvents(count: 40, seed: 3), batchSize: 40);
        var acme = Requests.Auth(ServerSettings.ReadOnlyKey);
        var globex = Requests.Auth(ServerSettings.OtherTenantKey);

        // acme sees its own data; an unknown customer or meter is NOT_FOUND.
        Assert.NotEmpty((await _api.Query.GetUsageAsync(Request(Questions[0]), acme)).Rows);
        var unknownCustomer = await AssertStatusAsync(StatusCode.NotFound,
            () => _api.Query.GetUsageAsync(Request(Questions[0] with { Customer = "ghost" }), acme).ResponseAsync);
        Assert.Equal("there is no customer 'ghost'", unknownCustomer.Status.Detail);
        var unknownMeter = await AssertStatusAsync(StatusCode.NotFound,
            () => _api.Query.GetUsageAsync(Request(Questions[0] with { Meter = "nothing" }), acme).ResponseAsync);
        Assert.Equal("there is no meter 'nothing'", unknownMeter.Status.Detail);

        // globex sees none of acme's meters: exactly the answers of a meter that does not exist.
        var meter = await AssertStatusAsync(StatusCode.NotFound,
            () => _api.Query.GetUsageAsync(Request(Questions[0]), globex).ResponseAsync);
        Assert.Equal("there is no meter 'tokens'", meter.Status.Detail);
        await AssertStatusAsync(StatusCode.NotFound, () => _api.Query.GetMeterAsync(new GetMeterRequest { Key = "tokens" }, globex).ResponseAsync);
        await AssertStatusAsync(StatusCode.NotFound,
            () => _api.Query.CheckEntitlementAsync(new CheckEntitlementRequest { Customer = "cust-1", Meter = "tokens" }, globex).ResponseAsync);
        Assert.Empty((await _api.Query.ListMetersAsync(new ListMetersRequest(), globex)).Meters);

        // globex's own meter of the same key (its key has no admin scope, so made through the catalog): every
        // customer is none of acme's, and acme's customer is NOT_FOUND exactly like an unknown one.
        await _server.App.Services.GetRequiredService<IMeterCatalog>().CreateAsync(new MeterDefinition
        {
            Tenant = "globex",
            Key = "tokens",
            EventType = "llm_call",
            Aggregation = Aggregation.Sum,
            ValueProperty = "tokens",
            GroupBy = ["region"],
        });
        Assert.Empty((await _api.Query.GetUsageAsync(Request(Questions[0]), globex)).Rows);
        var acmeCustomer = await AssertStatusAsync(StatusCode.NotFound,
            () => _api.Query.GetUsageAsync(Request(Questions[0] with { Customer = "cust-1" }), globex).ResponseAsync);
        Assert.Equal("there is no customer 'cust-1'", acmeCustomer.Status.Detail);
        var (httpStatus, httpBody) = await _api.GetJsonAsync(HttpPath(Questions[0] with { Customer = "cust-1" }), ServerSettings.OtherTenantKey);
        Assert.Equal(HttpStatusCode.NotFound, httpStatus);
        Assert.Equal(acmeCustomer.Status.Detail, httpBody.GetProperty("error").GetProperty("message").GetString());
    }

    [Fact]
    public async Task CheckEntitlement_AfterLimitsSet_DeniesAtLimitAndEqualsHttp()
    {
        await _api.CreateMeterAsync(new { key = "calls", eventType = "api_call", aggregation = "COUNT" });
        await _api.CreateMeterAsync(new { key = "free", eventType = "api_call", aggregation = "COUNT" });
        foreach (object limit in new object[] { new { meter = "calls", customer = "cust-1", limit = "3" }, new { meter = "calls", limit = "100.5" } })
        {
            using var set = await _api.SendAsync(HttpMethod.Put, "/v1/entitlements", ServerSettings.IngestKey, limit);
            Assert.Equal(HttpStatusCode.OK, set.StatusCode);
        }
        await _api.IngestAsync([.. Enumerable.Range(0, 7).Select(i => Requests.Event($"call-{i}", customer: i < 5 ? "cust-1" : "cust-2"))], batchSize: 7);
        var now = DateTimeOffset.UtcNow;
        var nextMonth = new DateTimeOffset(now.Year, now.Month, 1, 0, 0, 0, TimeSpan.Zero).AddMonths(1);

        var over = await CheckAsync("cust-1", "calls");
        Assert.False(over.HasAccess);
        Assert.Equal("5", over.Usage);
        Assert.Equal("3", over.Limit);
        Assert.Equal(0m, decimal.Parse(over.Remaining, CultureInfo.InvariantCulture));
        // The period is the calendar month of the check (a check that straddles a month's end sees the next one).
        Assert.True(over.ResetsAt.ToDateTimeOffset() >= nextMonth, over.ResetsAt.ToString());

        var byDefault = await CheckAsync("cust-2", "calls");
        Assert.True(byDefault.HasAccess);
        Assert.Equal("2", byDefault.Usage);
        Assert.Equal("100.5", byDefault.Limit);
        Assert.Equal(98.5m, decimal.Parse(byDefault.Remaining, CultureInfo.InvariantCulture));

        var unlimited = await CheckAsync("cust-1", "free");
        Assert.True(unlimited.HasAccess);
        Assert.False(unlimited.HasLimit);
        Assert.False(unlimited.HasRemaining);

        // A customer without usage is usage 0, not NOT_FOUND (a gateway asks before the first event).
        var newcomer = await CheckAsync("nobody-yet", "calls");
        Assert.True(newcomer.HasAccess);
        Assert.Equal("0", newcomer.Usage);

        var unknownMeter = await AssertStatusAsync(StatusCode.NotFound,
            () => _api.Query.CheckEntitlementAsync(new CheckEntitlementRequest { Customer = "cust-1", Meter = "nothing" }, Requests.Auth(ServerSettings.ReadOnlyKey)).ResponseAsync);
        Assert.Equal("there is no meter 'nothing'", unknownMeter.Status.Detail);
    }

    [Fact]
    public async Task ListMetersAndGetMeter_CreatedMeters_EqualHttp()
    {
        await CreateMetersAsync();
        var auth = Requests.Auth(ServerSettings.ReadOnlyKey);

        var list = await _api.Query.ListMetersAsync(new ListMetersRequest(), auth);
        var (_, httpList) = await _api.GetJsonAsync("/v1/meters");
        Assert.Equal(httpList.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("key").GetString()), list.Meters.Select(m => m.Key));
        Assert.Equal(["calls", "tokens", "users"], list.Meters.Select(m => m.Key));

        var users = await _api.Query.GetMeterAsync(new GetMeterRequest { Key = "users" }, auth);
        var (_, httpUsers) = await _api.GetJsonAsync("/v1/meters/users");
        Assert.Equal("unique_event", users.EventType);
        Assert.Equal(Usage.V1.Aggregation.UniqueCount, users.Aggregation);
        Assert.Equal("user", users.ValueProperty);
        Assert.Equal(["region"], users.GroupBy);
        Assert.Equal(WindowSize.Hour, users.WindowSize);
        Assert.Equal(DateTimeOffset.Parse(httpUsers.GetProperty("createdAt").GetString()!, CultureInfo.InvariantCulture), users.CreatedAt.ToDateTimeOffset());
        Assert.Equal("UNIQUE_COUNT", httpUsers.GetProperty("aggregation").GetString());

        var calls = await _api.Query.GetMeterAsync(new GetMeterRequest { Key = "calls" }, auth);
        Assert.Equal(Usage.V1.Aggregation.Count, calls.Aggregation);
        Assert.Equal("", calls.ValueProperty);
        Assert.Equal(WindowSize.Minute, calls.WindowSize);
    }

    [Fact]
    public async Task Reflection_ListServices_IncludesUsageQuery()
    {
        var reflection = new ServerReflection.ServerReflectionClient(_api.Channel);
        using var call = reflection.ServerReflectionInfo();
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "" });
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { FileContainingSymbol = "alphamesh.usage.v1.UsageQuery" });
        await call.RequestStream.CompleteAsync();
        var responses = new List<ServerReflectionResponse>();
        await foreach (var response in call.ResponseStream.ReadAllAsync())
            responses.Add(response);

        var services = responses[0].ListServicesResponse.Service.Select(s => s.Name).ToList();
        Assert.Contains("alphamesh.usage.v1.UsageQuery", services);
        Assert.Contains("alphamesh.usage.v1.UsageIngest", services);
        var file = Google.Protobuf.Reflection.FileDescriptorProto.Parser.ParseFrom(responses[1].FileDescriptorResponse.FileDescriptorProto[0]);
        Assert.Equal("alphamesh.usage.v1", file.Package);
        Assert.Contains(file.Service, s => s.Name == "UsageQuery" && s.Method.Select(m => m.Name).Order().SequenceEqual(["CheckEntitlement", "GetMeter", "GetUsage", "ListMeters"]));
    }

    // ---- helpers ----

    private async Task<CheckEntitlementReply> CheckAsync(string customer, string meter)
    {
        var reply = await _api.Query.CheckEntitlementAsync(new CheckEntitlementRequest { Customer = customer, Meter = meter }, Requests.Auth(ServerSettings.ReadOnlyKey));
        var (status, http) = await _api.GetJsonAsync($"/v1/customers/{customer}/entitlements/{meter}");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(http.GetProperty("hasAccess").GetBoolean(), reply.HasAccess);
        Assert.Equal(http.GetProperty("usage").GetString(), reply.Usage);
        Assert.Equal(http.GetProperty("limit").GetString(), reply.HasLimit ? reply.Limit : null);
        Assert.Equal(http.GetProperty("remaining").GetString(), reply.HasRemaining ? reply.Remaining : null);
        Assert.Equal(DateTimeOffset.Parse(http.GetProperty("resetsAt").GetString()!, CultureInfo.InvariantCulture), reply.ResetsAt.ToDateTimeOffset());
        return reply;
    }

    internal static async Task<RpcException> AssertStatusAsync(StatusCode expected, Func<Task> call)
    {
        var e = await Assert.ThrowsAsync<RpcException>(call);
        Assert.True(e.StatusCode == expected, $"expected {expected}, got {e.StatusCode}: {e.Status.Detail}");
        return e;
    }

    private async Task CreateMetersAsync()
    {
        await _api.CreateMeterAsync(new { key = "tokens", eventType = "llm_call", aggregation = "SUM", valueProperty = "tokens", groupBy = new[] { "region", "tier" }, windowSize = "HOUR" });
        await _api.CreateMeterAsync(new { key = "calls", eventType = "llm_call", aggregation = "COUNT", groupBy = new[] { "region" }, windowSize = "MINUTE" });
        await _api.CreateMeterAsync(new { key = "users", eventType = "unique_event", aggregation = "UNIQUE_COUNT", valueProperty = "user", groupBy = new[] { "region" } });
    }

    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;
    private static readonly DateTimeOffset From = Truncate(Now.AddDays(-40));
    private static readonly DateTimeOffset To = Truncate(Now.AddHours(1));

    private static DateTimeOffset Truncate(DateTimeOffset t) => new(t.Year, t.Month, t.Day, t.Hour, t.Minute, t.Second, TimeSpan.Zero);

    private static readonly string[] Regions = ["eu", "us", "ap"];
    private static readonly string[] Tiers = ["free", "pro"];

    /// <summary>Events over the last 30 days (so MONTH rows usually span two months), five customers; llm_call events
    /// with a three-decimal token count, a region and mostly a tier (a missing tier groups as ""), unique_event
    /// events with one of a few user names, and some events of a type no meter counts.</summary>
    private static List<UsageEvent> RandomEvents(int count, int seed)
    {
        var random = new Random(seed);
        var events = new List<UsageEvent>(count);
        for (int i = 0; i < count; i++)
        {
            var time = Now.AddSeconds(-random.Next(60, 30 * 24 * 3600));
            var customer = $"cust-{random.Next(5)}";
            var region = Regions[random.Next(Regions.Length)];
            var id = $"evt-{seed}-{i}";
            var e = random.Next(10) switch
            {
                < 6 => Requests.Event(id, customer, "llm_call", time,
                    ("tokens", (random.Next(0, 1_000_000) / 1000m).ToString(CultureInfo.InvariantCulture)), ("region", region)),
                < 9 => Requests.Event(id, customer, "unique_event", time, ("user", $"user-{random.Next(12)}"), ("region", region)),
                _ => Requests.Event(id, customer, "ignored", time, ("tokens", "1"), ("region", region)),
            };
            if (e.Type == "llm_call" && random.Next(8) != 0)
                e.Data["tier"] = Tiers[random.Next(Tiers.Length)];
            events.Add(e);
        }
        return events;
    }

    /// <summary>One row, the group values in the question's group-by order.</summary>
    /// <summary>One usage row as text; <paramref name="Events"/> is null where the oracle does not check it.</summary>
    internal sealed record Row(string Customer, string Groups, DateTimeOffset Start, DateTimeOffset End, string Value, long? Events);

    private static Row ToRow(UsageRow row, string[] groupBy)
    {
        Assert.Equal(groupBy.Order(StringComparer.Ordinal), row.GroupBy.Keys.Order(StringComparer.Ordinal));
        return new(row.Customer, Groups(groupBy, k => row.GroupBy[k]), row.WindowStart.ToDateTimeOffset(), row.WindowEnd.ToDateTimeOffset(), row.Value, row.EventCount);
    }

    private static Row ToRow(JsonElement row, string[] groupBy)
    {
        var groups = row.GetProperty("groupBy");
        return new(row.GetProperty("customer").GetString()!, Groups(groupBy, k => groups.GetProperty(k).GetString()!),
            DateTimeOffset.Parse(row.GetProperty("windowStart").GetString()!, CultureInfo.InvariantCulture),
            DateTimeOffset.Parse(row.GetProperty("windowEnd").GetString()!, CultureInfo.InvariantCulture),
            row.GetProperty("value").GetString()!, row.GetProperty("events").GetInt64());
    }

    private static string Groups(string[] keys, Func<string, string> value)
    {
        var text = new StringBuilder();
        foreach (var key in keys)
            text.Append(key).Append('=').Append(value(key)).Append(';');
        return text.ToString();
    }

    /// <summary>The decimal text without trailing zeros, so that "1.500" and "1.5" compare equal.</summary>
    private static string Normalize(string value) => decimal.Parse(value, CultureInfo.InvariantCulture).ToString("G29", CultureInfo.InvariantCulture);

    private static GetUsageRequest Request(Question q)
    {
        var request = new GetUsageRequest
        {
            Meter = q.Meter,
            Customer = q.Customer ?? "",
            From = Timestamp.FromDateTimeOffset(From),
            To = Timestamp.FromDateTimeOffset(To),
            WindowSize = q.Window,
        };
        request.GroupBy.Add(q.GroupBy);
        foreach (var (key, value) in q.Filters)
            request.Filters[key] = value;
        return request;
    }

    private static string HttpPath(Question q)
    {
        var path = new StringBuilder($"/v1/meters/{q.Meter}/usage?from={From:yyyy-MM-ddTHH:mm:ssZ}&to={To:yyyy-MM-ddTHH:mm:ssZ}");
        if (q.Window != WindowSize.Unspecified)
            path.Append("&windowSize=").Append(q.Window.ToString().ToUpperInvariant());
        if (q.GroupBy.Length > 0)
            path.Append("&groupBy=").Append(Uri.EscapeDataString(string.Join(',', q.GroupBy)));
        foreach (var (key, value) in q.Filters)
            path.Append("&filter[").Append(Uri.EscapeDataString(key)).Append("]=").Append(Uri.EscapeDataString(value));
        if (q.Customer is not null)
            path.Append("&customer=").Append(Uri.EscapeDataString(q.Customer));
        return path.ToString();
    }

    /// <summary>
    /// The straightforward answer: the meter's events (of its type, in the range, passing the filters), grouped by
    /// customer, the question's group values and window, each group aggregated; ordered like the server's rows
    /// (customer, then group values, then window start). The windows roll up the meters' own windows (MINUTE, HOUR).
    /// </summary>
    private static List<Row> Oracle(IEnumerable<UsageEvent> events, Question q)
    {
        var (type, aggregate, meterWindow) = q.Meter switch
        {
            "tokens" => ("llm_call", (Func<IEnumerable<UsageEvent>, decimal>)(g => g.Sum(e => decimal.Parse(e.Data["tokens"], CultureInfo.InvariantCulture))), WindowSize.Hour),
            "calls" => ("llm_call", g => g.Count(), WindowSize.Minute),
            "users" => ("unique_event", g => g.Select(e => e.Data["user"]).Distinct(StringComparer.Ordinal).Count(), WindowSize.Hour),
            _ => throw new ArgumentException(q.Meter),
        };
        var window = q.Window == WindowSize.Unspecified ? meterWindow : q.Window;
        string Value(UsageEvent e, string key) => e.Data.TryGetValue(key, out var v) ? v : "";
        return [.. events
            .Where(e => e.Type == type && (q.Customer is null || e.Customer == q.Customer))
            .Where(e => e.Time.ToDateTimeOffset() >= From && e.Time.ToDateTimeOffset() < To)
            .Where(e => q.Filters.All(f => Value(e, f.Key) == f.Value))
            .GroupBy(e => (e.Customer, Values: string.Concat(q.GroupBy.Select(k => Value(e, k).Length + ":" + Value(e, k))),
                Groups: Groups(q.GroupBy, k => Value(e, k)), Start: WindowStart(e.Time.ToDateTimeOffset(), window)))
            .OrderBy(g => g.Key.Customer, StringComparer.Ordinal).ThenBy(g => g.Key.Values, StringComparer.Ordinal).ThenBy(g => g.Key.Start)
            .Select(g => new Row(g.Key.Customer, g.Key.Groups, g.Key.Start, WindowEnd(g.Key.Start, window),
                aggregate(g).ToString("G29", CultureInfo.InvariantCulture), q.Meter == "users" ? null : g.Count()))];
    }

    private static DateTimeOffset WindowStart(DateTimeOffset t, WindowSize size) => size switch
    {
        WindowSize.Minute => new(t.Year, t.Month, t.Day, t.Hour, t.Minute, 0, TimeSpan.Zero),
        WindowSize.Hour => new(t.Year, t.Month, t.Day, t.Hour, 0, 0, TimeSpan.Zero),
        WindowSize.Day => new(t.Year, t.Month, t.Day, 0, 0, 0, TimeSpan.Zero),
        WindowSize.Month => new(t.Year, t.Month, 1, 0, 0, 0, TimeSpan.Zero),
        _ => throw new ArgumentOutOfRangeException(nameof(size)),
    };

    private static DateTimeOffset WindowEnd(DateTimeOffset start, WindowSize size) => size switch
    {
        WindowSize.Minute => start.AddMinutes(1),
        WindowSize.Hour => start.AddHours(1),
        WindowSize.Day => start.AddDays(1),
        WindowSize.Month => start.AddMonths(1),
        _ => throw new ArgumentOutOfRangeException(nameof(size)),
    };
}
