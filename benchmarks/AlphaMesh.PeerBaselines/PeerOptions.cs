using System.Globalization;

namespace AlphaMesh.PeerBaselines;

/// <summary>The options of <c>run</c> (one system) and <c>report</c> (the table). <c>benchmarks/peers/run.sh</c> passes them.</summary>
internal sealed class PeerOptions
{
    public const string Usage = """
        AlphaMesh peer baselines (benchmarks/peers/run.sh drives this; it starts and stops the servers).

          run --system NAME --out FILE [options]   push the generated events through one system, write its figures as JSON
            --system       alphamesh | postgres-insert | postgres-copy | redis-event | redis-batch | clickhouse
            --events N     events sent, duplicates included (default 2000000)
            --customers N  customers the events spread over (default 10000)
            --duplicates R share of events that repeat an earlier event's id (default 0.01)
            --seed N       generator seed (default 1)
            --base-time T  start of the hour the events' times fall in (RFC 3339; default: an hour ago, whole minute)
            --lanes N      parallel senders: gRPC streams, connections (default per system: alphamesh 4, redis-* 8, others 2)
            --batch N      events per batch, statement or request (default per system: alphamesh 1000,
                           postgres-insert 5000, postgres-copy 50000, redis-batch 100, clickhouse 100000)
            --server-pid P a process of the server (repeatable); CPU counts each with its descendants, memory the first's tree
            --grpc URL --rest URL --key KEY   AlphaMesh's endpoints and API key
            --postgres CONNECTION-STRING      PostgreSQL (Npgsql syntax)
            --redis HOST:PORT                 Redis
            --clickhouse URL                  ClickHouse's HTTP interface

          report --results DIR --out FILE.md [--command TEXT]   the table of every JSON in DIR, printed and written as Markdown
        """;

    public static readonly string[] Systems = ["alphamesh", "postgres-insert", "postgres-copy", "redis-event", "redis-batch", "clickhouse"];

    public string Command { get; private set; } = "";
    public string System { get; private set; } = "";
    public string Out { get; private set; } = "";
    public int Events { get; private set; } = 2_000_000;
    public int Customers { get; private set; } = 10_000;
    public double DuplicateRate { get; private set; } = 0.01;
    public int Seed { get; private set; } = 1;
    public DateTimeOffset BaseTime { get; private set; } = DefaultBaseTime();
    public int? Lanes { get; private set; }
    public int? Batch { get; private set; }
    public List<int> ServerPids { get; } = [];
    public Uri? Grpc { get; private set; }
    public Uri? Rest { get; private set; }
    public string? Key { get; private set; }
    public string? Postgres { get; private set; }
    public string? Redis { get; private set; }
    public Uri? ClickHouse { get; private set; }
    public string Results { get; private set; } = "";
    public string CommandText { get; private set; } = "";

    /// <summary>4 streams was AlphaMesh's best in the load runs; Redis gets 8 connections because it reads at most 16 KiB
    /// per client per event-loop turn (and fsyncs once per turn); PostgreSQL and ClickHouse one sender per core.</summary>
    public int LanesOrDefault => Lanes ?? System switch
    {
        "alphamesh" => 4,
        "redis-event" or "redis-batch" => 8,
        _ => 2,
    };

    public int BatchOrDefault => Batch ?? System switch
    {
        "alphamesh" => 1000,
        "postgres-insert" => 5000,
        "postgres-copy" => 50_000,
        "redis-batch" => 100,
        "clickhouse" => 100_000,
        _ => 1,
    };

