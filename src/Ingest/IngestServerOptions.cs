namespace AlphaMesh.Ingest;

/// <summary>Flow-control settings of the ingest endpoints. Bound from <c>AlphaMesh:Ingest</c>.</summary>
public sealed class IngestServerOptions
{
    /// <summary>Bytes of requests that may be in flight (received, not yet acknowledged) across all
    /// connections. A request that would go past it is refused with RESOURCE_EXHAUSTED / 429.</summary>
    public long MaxInFlightBytes { get; set; } = 256L << 20;

    /// <summary>Batches of one stream that may wait for their commit. When the window is full the
    /// server stops reading that stream, and HTTP/2 flow control slows the client down.</summary>
    public int StreamWindow { get; set; } = 16;

    /// <summary>The wait a refused client is told to observe before it retries.</summary>
    public TimeSpan RetryAfter { get; set; } = TimeSpan.FromMilliseconds(200);

    public void Validate()
    {
        if (MaxInFlightBytes < 1 << 20)
            throw new InvalidOperationException($"AlphaMesh:Ingest:MaxInFlightBytes is {MaxInFlightBytes}; it must be at least 1 MiB.");
        if (StreamWindow < 1)
            throw new InvalidOperationException($"AlphaMesh:Ingest:StreamWindow is {StreamWindow}; it must be at least 1.");
        if (RetryAfter <= TimeSpan.Zero)
            throw new InvalidOperationException("AlphaMesh:Ingest:RetryAfter must be positive.");
    }
}

/// <summary>An API key given in configuration (<c>AlphaMesh:ApiKeys:N</c>), by its hash only.</summary>
public sealed class ConfiguredApiKey
{
    public string Tenant { get; set; } = "";

    /// <summary>SHA-256 of the key's UTF-8 bytes, in hex.</summary>
    public string Sha256 { get; set; } = "";

    /// <summary>Comma-separated: ingest, read, admin (all when empty).</summary>
    public string? Scopes { get; set; }

    /// <summary>The key's first characters, shown in listings and logs.</summary>
    public string? Prefix { get; set; }
}
