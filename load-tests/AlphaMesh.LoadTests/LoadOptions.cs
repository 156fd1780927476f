using System.Globalization;

namespace AlphaMesh.LoadTests;

/// <summary>The load scenarios (see <see cref="LoadOptions.Usage"/>).</summary>
internal enum Scenario
{
    Steady,
    Ramp,
    Spike,
    Soak,
    Restart,
}

/// <summary>The load command's options: parsed from the command line, then completed with the scenario's defaults.</summary>
internal sealed class LoadOptions
{
    public const string Usage = """
        AlphaMesh load harness: drives the server over gRPC with the client SDK, checks that the server's usage equals
        the harness's ledger of every acknowledged event, and writes a report and a chart.

        usage: load-tests/run.sh [scenario] [options]        (run.sh builds Release and passes --server-dll)

        scenarios (default steady):
          steady    a fixed offered rate (open model), or as fast as acknowledged with --rate 0 (closed model)
          ramp      the rate climbs by --step-rate every --step-seconds until a step is not sustained (reply p99 over
                    --p99-bound, or less than 95 % of the offered events accepted); reports the highest sustained rate
          spike     --rate, then --spike-factor times that for --spike-seconds, then --rate again
          soak      a long steady run; samples the server's RSS and data-directory size and reports their growth
          restart   steady load; at 1/3 of the run the server gets SIGTERM and is started again, at 2/3 SIGKILL and
                    started again; the SDK buffers and resends

        load:
          --rate N          events/s offered in total (defaults: steady, soak 50000; ramp 50000 as the first step;
                            spike 20000 as the normal rate; restart 20000); 0 = closed model (steady, soak, restart)
          --duration S      measured seconds (defaults: steady 20, spike 30, restart 30, soak 300; ramp: at most 120)
          --warmup S        seconds of load before measuring (default 3; ramp 10, since a fresh server's reply p99 is
                            several times higher in its first seconds and would fail the first step)
          --streams N       gRPC streams (one UsageClient each), spread over the tenants (default 2; alias --clients)
          --batch N         events per batch (default 1000)
          --in-flight N     unacknowledged batches per stream (default 8)
          --buffer N        events a stream may hold unacknowledged; an open-model event that finds it full is
                            counted as not offered (default: 15 s of the stream's share of the rate, restart 30 s;
                            100000 to 1000000)
          --tenants N       tenants (default 2); with more than one, they and their keys are made through the tenants API
          --customers N     customers per tenant (default 1000)
        scenario:
          --step-rate N     ramp: rate added per step (default: the first rate)
          --step-seconds S  ramp: seconds per step (default 5)
          --max-rate N      ramp: highest rate tried (default 5000000)
          --p99-bound MS    ramp: reply p99 (ms) a sustained step stays within (default 50)
          --spike-factor F  spike: multiple of --rate during the spike (default 10)
          --spike-seconds S spike: length of the spike (default a third of --duration)
          --sample-seconds S seconds between samples of the data directory's size (default 5)
        server:
          --server-dll PATH start this server on a fresh temporary data directory and free loopback ports, and stop it
                            at the end (run.sh passes src/Server/bin/Release/net10.0/AlphaMesh.Server.dll)
          --server-arg ARG  one more argument for that server (repeatable), e.g.
                            --server-arg --AlphaMesh:Aggregator:CheckpointInterval=00:00:05
          --keep-data       keep the server's data directory (its path is printed)
          --endpoint URL    instead: a running server's gRPC endpoint (not with restart)
          --rest URL        its HTTP endpoint (default http://127.0.0.1:5080)
          --key KEY         its admin key (default $ALPHAMESH_BOOTSTRAP_KEY, else ./data/bootstrap-api-key)
          --server-pid PID  its process, for CPU and memory figures (Linux /proc)
        output:
          --results DIR     where the report directory <scenario>-<UTC time>/ is made (default benchmarks/results)

        dotnet AlphaMesh.LoadTests.dll chart DIR...   draws latency.svg of earlier runs again from their report.json
        """;

    public Scenario Scenario { get; private set; } = Scenario.Steady;
    public long Rate { get; private set; }
    public double DurationSeconds { get; private set; }
    public double WarmupSeconds { get; private set; }
    public int Streams { get; private set; } = 2;
    public int Batch { get; private set; } = 1000;
    public int InFlight { get; private set; } = 8;
    public int BufferPerStream { get; private set; }
    public int Tenants { get; private set; } = 2;
    public int Customers { get; private set; } = 1000;
    public long StepRate { get; private set; }
    public double StepSeconds { get; private set; } = 5;
    public long MaxRate { get; private set; } = 5_000_000;
    public double P99BoundMs { get; private set; } = 50;
    public double SpikeFactor { get; private set; } = 10;
    public double SpikeSeconds { get; private set; }
    public double SampleSeconds { get; private set; } = 5;
    public string? ServerDll { get; private set; }
    public List<string> ServerArgs { get; } = [];
    public bool KeepData { get; private set; }
    public Uri? Endpoint { get; private set; }
    public Uri Rest { get; private set; } = new("http://127.0.0.1:5080");
    public string? Key { get; private set; }
    public int? ServerPid { get; private set; }
    public string ResultsDirectory { get; private set; } = Path.Combine("benchmarks", "results");