    /// <summary>Parses the arguments; null (with the reason written) when they are wrong or --help was given.</summary>
    public static PeerOptions? Parse(string[] args, TextWriter error)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help")
        {
            error.WriteLine(Usage);
            return null;
        }
        var options = new PeerOptions { Command = args[0] };
        if (options.Command is not ("run" or "report"))
            return Fail(error, $"unknown command '{options.Command}' (run or report)");
        for (int i = 1; i < args.Length; i++)
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
                    case "--system":
                        if (!Systems.Contains(value))
                            return Fail(error, $"--system {value}: not one of {string.Join(", ", Systems)}");
                        options.System = value;
                        break;
                    case "--out": options.Out = value; break;
                    case "--events": options.Events = Positive(value); break;
                    case "--customers": options.Customers = Positive(value); break;
                    case "--duplicates":
                        options.DuplicateRate = double.Parse(value, NumberStyles.Float, CultureInfo.InvariantCulture);
                        if (options.DuplicateRate is < 0 or >= 1 || double.IsNaN(options.DuplicateRate))
                            return Fail(error, $"--duplicates {value}: must be at least 0 and below 1");
                        break;
                    case "--seed": options.Seed = int.Parse(value, CultureInfo.InvariantCulture); break;
                    case "--base-time": options.BaseTime = DateTimeOffset.Parse(value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal); break;
                    case "--lanes": options.Lanes = Positive(value); break;
                    case "--batch": options.Batch = Positive(value); break;
                    case "--server-pid": options.ServerPids.Add(Positive(value)); break;
                    case "--grpc": options.Grpc = new Uri(value); break;
                    case "--rest": options.Rest = new Uri(value); break;
                    case "--key": options.Key = value; break;
                    case "--postgres": options.Postgres = value; break;
                    case "--redis": options.Redis = value; break;
                    case "--clickhouse": options.ClickHouse = new Uri(value); break;
                    case "--results": options.Results = value; break;
                    case "--command": options.CommandText = value; break;
                    default: return Fail(error, $"unknown option {name}");
                }
            }
            catch (Exception e) when (e is FormatException or OverflowException or UriFormatException)
            {
                return Fail(error, $"{name} {value}: {e.Message}");
            }
        }

        if (options.Out.Length == 0)
            return Fail(error, "--out is required");
        if (options.Command == "report")
            return options.Results.Length == 0 ? Fail(error, "report needs --results DIR") : options;

        string? missing = options.System switch
        {
            "" => "--system",
            "alphamesh" when options.Grpc is null || options.Rest is null || options.Key is null => "--grpc, --rest and --key",
            "postgres-insert" or "postgres-copy" when options.Postgres is null => "--postgres",
            "redis-event" or "redis-batch" when options.Redis is null => "--redis",
            "clickhouse" when options.ClickHouse is null => "--clickhouse",
            _ => null,
        };
        if (missing is not null)
            return Fail(error, $"run --system {(options.System.Length == 0 ? "?" : options.System)} needs {missing}");
        if (options.ServerPids.Count == 0)
            return Fail(error, "run needs --server-pid (the server's process, for its CPU and memory)");
        var now = DateTimeOffset.UtcNow;
        // AlphaMesh rejects events older than its backdating limit (35 days) or more than 5 minutes ahead.
        if (options.BaseTime < now.AddDays(-34) || options.BaseTime.AddSeconds(EventSet.TimeSpreadSeconds) > now.AddMinutes(4))
            return Fail(error, $"--base-time {options.BaseTime:O}: the events' hour must lie within the last 34 days and end before now");
        return options;
    }

    private static DateTimeOffset DefaultBaseTime()
    {
        var hourAgo = DateTimeOffset.UtcNow.AddSeconds(-EventSet.TimeSpreadSeconds - 60);
        return new DateTimeOffset(hourAgo.Ticks - hourAgo.Ticks % TimeSpan.TicksPerMinute, TimeSpan.Zero);
    }

    private static int Positive(string value)
    {
        int n = int.Parse(value, CultureInfo.InvariantCulture);
        if (n <= 0)
            throw new FormatException("must be more than 0");
        return n;
    }

    private static PeerOptions? Fail(TextWriter error, string reason)
    {
        error.WriteLine($"error: {reason}");
        error.WriteLine("(--help lists the options)");
        return null;
    }
}
