using System.Diagnostics.Metrics;
using AlphaMesh.Aggregator;
using AlphaMesh.BillingApi;
using AlphaMesh.Core;
using AlphaMesh.Ingest;
using AlphaMesh.Ingest.Internal;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace AlphaMesh.Server.Internal;

/// <summary>
/// <c>GET /metrics</c>: Prometheus text exposition of AlphaMesh's own instruments (ingest's accepted and rejected
/// events, the aggregator's duplicates, invalid events, malformed records, lag and stopped loops, the storage's failed
/// segment removals) and ASP.NET Core's (requests, connections). Every tenant's counts are in it, so it takes an admin
/// key of the operator tenant, like the tenants API. The aggregator's instruments are observed when a scrape asks:
/// nothing is added to the event path.
/// </summary>
internal static class ServerMetrics
{
    public const string Path = "/metrics";

    /// <summary>Series per AlphaMesh metric (tenants, or tenants times meters with a count) before OpenTelemetry folds
    /// the rest into an overflow series. It allocates that many points per metric up front (some 100 bytes each).</summary>
    public const int MaxSeriesPerMetric = 10_000;

    /// <summary>The meters exported: AlphaMesh's, then ASP.NET Core's request and connection meters.</summary>
    private static readonly string[] ExportedMeters =
        [AlphaMeshMetrics.MeterName, "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel"];

    public static void AddServerMetrics(this IServiceCollection services)
    {
        services.AddSingleton<AggregatorInstruments>();
        services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("alphamesh"))
            .WithMetrics(metrics => metrics.AddMeter(ExportedMeters)
                // Per-tenant series: OpenTelemetry's default of 2,000 per metric would fold a larger server's tenants
                // into one overflow series.
                .AddView(instrument => instrument.Meter.Name == AlphaMeshMetrics.MeterName
                    ? new MetricStreamConfiguration { CardinalityLimit = MaxSeriesPerMetric }
                    : null)
                .AddPrometheusExporter());
    }

    public static void MapServerMetrics(this WebApplication app)
    {
        // Created now, so that its instruments exist before the first scrape.
        app.Services.GetRequiredService<AggregatorInstruments>();
        app.MapPrometheusScrapingEndpoint(Path, meterProvider: null, branch => branch.Use(async (http, next) =>
        {
            if (await AuthorizeOperatorAsync(http))
                await next(http);
        }), optionsName: null);
    }

    private static async Task<bool> AuthorizeOperatorAsync(HttpContext http)
    {
        var keys = http.RequestServices.GetRequiredService<IApiKeyStore>();
        var outcome = BearerAuthorization.Check(keys, http.Request.Headers.Authorization, ApiScopes.Admin, out var principal, out var reason);
        string operatorTenant = http.RequestServices.GetRequiredService<IOptions<BillingOptions>>().Value.OperatorTenant;
        if (outcome == AuthOutcome.Allowed && principal!.TenantId != operatorTenant)
        {
            outcome = AuthOutcome.Forbidden;
            reason = $"the metrics hold every tenant's counts: only an admin key of the operator tenant '{operatorTenant}' can read them";
        }
        if (outcome == AuthOutcome.Allowed)
            return true;
        if (outcome == AuthOutcome.Unauthenticated)
            http.Response.Headers.WWWAuthenticate = "Bearer";
        await UsageHttpEndpoints.WriteErrorAsync(http, outcome == AuthOutcome.Forbidden ? 403 : 401,
            outcome == AuthOutcome.Forbidden ? "permission_denied" : "unauthenticated", reason);
        return false;
    }
}

/// <summary>The aggregator's counters as observable instruments, read at each scrape.</summary>
internal sealed class AggregatorInstruments
{
    public AggregatorInstruments(IMeterFactory meters, IAggregator aggregator)
    {
        var meter = meters.Create(AlphaMeshMetrics.MeterName);
        meter.CreateObservableCounter("alphamesh.aggregator.duplicates", () => Duplicates(aggregator), "{event}",
            "Events dropped because their (tenant, id) was counted before, per tenant");
        meter.CreateObservableCounter("alphamesh.aggregator.invalid_events", () => InvalidEvents(aggregator), "{event}",
            "Events of a meter's type that the meter could not count (no value property, a value that is not a decimal number, a gauge reading older than the window's latest), per tenant and meter");
        meter.CreateObservableCounter("alphamesh.aggregator.malformed_records", () => MalformedRecords(aggregator), "{record}",
            "Log records no partition could decode (skipped, never retried)");
        meter.CreateObservableGauge("alphamesh.aggregator.lag", () => Progress(aggregator, p => p.LagBytes), "By",
            "Bytes of acknowledged events a partition has not applied yet: what a usage query waits for");
        meter.CreateObservableGauge("alphamesh.aggregator.stopped", () => Progress(aggregator, p => p.Stopped ? 1 : 0), "",
            "1 when a partition's aggregator loop stopped on a failure (until a restart recovers it), else 0");
        meter.CreateObservableGauge("alphamesh.aggregator.checkpointed_at", () => CheckpointTimes(aggregator), "s",
            "Unix time when a partition's applied events were last known checkpointed (a checkpoint taken, or nothing applied since)");
    }

    private static IEnumerable<Measurement<double>> CheckpointTimes(IAggregator aggregator)
    {
        foreach (var partition in aggregator.GetProgress())
        {
            if (partition.CheckpointedAt is { } at)
                yield return new Measurement<double>(at.ToUnixTimeMilliseconds() / 1000.0, new KeyValuePair<string, object?>("partition", partition.Partition));
        }
    }

    // The counters are left out while a partition replays its log after a start: restored from the last checkpoint,
    // they are below what an earlier scrape saw until the replay reaches the position committed before the stop, and
    // Prometheus would take the drop for a reset and count everything again.

    private static IEnumerable<Measurement<long>> Duplicates(IAggregator aggregator)
    {
        if (Replaying(aggregator))
            yield break;
        foreach (var (tenant, counters) in aggregator.GetAllCounters())
        {
            if (counters.Duplicates > 0)
                yield return new Measurement<long>(counters.Duplicates, new KeyValuePair<string, object?>("tenant", tenant));
        }
    }

    private static IEnumerable<Measurement<long>> InvalidEvents(IAggregator aggregator)
    {
        if (Replaying(aggregator))
            yield break;
        foreach (var (tenant, counters) in aggregator.GetAllCounters())
        {
            foreach (var (meterKey, count) in counters.InvalidByMeter)
            {
                if (count > 0)
                    yield return new Measurement<long>(count, new("tenant", tenant), new("meter", meterKey));
            }
        }
    }

    private static IEnumerable<Measurement<long>> MalformedRecords(IAggregator aggregator)
    {
        if (!Replaying(aggregator))
            yield return new Measurement<long>(aggregator.MalformedRecords);
    }

    private static bool Replaying(IAggregator aggregator) => aggregator.GetProgress().Any(p => p.Replaying);

    private static IEnumerable<Measurement<long>> Progress(IAggregator aggregator, Func<PartitionProgress, long> value)
    {
        foreach (var partition in aggregator.GetProgress())
            yield return new Measurement<long>(value(partition), new KeyValuePair<string, object?>("partition", partition.Partition));
    }
}
