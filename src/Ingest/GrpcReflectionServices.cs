using Google.Protobuf.Reflection;

namespace AlphaMesh.Ingest;

/// <summary>The gRPC services the reflection service lists: UsageIngest, health and reflection, and those a host adds
/// with <see cref="IngestServiceCollectionExtensions.AddAlphaMeshGrpcReflection"/>.</summary>
public sealed class GrpcReflectionServices
{
    public List<ServiceDescriptor> Services { get; } = [];
}
