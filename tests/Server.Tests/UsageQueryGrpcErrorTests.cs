using System.Net;
using AlphaMesh.Server.Tests.Support;
using AlphaMesh.Usage.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using static AlphaMesh.Server.Tests.UsageQueryGrpcTests;

namespace AlphaMesh.Server.Tests;

/// <summary>One server with two meters and a few events, shared by the error cases (they change nothing).</summary>
public sealed class UsageQueryServerFixture : IAsyncLifetime
{
    internal InProcessServer Server { get; private set; } = null!;
    internal UsageApi Api { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Server = await InProcessServer.StartAsync();
        Api = new UsageApi(Server);
        await Api.CreateMeterAsync(new { key = "tokens", eventType = "llm_call", aggregation = "SUM", valueProperty = "tokens", groupBy = new[] { "region" }, windowSize = "HOUR" });
        await Api.CreateMeterAsync(new { key = "users", eventType = "llm_call", aggregation = "UNIQUE_COUNT", valueProperty = "user", groupBy = new[] { "region", "tier" } });
        await Api.IngestAsync([Requests.Event("e-1", "cust-1", "llm_call", DateTimeOffset.UtcNow.AddMinutes(-5), ("tokens", "2.5"), ("region", "eu"), ("user", "u1"))], batchSize: 1);
    }

    public async Task DisposeAsync()
    {
        Api.Dispose();
        await Server.DisposeAsync();
    }
}

/// <summary>UsageQuery's refusals: INVALID_ARGUMENT naming each wrong argument (and the HTTP endpoint refusing the same
/// question with 400), UNAUTHENTICATED without a valid key, PERMISSION_DENIED without the read scope.</summary>
public sealed class UsageQueryGrpcErrorTests(UsageQueryServerFixture fixture) : IClassFixture<UsageQueryServerFixture>
{
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;
    private static readonly Timestamp From = Timestamp.FromDateTimeOffset(Now.AddDays(-1));
    private static readonly Timestamp To = Timestamp.FromDateTimeOffset(Now.AddHours(1));
    private static readonly string HttpRange = $"from={Now.AddDays(-1):yyyy-MM-ddTHH:mm:ssZ}&to={Now.AddHours(1):yyyy-MM-ddTHH:mm:ssZ}";

    private static GetUsageRequest Valid() => new() { Meter = "tokens", From = From, To = To };

    /// <summary>Case name, the request, the words the message must hold, and the same question over HTTP (null where
    /// HTTP cannot ask it: its meter is in the path, its times are text).</summary>
    public static TheoryData<string, Func<GetUsageRequest>, string[], string?> InvalidRequests() => new()
    {
        { "no meter", () => { var r = Valid(); r.Meter = ""; return r; }, ["meter is required"], null },
        { "no from", () => { var r = Valid(); r.From = null; return r; }, ["from is required"], $"/v1/meters/tokens/usage?to={Now:yyyy-MM-ddTHH:mm:ssZ}" },
        { "no to", () => { var r = Valid(); r.To = null; return r; }, ["to is required"], $"/v1/meters/tokens/usage?from={Now:yyyy-MM-ddTHH:mm:ssZ}" },
        { "nanos out of range", () => { var r = Valid(); r.From = new Timestamp { Seconds = From.Seconds, Nanos = -1 }; return r; }, ["from", "not a valid"], null },
        { "seconds past year 9999", () => { var r = Valid(); r.To = new Timestamp { Seconds = 253_402_300_800 }; return r; }, ["to", "not a valid"], null },
        { "from after to", () => { var r = Valid(); (r.From, r.To) = (r.To, r.From); return r; }, ["from must be before to"],
            $"/v1/meters/tokens/usage?from={Now.AddHours(1):yyyy-MM-ddTHH:mm:ssZ}&to={Now.AddDays(-1):yyyy-MM-ddTHH:mm:ssZ}" },
        { "unknown window size", () => { var r = Valid(); r.WindowSize = (Usage.V1.WindowSize)9; return r; }, ["windowSize", "MINUTE, HOUR, DAY, MONTH"],
            $"/v1/meters/tokens/usage?windowSize=WEEK&{HttpRange}" },
        { "window finer than the meter's", () => { var r = Valid(); r.WindowSize = Usage.V1.WindowSize.Minute; return r; }, ["windowSize MINUTE", "finer"],
            $"/v1/meters/tokens/usage?windowSize=MINUTE&{HttpRange}" },
        { "group-by key not of the meter", () => { var r = Valid(); r.GroupBy.Add("color"); return r; }, ["groupBy key 'color'"],
            $"/v1/meters/tokens/usage?groupBy=color&{HttpRange}" },
        { "group-by key twice", () => { var r = Valid(); r.GroupBy.Add(["region", "region"]); return r; }, ["groupBy key 'region' appears twice"],
            $"/v1/meters/tokens/usage?groupBy=region,region&{HttpRange}" },
        { "filter key not of the meter", () => { var r = Valid(); r.Filters["color"] = "red"; return r; }, ["filter key 'color'"],
            $"/v1/meters/tokens/usage?filter[color]=red&{HttpRange}" },
        { "unique count grouped by part of its keys", () => { var r = Valid(); r.Meter = "users"; r.GroupBy.Add("region"); return r; }, ["UNIQUE_COUNT", "region, tier"],
            $"/v1/meters/users/usage?groupBy=region&{HttpRange}" },
        { "several at once", () => new GetUsageRequest { WindowSize = (Usage.V1.WindowSize)7 }, ["meter is required", "from is required", "to is required", "windowSize 7"], null },
    };

