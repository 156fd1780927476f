namespace AlphaMesh.Client;

/// <summary>Sends usage events to AlphaMesh.</summary>
public sealed class UsageClient
{
}