    /// <summary>The arguments as given (for the report).</summary>
    public IReadOnlyList<string> Arguments { get; private set; } = [];

    /// <summary>True when the rate is 0: producers enqueue as fast as the stream's buffer allows.</summary>
    public bool ClosedModel => Rate == 0;

    /// <summary>Parses the arguments; null (with the reason written) when they are wrong or --help was given.</summary>
    public static LoadOptions? Parse(string[] args, TextWriter error)
    {
        var options = new LoadOptions { Arguments = args };
        long? rate = null, stepRate = null;
        double? duration = null, spikeSeconds = null, warmup = null;
        int? buffer = null;
        bool streamsGiven = false;
        int first = 0;
        if (args.Length > 0 && !args[0].StartsWith('-'))
        {
            if (!Enum.TryParse<Scenario>(args[0], ignoreCase: true, out var scenario) || !Enum.IsDefined(scenario) || char.IsDigit(args[0][0]))
                return Fail(error, $"unknown scenario '{args[0]}': one of steady, ramp, spike, soak, restart");
            options.Scenario = scenario;
            first = 1;
        }
        for (int i = first; i < args.Length; i++)
        {
            string name = args[i];
            if (name is "-h" or "--help")
            {
                error.WriteLine(Usage);
                return null;
            }
            if (name == "--keep-data")
            {
                options.KeepData = true;
                continue;
            }
            if (i + 1 >= args.Length)
                return Fail(error, $"{name} needs a value");
            string value = args[++i];
            try
            {
                switch (name)
                {
                    case "--rate": rate = Long(value, min: 0); break;
                    case "--duration": duration = Seconds(value, allowZero: false); break;
                    case "--warmup": warmup = Seconds(value, allowZero: true); break;
                    case "--streams" or "--clients": options.Streams = Int(value, min: 1); streamsGiven = true; break;
                    case "--batch": options.Batch = Int(value, min: 1); break;
                    case "--in-flight": options.InFlight = Int(value, min: 1); break;
                    case "--buffer": buffer = Int(value, min: 1); break;
                    case "--tenants": options.Tenants = Int(value, min: 1); break;
                    case "--customers": options.Customers = Int(value, min: 1); break;
                    case "--step-rate": stepRate = Long(value, min: 1); break;
                    case "--step-seconds": options.StepSeconds = Seconds(value, allowZero: false); break;
                    case "--max-rate": options.MaxRate = Long(value, min: 1); break;
                    case "--p99-bound": options.P99BoundMs = Seconds(value, allowZero: false); break;
                    case "--spike-factor":
                        options.SpikeFactor = double.Parse(value, NumberStyles.Float, CultureInfo.InvariantCulture);
                        if (!(options.SpikeFactor >= 1))
                            throw new ArgumentOutOfRangeException(nameof(value), value, "must be 1 or more");
                        break;
                    case "--spike-seconds": spikeSeconds = Seconds(value, allowZero: false); break;
                    case "--sample-seconds": options.SampleSeconds = Seconds(value, allowZero: false); break;
                    case "--server-dll": options.ServerDll = value; break;
                    case "--server-arg": options.ServerArgs.Add(value); break;
                    case "--endpoint": options.Endpoint = AbsoluteHttp(value); break;
                    case "--rest": options.Rest = AbsoluteHttp(value); break;
                    case "--key": options.Key = value; break;
                    case "--server-pid": options.ServerPid = Int(value, min: 1); break;
                    case "--results": options.ResultsDirectory = value; break;
                    default: return Fail(error, $"unknown option {name}");
                }
            }
            catch (Exception e) when (e is FormatException or OverflowException or ArgumentOutOfRangeException or UriFormatException)
            {
                return Fail(error, $"{name} {value}: {Reason(e)}");
            }
        }

        var s = options.Scenario;
        options.Rate = rate ?? (s is Scenario.Spike or Scenario.Restart ? 20_000 : 50_000);
        options.DurationSeconds = duration ?? s switch
        {
            Scenario.Steady => 20,
            Scenario.Ramp => 120,
            Scenario.Soak => 300,
            _ => 30,
        };
        // Measured: the ramp's first step (50,000/s) had a reply p99 of 207 ms after 3 s of warm-up and 36 ms after 10 s.
        options.WarmupSeconds = warmup ?? (s == Scenario.Ramp ? 10 : 3);
        options.StepRate = stepRate ?? Math.Max(1, options.Rate);
        options.SpikeSeconds = spikeSeconds ?? Math.Max(1, Math.Round(options.DurationSeconds / 3));
        if (!streamsGiven && options.Tenants > options.Streams)
            options.Streams = options.Tenants;

        if (options.Rate == 0 && s is Scenario.Ramp or Scenario.Spike)
            return Fail(error, $"--rate 0 (closed model) does not work with {Name(s)}: it changes the offered rate, so it needs --rate > 0");
        if (s == Scenario.Spike && options.SpikeSeconds >= options.DurationSeconds)
            return Fail(error, $"--spike-seconds {options.SpikeSeconds} must be shorter than --duration {options.DurationSeconds} (normal load before and after the spike)");
        if (s == Scenario.Ramp && options.StepSeconds > options.DurationSeconds)
            return Fail(error, $"--step-seconds {options.StepSeconds} is longer than --duration {options.DurationSeconds}: not even one step fits");
        if (options.Streams < options.Tenants)
            return Fail(error, $"--streams {options.Streams} is less than --tenants {options.Tenants}: each stream carries one tenant's key, so every tenant needs at least one");
        if (options.ServerDll is not null && options.Endpoint is not null)
            return Fail(error, "--server-dll and --endpoint exclude each other: the harness either starts its own server or uses a running one");
        if (options.ServerDll is null && options.Endpoint is null)
            return Fail(error, "no server: pass --server-dll PATH (load-tests/run.sh does) or --endpoint URL of a running server");
        if (options.ServerDll is not null && !File.Exists(options.ServerDll))
            return Fail(error, $"--server-dll {options.ServerDll}: no such file (build it: dotnet build src/Server -c Release)");
        if (s == Scenario.Restart && options.ServerDll is null)
            return Fail(error, "restart stops and starts the server, so the harness must own it: pass --server-dll (load-tests/run.sh does), not --endpoint");
        if (options.ServerDll is null && options.ServerArgs.Count > 0)
            return Fail(error, "--server-arg needs --server-dll (a running server's arguments cannot be changed)");

        // 15 s of the stream's share of the (spike) rate rides out a stall; restart gets 30 s: a start on a busy
        // machine, embedded PostgreSQL and recovery included, took up to 12 s before acknowledgements resumed.
        long perStream = options.Rate * Math.Max(1, (long)options.SpikeFactorOrOne()) / options.Streams;
        options.BufferPerStream = buffer ?? (int)Math.Clamp(perStream * (s == Scenario.Restart ? 30 : 15), 100_000, 1_000_000);
        if (options.BufferPerStream < options.Batch)
            return Fail(error, $"--buffer {options.BufferPerStream} is smaller than --batch {options.Batch}: a stream could never fill a batch");

        if (options.Endpoint is not null)
        {
            options.Key ??= Environment.GetEnvironmentVariable("ALPHAMESH_BOOTSTRAP_KEY") is { Length: > 0 } fromEnvironment
                ? fromEnvironment
                : File.Exists(Path.Combine("data", "bootstrap-api-key")) ? File.ReadAllText(Path.Combine("data", "bootstrap-api-key")).Trim() : null;
            if (options.Key is null)
                return Fail(error, "no API key for --endpoint: pass --key, set ALPHAMESH_BOOTSTRAP_KEY, or run where ./data/bootstrap-api-key is");
        }
        return options;
    }

