using AlphaMesh.Core;
using AlphaMesh.Ingest;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace AlphaMesh.Server;

/// <summary>Composes the embedded server: event log, API keys, ingest endpoints.</summary>
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
        builder.Services.AddSingleton<IApiKeyStore>(apiKeys.Store);
        builder.Services.AddAlphaMeshIngest(builder.Configuration);
        overrideServices?.Invoke(builder.Services);

        var app = builder.Build();
        // Open the log before taking traffic, so that a broken data directory stops the start with its reason.
        var log = app.Services.GetRequiredService<IEventLog>();
        app.MapAlphaMeshIngest();

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

    [LoggerMessage(3, LogLevel.Information, "AlphaMesh stopped taking requests; committing the event log")]
    public static partial void Stopped(ILogger logger);
}