    [Theory]
    [MemberData(nameof(InvalidRequests))]
    public async Task GetUsage_InvalidArgument_InvalidArgumentNamingIt(string name, Func<GetUsageRequest> request, string[] words, string? httpPath)
    {
        var e = await AssertStatusAsync(StatusCode.InvalidArgument,
            () => fixture.Api.Query.GetUsageAsync(request(), Requests.Auth(ServerSettings.ReadOnlyKey)).ResponseAsync);
        foreach (var word in words)
            Assert.True(e.Status.Detail.Contains(word, StringComparison.Ordinal), $"{name}: '{e.Status.Detail}' does not name '{word}'");

        if (httpPath is null)
            return;
        var (status, body) = await fixture.Api.GetJsonAsync(httpPath);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("invalid_argument", body.GetProperty("error").GetProperty("code").GetString());
        var httpMessage = body.GetProperty("error").GetProperty("message").GetString()!;
        foreach (var word in words)
            Assert.True(httpMessage.Contains(word, StringComparison.Ordinal), $"{name}: HTTP '{httpMessage}' does not name '{word}'");
    }

    [Theory]
    [InlineData("2026-11-01")]
    [InlineData("2026-11-01T00:00:00")]
    [InlineData("11/01/2026 00:00:00")]
    [InlineData("2026-11-01 00:00:00Z")]
    [InlineData("2026-11-01T00:00:00+0100")]
    public async Task GetUsageOverHttp_TimeThatIsNotRfc3339WithAZone_Returns400NamingIt(string from)
    {
        var (status, body) = await fixture.Api.GetJsonAsync($"/v1/meters/tokens/usage?from={Uri.EscapeDataString(from)}&to={Now:yyyy-MM-ddTHH:mm:ssZ}");

        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains($"from '{from}' is not an RFC 3339 time", body.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("2026-11-01T00:00:00Z")]
    [InlineData("2026-11-01T00:00:00.123456Z")]
    [InlineData("2026-11-01T01:00:00+01:00")]
    public async Task GetUsageOverHttp_Rfc3339Time_IsAccepted(string from)
    {
        var (status, _) = await fixture.Api.GetJsonAsync($"/v1/meters/tokens/usage?from={Uri.EscapeDataString(from)}&to={Now:yyyy-MM-ddTHH:mm:ssZ}");

        Assert.Equal(HttpStatusCode.OK, status);
    }

    [Fact]
    public async Task CheckEntitlementAndGetMeter_MissingArguments_InvalidArgumentNamingThem()
    {
        var auth = Requests.Auth(ServerSettings.ReadOnlyKey);
        var both = await AssertStatusAsync(StatusCode.InvalidArgument,
            () => fixture.Api.Query.CheckEntitlementAsync(new CheckEntitlementRequest(), auth).ResponseAsync);
        Assert.Contains("customer is required", both.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("meter is required", both.Status.Detail, StringComparison.Ordinal);
        var meter = await AssertStatusAsync(StatusCode.InvalidArgument,
            () => fixture.Api.Query.CheckEntitlementAsync(new CheckEntitlementRequest { Customer = "cust-1" }, auth).ResponseAsync);
        Assert.Equal("meter is required.", meter.Status.Detail);
        var key = await AssertStatusAsync(StatusCode.InvalidArgument,
            () => fixture.Api.Query.GetMeterAsync(new GetMeterRequest(), auth).ResponseAsync);
        Assert.Equal("key is required.", key.Status.Detail);
    }

    /// <summary>Every method of the service, called with the given headers.</summary>
    public static TheoryData<string> Methods() => new() { "GetUsage", "CheckEntitlement", "ListMeters", "GetMeter" };

    private Task Call(string method, Metadata headers) => method switch
    {
        "GetUsage" => fixture.Api.Query.GetUsageAsync(Valid(), headers).ResponseAsync,
        "CheckEntitlement" => fixture.Api.Query.CheckEntitlementAsync(new CheckEntitlementRequest { Customer = "cust-1", Meter = "tokens" }, headers).ResponseAsync,
        "ListMeters" => fixture.Api.Query.ListMetersAsync(new ListMetersRequest(), headers).ResponseAsync,
        "GetMeter" => fixture.Api.Query.GetMeterAsync(new GetMeterRequest { Key = "tokens" }, headers).ResponseAsync,
        _ => throw new ArgumentException(method),
    };

    [Theory]
    [MemberData(nameof(Methods))]
    public async Task AnyMethod_NoKeyOrWrongKeyOrNotBearer_Unauthenticated(string method)
    {
        var none = await AssertStatusAsync(StatusCode.Unauthenticated, () => Call(method, []));
        Assert.Contains("no API key", none.Status.Detail, StringComparison.Ordinal);
        var wrong = await AssertStatusAsync(StatusCode.Unauthenticated, () => Call(method, Requests.Auth("amk_not_a_key")));
        Assert.Contains("not valid", wrong.Status.Detail, StringComparison.Ordinal);
        await AssertStatusAsync(StatusCode.Unauthenticated, () => Call(method, new Metadata { { "authorization", "Basic " + ServerSettings.ReadOnlyKey } }));
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public async Task AnyMethod_KeyWithoutReadScope_PermissionDeniedAndReadKeyAllowed(string method)
    {
        var denied = await AssertStatusAsync(StatusCode.PermissionDenied, () => Call(method, Requests.Auth(ServerSettings.IngestOnlyKey)));
        Assert.Contains("'read' scope", denied.Status.Detail, StringComparison.Ordinal);
        await Call(method, Requests.Auth(ServerSettings.ReadOnlyKey));
        await Call(method, Requests.Auth(ServerSettings.IngestKey)); // all scopes
    }
}