    /// <summary>The scenario's name as typed on the command line.</summary>
    public static string Name(Scenario scenario) => scenario.ToString().ToLowerInvariant();

    private double SpikeFactorOrOne() => Scenario == Scenario.Spike ? SpikeFactor : 1;

    private static long Long(string value, long min)
    {
        long parsed = long.Parse(value, NumberStyles.Integer, CultureInfo.InvariantCulture);
        return parsed >= min ? parsed : throw new ArgumentOutOfRangeException(nameof(value), value, $"must be {min} or more");
    }

    private static int Int(string value, int min) => checked((int)Long(value, min));

    private static double Seconds(string value, bool allowZero)
    {
        double parsed = double.Parse(value, NumberStyles.Float, CultureInfo.InvariantCulture);
        if (!double.IsFinite(parsed) || parsed < 0 || (!allowZero && parsed == 0))
            throw new ArgumentOutOfRangeException(nameof(value), value, allowZero ? "must be 0 or more" : "must be more than 0");
        return parsed;
    }

    private static Uri AbsoluteHttp(string value)
    {
        var uri = new Uri(value, UriKind.Absolute);
        return uri.Scheme is "http" or "https" ? uri : throw new UriFormatException($"'{value}' is not an http:// or https:// address");
    }

    private static string Reason(Exception e) => e switch
    {
        ArgumentOutOfRangeException range => range.Message.Split(" (Parameter")[0],
        OverflowException => "out of range",
        FormatException => "not a number",
        _ => e.Message,
    };

    private static LoadOptions? Fail(TextWriter error, string reason)
    {
        error.WriteLine($"error: {reason}");
        error.WriteLine("(load-tests/run.sh --help lists the options)");
        return null;
    }
}
