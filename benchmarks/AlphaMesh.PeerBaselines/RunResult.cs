using System.Text.Json.Serialization;

namespace AlphaMesh.PeerBaselines;

/// <summary>What one system's run measured; written as JSON by <c>run</c>, read by <c>report</c>.</summary>
internal sealed class RunResult
{
    public string System { get; set; } = "";
    public string Name { get; set; } = "";
    public string Version { get; set; } = "";
    public string Method { get; set; } = "";
    public string Durability { get; set; } = "";
    public int Events { get; set; }
    public int Distinct { get; set; }
    public int Duplicates { get; set; }
    public int Customers { get; set; }
    public int Seed { get; set; }
    public DateTimeOffset BaseTime { get; set; }
    public int Lanes { get; set; }
    public int Batch { get; set; }

    /// <summary>From the first event sent until the last one was acknowledged as stored.</summary>
    public double IngestSeconds { get; set; }

    /// <summary>The usage query of every customer, after ingest (for AlphaMesh it includes aggregation catching up).</summary>
    public double UsageSeconds { get; set; }

    /// <summary>The server's processes' CPU over ingest and the usage query.</summary>
    public double ServerCpuSeconds { get; set; }

    /// <summary>This tool's own CPU over the same time (encoding, sending, reading the answers).</summary>
    public double ClientCpuSeconds { get; set; }

    /// <summary>The largest VmHWM among the server's processes at the end.</summary>
    public long ServerPeakBytes { get; set; }

    public int ServerProcesses { get; set; }
    public bool Exact { get; set; }
    public string ExactDetail { get; set; } = "";

    /// <summary>When the answer was not exact: the same comparison on a second read a few seconds later.</summary>
    public string Recheck { get; set; } = "";
    public DateTimeOffset StartedAt { get; set; }
    public string LoadAverageBefore { get; set; } = "";
    public string LoadAverageAfter { get; set; } = "";

    /// <summary>Events sent (duplicates included) per second from the first send until usage was read.</summary>
    [JsonIgnore]
    public double EndToEndEventsPerSecond => Events / (IngestSeconds + UsageSeconds);

    [JsonIgnore]
    public double IngestEventsPerSecond => Events / IngestSeconds;

    [JsonIgnore]
    public double ServerCpuPerMillion => ServerCpuSeconds * 1e6 / Events;

    [JsonIgnore]
    public double ClientCpuPerMillion => ClientCpuSeconds * 1e6 / Events;
}
