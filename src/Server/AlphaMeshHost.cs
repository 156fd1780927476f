using AlphaMesh.Aggregator;
using AlphaMesh.BillingApi;
using AlphaMesh.Core;
using AlphaMesh.Ingest;
using AlphaMesh.Server.Internal;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace AlphaMesh.Server;

/// <summary>Composes the embedded server: event log, API keys, ingest endpoints, aggregator, the usage endpoints
/// (HTTP and gRPC UsageQuery) and the billing API.</summary>
public static class AlphaMeshHost
{
    /// <summary>Builds the server from the command line, appsettings.json and AlphaMesh__ environment variables.
    /// <paramref name="overrideServices"/> runs last, for tests that must replace a part.</summary>
    public static WebApplication Build(string[] args, Action<IServiceCollection>? overrideServices = null)
    {
        // appsettings.json sits beside the binary; relative paths in settings (the data directory) resolve
        // against the directory the server was started from.
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        builder.Configuration.AddCommandLine(args, new Dictionary<string, string> { ["--data-dir"] = "AlphaMesh:DataDirectory" });
        // The default builder also reads every environment variable unprefixed, so ALPHAMESH_BOOTSTRAP_KEY
        // arrives as configuration["ALPHAMESH_BOOTSTRAP_KEY"] and AlphaMesh__X as AlphaMesh:X.

        var dataDirectory = Path.GetFullPath(builder.Configuration["AlphaMesh:DataDirectory"] is { Length: > 0 } d ? d : "data");
        Directory.CreateDirectory(dataDirectory);

        builder.Host.ConfigureHostOptions(o => o.ShutdownTimeout = TimeSpan.FromSeconds(8));
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            // Large HTTP/2 windows let a stream keep several 1,000-event batches in flight; the per-stream
            // window of unacknowledged batches (AlphaMesh:Ingest:StreamWindow) bounds the memory they take.
            kestrel.Limits.Http2.InitialConnectionWindowSize = 16 << 20;
            kestrel.Limits.Http2.InitialStreamWindowSize = 8 << 20;
            kestrel.Limits.Http2.MaxStreamsPerConnection = 256;
            kestrel.Limits.MaxRequestBodySize = null; // each endpoint enforces its own limit
            kestrel.ConfigureEndpointDefaults(e => e.Protocols = HttpProtocols.Http1AndHttp2);
        });

        // Kestrel's sockets and pipes take their memory from this pool: 64 KiB blocks, so one receive call reads up
        // to 64 KiB of a batch instead of 4 KiB.
        builder.Services.AddSingleton<IMemoryPoolFactory<byte>, LargeBlockMemoryPoolFactory>();

        ReserveThreadsForBlockingLogWrites();

        var eventLogOptions = new EventLogOptions { Directory = Path.Combine(dataDirectory, "log") };
        builder.Configuration.GetSection("AlphaMesh:EventLog").Bind(eventLogOptions);
        var maxRequestBytes = builder.Configuration.GetValue("AlphaMesh:Ingest:MaxRequestBytes", new IngestLimits().MaxRequestBytes);
        // A request's records for one partition are appended as one unit, which must fit on one log page;
        // records carry the tenant and a header per event, so they can be larger than the request.
        if (eventLogOptions.PageSizeBytes < 2L * maxRequestBytes)
            throw new InvalidOperationException(
                $"AlphaMesh:EventLog:PageSizeBytes ({eventLogOptions.PageSizeBytes}) must be at least twice AlphaMesh:Ingest:MaxRequestBytes ({maxRequestBytes}).");
        builder.Services.AddSingleton(eventLogOptions);
        builder.Services.AddSingleton<IEventLog>(_ => EventLogFactory.OpenFasterLog(eventLogOptions));

        var apiKeys = LocalApiKeys.Load(builder.Configuration, dataDirectory);
        // Keys from configuration plus the keys issued through the billing API (PostgreSQL), served from memory.
        builder.Services.AddAlphaMeshBilling(builder.Configuration, dataDirectory, apiKeys.Keys);
        builder.Services.AddAlphaMeshIngest(builder.Configuration);

        var aggregatorOptions = BindAggregatorOptions(builder.Configuration, dataDirectory);
        builder.Services.AddSingleton(aggregatorOptions);
        builder.Services.AddSingleton(_ => MeterCatalogs.OpenFile(Path.Combine(dataDirectory, "meters.json")));
        // The factory resolves the event log first, so the container creates the log before the aggregator and,
        // disposing singletons in reverse order of creation, disposes the aggregator (final checkpoint) before
        // the log (final commit). The aggregator's start only recovers state and starts its loops.
        builder.Services.AddSingleton(sp => AggregatorFactory.StartAsync(
            sp.GetRequiredService<IEventLog>(), sp.GetRequiredService<IMeterCatalog>(), aggregatorOptions).GetAwaiter().GetResult());
        builder.Services.AddSingleton<UsageReader>();
        builder.Services.AddHealthChecks().AddCheck<AggregatorHealthCheck>("aggregator");
        builder.Services.AddHostedService<AggregatorStopLogger>();
        builder.Services.AddSingleton<IBillingUsageSource, AggregatorBillingUsage>();
        builder.Services.AddSingleton<UsageHttpEndpoints>();
        builder.Services.AddAlphaMeshGrpcReflection(Usage.V1.UsageQuery.Descriptor);
        builder.Services.AddServerMetrics();
        overrideServices?.Invoke(builder.Services);

        var app = builder.Build();
        // Open the log before taking traffic, so that a broken data directory stops the start with its reason.
        var log = app.Services.GetRequiredService<IEventLog>();
        // Then recover the aggregator (it replays the log from its last checkpoint) before taking traffic.
        app.Services.GetRequiredService<IAggregator>();
        // Open (or start) and migrate the billing database and load the API keys before taking traffic.
        app.Services.GetRequiredService<IApiKeyStore>();
        app.MapAlphaMeshIngest();
        app.MapAlphaMeshBilling();
        app.Services.GetRequiredService<UsageHttpEndpoints>().Map(app);
        app.MapGrpcService<UsageQueryGrpcService>();
        app.MapServerMetrics();

        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("AlphaMesh.Server");
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            ServerLog.Started(logger, string.Join(", ", app.Urls), dataDirectory, log.PartitionCount);
            if (apiKeys.CreatedKeyFile is not null)
                ServerLog.KeyCreated(logger, apiKeys.CreatedKeyFile);
        });
        app.Lifetime.ApplicationStopped.Register(() => ServerLog.Stopped(logger));

        return app;
    }

    /// <summary>Binds <c>AlphaMesh:Aggregator</c>; the state lives in <c>&lt;data&gt;/aggregator</c> unless configured.
    /// Dedupe must remember an event id at least as long as ingest accepts the event: otherwise a resent event
    /// older than the retention would be counted twice.</summary>
    internal static AggregatorOptions BindAggregatorOptions(IConfiguration configuration, string dataDirectory)
    {
        var options = new AggregatorOptions { Directory = Path.Combine(dataDirectory, "aggregator") };
        configuration.GetSection("AlphaMesh:Aggregator").Bind(options);
        options.Directory = Path.GetFullPath(options.Directory);
        if (options.LimitsFile is { Length: > 0 } limits)
            options.LimitsFile = Path.GetFullPath(limits);
        var backdating = configuration.GetValue("AlphaMesh:Ingest:BackdatingLimit", new IngestLimits().BackdatingLimit);
        if (options.DedupeRetention < backdating)
            throw new InvalidOperationException(
                $"AlphaMesh:Aggregator:DedupeRetention ({options.DedupeRetention}) must be at least AlphaMesh:Ingest:BackdatingLimit ({backdating}): " +
                "a duplicate older than the retention would otherwise be counted again.");
        // A billing run compares the usage of invoices whose range ends up to a period and the late-usage window
        // before its date (a yearly plan: the year before last) with what they billed; a month for runs made late.
        var lateUsage = configuration.GetValue("AlphaMesh:Billing:LateUsageWindow", new BillingOptions().LateUsageWindow);
        var needed = TimeSpan.FromDays((2 * 366) + 31) + lateUsage;
        if (options.WindowRetention < needed)
            throw new InvalidOperationException(
                $"AlphaMesh:Aggregator:WindowRetention ({options.WindowRetention}) must be at least {needed} (two years, a month and AlphaMesh:Billing:LateUsageWindow, {lateUsage}): " +
                "billing compares the usage of the period before last with what was invoiced, and usage past the retention is gone.");
        return options;
    }

    /// <summary>
    /// FasterLog's device writes with O_SYNC, and on Linux .NET runs "async" file writes as blocking calls on
    /// thread-pool threads: each commit holds a pool thread for a millisecond or more. With the pool's
    /// default minimum (one thread per core) those waits starve the gRPC work, and the pool adds threads only
    /// about twice a second, which showed as reply stalls of 0.6-0.9 s under steady load. A higher minimum
    /// lets the pool start threads at once; idle ones still retire.
    /// </summary>
    private static void ReserveThreadsForBlockingLogWrites()
    {
        ThreadPool.GetMinThreads(out int workers, out int completionPorts);
        ThreadPool.SetMinThreads(Math.Max(workers, 32), completionPorts);
    }
}

internal static partial class ServerLog
{
    [LoggerMessage(1, LogLevel.Information, "AlphaMesh started on {Urls}; data in {DataDirectory}; {Partitions} partitions")]
    public static partial void Started(ILogger logger, string urls, string dataDirectory, int partitions);

    [LoggerMessage(2, LogLevel.Information, "No API key was configured: created tenant 'default' and an API key (all scopes); it is in {KeyFile}, readable only by this user")]
    public static partial void KeyCreated(ILogger logger, string keyFile);

    [LoggerMessage(3, LogLevel.Information, "AlphaMesh stopped taking requests; checkpointing the aggregator and committing the event log")]
    public static partial void Stopped(ILogger logger);
}
