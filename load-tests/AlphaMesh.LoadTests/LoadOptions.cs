using System.Globalization;

namespace AlphaMesh.LoadTests;

/// <summary>The load command's options (see <see cref="Usage"/>).</summary>
internal sealed class LoadOptions
{
    public const string Usage = """
        AlphaMesh load command: drives a running server over gRPC with the client SDK.

          --endpoint URL     gRPC endpoint (default http://127.0.0.1:5081)
          --key KEY          API key with the ingest scope (default: $ALPHAMESH_BOOTSTRAP_KEY, else ./data/bootstrap-api-key)
          --rate N           events/s offered in total; 0 = as fast as the server acknowledges (closed model,
                             default). N > 0 = open model: events are enqueued on a fixed schedule that does
                             not wait for replies
          --duration S       measured seconds (default 10)
          --warmup S         seconds run before measuring (default 3)
          --clients N        UsageClient instances, one gRPC stream each (default 1)
          --batch N          events per batch (UsageClientOptions.MaxBatchEvents, default 1000)
          --in-flight N      unacknowledged batches per stream (UsageClientOptions.MaxBatchesInFlight, default 8)
          --customers N      distinct customers the events are spread over (default 1000)
          --server-pid PID   also report that process's CPU use over the measured window (Linux /proc)
          --rest URL         the server's HTTP endpoint, for meters and usage (default http://127.0.0.1:5080)
          --meters N         meters created on the event type before the run (0 to 3, default 3: a COUNT, a SUM
                             of tokens by model, a SUM of tokens); with N > 0 the run ends by comparing the COUNT
                             meter's usage with the events acknowledged (prints lost or doubled, fails on either)
        """;

    public Uri Endpoint { get; private set; } = new("http://127.0.0.1:5081");
    public string? Key { get; private set; }
    public long Rate { get; private set; }
    public double DurationSeconds { get; private set; } = 10;
    public double WarmupSeconds { get; private set; } = 3;
    public int Clients { get; private set; } = 1;
    public int Batch { get; private set; } = 1000;
    public int InFlight { get; private set; } = 8;
    public int Customers { get; private set; } = 1000;
    public int? ServerPid { get; private set; }
    public Uri Rest { get; private set; } = new("http://127.0.0.1:5080");
    public int Meters { get; private set; } = 3;

    /// <summary>Parses the arguments; null (with the reason written) when they are wrong or --help was given.</summary>
    public static LoadOptions? Parse(string[] args, TextWriter error)
    {
        var options = new LoadOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string name = args[i];
            if (name is "-h" or "--help")
            {
                error.WriteLine(Usage);
                return null;
            }
            if (i + 1 >= args.Length)
                return Fail(error, $"{name} needs a value");
            string value = args[++i];
            try
            {
                switch (name)
                {
                    case "--endpoint": options.Endpoint = new Uri(value); break;
                    case "--key": options.Key = value; break;
                    case "--rate": options.Rate = Positive(long.Parse(value, CultureInfo.InvariantCulture), allowZero: true); break;
                    case "--duration": options.DurationSeconds = Positive(double.Parse(value, CultureInfo.InvariantCulture), allowZero: false); break;
                    case "--warmup": options.WarmupSeconds = Positive(double.Parse(value, CultureInfo.InvariantCulture), allowZero: true); break;
                    case "--clients": options.Clients = (int)Positive(int.Parse(value, CultureInfo.InvariantCulture), allowZero: false); break;
                    case "--batch": options.Batch = (int)Positive(int.Parse(value, CultureInfo.InvariantCulture), allowZero: false); break;
                    case "--in-flight": options.InFlight = (int)Positive(int.Parse(value, CultureInfo.InvariantCulture), allowZero: false); break;
                    case "--customers": options.Customers = (int)Positive(int.Parse(value, CultureInfo.InvariantCulture), allowZero: false); break;
                    case "--server-pid": options.ServerPid = int.Parse(value, CultureInfo.InvariantCulture); break;
                    case "--rest": options.Rest = new Uri(value); break;
                    case "--meters":
                        options.Meters = int.Parse(value, CultureInfo.InvariantCulture);
                        if (options.Meters is < 0 or > 3)
                            throw new ArgumentOutOfRangeException(nameof(value), value, "must be 0 to 3");
                        break;
                    default: return Fail(error, $"unknown option {name}");
                }
            }
            catch (Exception e) when (e is FormatException or OverflowException or ArgumentOutOfRangeException or UriFormatException)
            {
                return Fail(error, $"{name} {value}: {e.Message}");
            }
        }

        options.Key ??= Environment.GetEnvironmentVariable("ALPHAMESH_BOOTSTRAP_KEY") is { Length: > 0 } fromEnvironment
            ? fromEnvironment
            : File.Exists(Path.Combine("data", "bootstrap-api-key")) ? File.ReadAllText(Path.Combine("data", "bootstrap-api-key")).Trim() : null;
        if (options.Key is null)
            return Fail(error, "no API key: pass --key, set ALPHAMESH_BOOTSTRAP_KEY, or run where ./data/bootstrap-api-key is");
        return options;
    }

    private static T Positive<T>(T value, bool allowZero) where T : System.Numerics.INumber<T>
    {
        if (value < T.Zero || (!allowZero && value == T.Zero))
            throw new ArgumentOutOfRangeException(nameof(value), value, allowZero ? "must be 0 or more" : "must be more than 0");
        return value;
    }

    private static LoadOptions? Fail(TextWriter error, string reason)
    {
        error.WriteLine($"error: {reason}");
        error.WriteLine(Usage);
        return null;
    }
}
