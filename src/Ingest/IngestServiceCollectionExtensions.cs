using AlphaMesh.Core;
using AlphaMesh.Ingest.Internal;
using Grpc.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace AlphaMesh.Ingest;

/// <summary>Registers and maps the ingest endpoints (gRPC UsageIngest, HTTP /v1/events, gRPC health and reflection).</summary>
public static class IngestServiceCollectionExtensions
{
    public const string ConfigurationSection = "AlphaMesh:Ingest";

    /// <summary>Adds the ingest services. The host registers an <see cref="IEventLog"/> and an
    /// <see cref="IApiKeyStore"/>; nothing here knows which implementations they are.</summary>
    public static IServiceCollection AddAlphaMeshIngest(this IServiceCollection services, IConfiguration configuration)
    {
        var section = configuration.GetSection(ConfigurationSection);
        services.AddOptions<IngestLimits>().Bind(section).Validate(Validated, "invalid AlphaMesh:Ingest limits").ValidateOnStart();
        services.AddOptions<IngestServerOptions>().Bind(section).Validate(Validated, "invalid AlphaMesh:Ingest options").ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);
        services.AddMetrics();
        services.TryAddSingleton<IngestPipeline>();
        services.TryAddSingleton<HttpIngestEndpoint>();

        services.AddGrpc();
        services.AddOptions<Grpc.AspNetCore.Server.GrpcServiceOptions>()
            .Configure<IOptions<IngestLimits>>((grpc, limits) =>
            {
                // Up to twice the limit is read, so that the handler can refuse an oversized request with
                // INVALID_ARGUMENT and a reason; anything larger is refused by gRPC itself before it is read.
                grpc.MaxReceiveMessageSize = (int)Math.Min(int.MaxValue, 2L * limits.Value.MaxRequestBytes);
                grpc.EnableDetailedErrors = false;
            });
        services.AddHealthChecks().AddCheck<EventLogHealthCheck>("event-log");
        // Answer health requests from the checks themselves, not a cache that is filled seconds after start.
        services.AddGrpcHealthChecks(o => o.UseHealthChecksCache = false);
        // Reflection lists the contract's services; UsageIngest is bound by hand (its marshallers read raw
        // bytes), so grpc-dotnet cannot discover it and the listed services are named instead: these here, and
        // whatever else the host maps, added with AddAlphaMeshGrpcReflection.
        services.AddAlphaMeshGrpcReflection(
            AlphaMesh.Usage.V1.UsageIngest.Descriptor,
            Grpc.Health.V1.Health.Descriptor,
            Grpc.Reflection.V1Alpha.ServerReflection.Descriptor);
        services.TryAddSingleton(sp => new ReflectionServiceImpl(sp.GetRequiredService<IOptions<GrpcReflectionServices>>().Value.Services));
        services.AddGrpcReflection();
        return services;
    }

    /// <summary>Adds gRPC services to those the reflection service lists (the host maps them itself).</summary>
    public static IServiceCollection AddAlphaMeshGrpcReflection(this IServiceCollection services, params Google.Protobuf.Reflection.ServiceDescriptor[] descriptors)
    {
        services.Configure<GrpcReflectionServices>(o => o.Services.AddRange(descriptors));
        return services;
    }

    /// <summary>Maps gRPC UsageIngest, health and reflection, <c>POST /v1/events</c> and <c>GET /healthz</c>.</summary>
    public static IEndpointRouteBuilder MapAlphaMeshIngest(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGrpcService<UsageIngestService>();
        endpoints.MapGrpcHealthChecksService();
        endpoints.MapGrpcReflectionService();
        var http = endpoints.ServiceProvider.GetRequiredService<HttpIngestEndpoint>();
        endpoints.MapPost("/v1/events", http.HandleAsync);
        endpoints.MapHealthChecks("/healthz");
        return endpoints;
    }

    private static bool Validated(IngestLimits limits)
    {
        limits.Validate();
        return true;
    }

    private static bool Validated(IngestServerOptions options)
    {
        options.Validate();
        return true;
    }
}
