using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>
/// The embedded default: a private PostgreSQL cluster in a directory of its own (<c>&lt;data&gt;/postgres</c>), made
/// with the machine's initdb on first start and started with pg_ctl on a free loopback port. It is reachable only
/// over 127.0.0.1 with a random password (kept in <c>&lt;data&gt;/postgres.password</c>, mode 0600); no unix socket.
/// initdb and postgres refuse to run as root, so as root the cluster directory belongs to the <c>postgres</c> user and
/// the commands run through <c>runuser -u postgres</c>. A cluster left running by a killed server is reused. Stopped
/// (fast shutdown) when the server stops.
/// </summary>
internal sealed class EmbeddedPostgres : IAsyncDisposable
{
    public const string User = "alphamesh";
    public const string Database = "alphamesh";

    private readonly string _directory;
    private readonly string _binDirectory;
    private readonly bool _asPostgresUser;
    private readonly ILogger _logger;

    private EmbeddedPostgres(string directory, string binDirectory, bool asPostgresUser, ILogger logger)
    {
        _directory = directory;
        _binDirectory = binDirectory;
        _asPostgresUser = asPostgresUser;
        _logger = logger;
    }

    public string ConnectionString { get; private set; } = "";

    public static async Task<EmbeddedPostgres> StartAsync(string directory, string? binDirectory, ILogger logger, CancellationToken cancellationToken)
    {
        directory = Path.GetFullPath(directory);
        var bin = FindBinDirectory(binDirectory);
        var server = new EmbeddedPostgres(directory, bin, Environment.IsPrivilegedProcess, logger);
        string password = await server.InitializeAsync(cancellationToken);
        int port = await server.StartClusterAsync(cancellationToken);
        var builder = new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1",
            Port = port,
            Username = User,
            Password = password,
            Database = "postgres",
        };
        await CreateDatabaseAsync(builder.ConnectionString, cancellationToken);
        builder.Database = Database;
        server.ConnectionString = builder.ConnectionString;
        return server;
    }

    private string PasswordFile => _directory + ".password";

    private static string FindBinDirectory(string? configured)
    {
        if (!string.IsNullOrEmpty(configured))
        {
            if (!File.Exists(Path.Combine(configured, "initdb")))
                throw new InvalidOperationException($"AlphaMesh:Billing:PostgresBinDirectory '{configured}' has no initdb.");
            return configured;
        }
        // Debian installs versions side by side; take the newest.
        const string debian = "/usr/lib/postgresql";
        if (Directory.Exists(debian))
        {
            var newest = Directory.GetDirectories(debian)
                .Select(d => (Dir: Path.Combine(d, "bin"), Version: int.TryParse(Path.GetFileName(d), out int v) ? v : 0))
                .Where(d => File.Exists(Path.Combine(d.Dir, "initdb")))
                .OrderByDescending(d => d.Version)
                .FirstOrDefault();
            if (newest.Dir is not null)
                return newest.Dir;
        }
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            if (File.Exists(Path.Combine(dir, "initdb")) && File.Exists(Path.Combine(dir, "pg_ctl")))
                return dir;
        }
        throw new InvalidOperationException(
            "No PostgreSQL found for the embedded billing database (no initdb under /usr/lib/postgresql/*/bin or on PATH). " +
            "Install it (Debian: apt-get install -y postgresql), set AlphaMesh:Billing:PostgresBinDirectory, " +
            "or point AlphaMesh:Billing:ConnectionString at a PostgreSQL server.");
    }

    /// <summary>Makes the cluster if there is none. initdb runs into a side directory that is renamed into place at
    /// the end, so a start that died half-way leaves nothing that looks like a cluster.</summary>
    private async Task<string> InitializeAsync(CancellationToken cancellationToken)
    {
        if (File.Exists(Path.Combine(_directory, "PG_VERSION")) && File.Exists(PasswordFile))
            return (await File.ReadAllTextAsync(PasswordFile, cancellationToken)).Trim();

        var staging = _directory + ".initializing";
        if (Directory.Exists(staging))
            Directory.Delete(staging, recursive: true);
        if (Directory.Exists(_directory))
            throw new InvalidOperationException($"{_directory} exists but is not a complete AlphaMesh PostgreSQL cluster (no PG_VERSION or no {PasswordFile}); move it away.");
        Directory.CreateDirectory(staging);
        string password = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
        var passwordInput = Path.Combine(staging, "initial-password");
        await File.WriteAllTextAsync(passwordInput, password + "\n", cancellationToken);
        var cluster = Path.Combine(staging, "cluster");
        if (_asPostgresUser)
            await RunAsync("chown", ["-R", "postgres:postgres", staging], asPostgres: false, cancellationToken);
        BillingLog.EmbeddedInitializing(_logger, _directory);
        await RunAsync(Path.Combine(_binDirectory, "initdb"),
            ["-D", cluster, "-U", User, "--pwfile", passwordInput, "--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C.UTF-8"],
            asPostgres: _asPostgresUser, cancellationToken);
        // Loopback TCP only; no unix socket, so the socket path's length limit never matters.
        await File.AppendAllTextAsync(Path.Combine(cluster, "postgresql.conf"),
            "\n# AlphaMesh embedded cluster\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nlogging_collector = off\n", cancellationToken);
        await WriteOwnerOnlyAsync(PasswordFile, password, cancellationToken);
        Directory.Move(cluster, _directory);
        Directory.Delete(staging, recursive: true);
        return password;
    }

    /// <summary>Starts the cluster on a free port, or finds the port of one already running (left by a killed server).</summary>
    private async Task<int> StartClusterAsync(CancellationToken cancellationToken)
    {
        var pidFile = Path.Combine(_directory, "postmaster.pid");
        var pgCtl = Path.Combine(_binDirectory, "pg_ctl");
        if (File.Exists(pidFile) && (await RunAsync(pgCtl, ["status", "-D", _directory], _asPostgresUser, cancellationToken, throwOnError: false)).ExitCode == 0)
        {
            // postmaster.pid: line 4 is the port.
            var lines = await File.ReadAllLinesAsync(pidFile, cancellationToken);
            if (lines.Length >= 4 && int.TryParse(lines[3], out int running))
            {
                BillingLog.EmbeddedReused(_logger, running);
                return running;
            }
        }
        // The port was free when picked, but something else can bind it before PostgreSQL does: then start again on
        // another. Ports come from below the kernel's ephemeral range, where outgoing connections never land.
        for (int attempt = 1; ; attempt++)
        {
            int port = FreePort();
            var start = await RunAsync(pgCtl, ["start", "-D", _directory, "-w", "-t", "60", "-l", Path.Combine(_directory, "server.log"), "-o", $"-p {port}"],
                _asPostgresUser, cancellationToken, throwOnError: attempt == 3);
            if (start.ExitCode == 0)
            {
                BillingLog.EmbeddedStarted(_logger, port, _directory);
                return port;
            }
        }
    }

    private static async Task CreateDatabaseAsync(string connectionString, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(cancellationToken);
        await using var exists = new NpgsqlCommand($"SELECT 1 FROM pg_database WHERE datname = '{Database}'", connection);
        if (await exists.ExecuteScalarAsync(cancellationToken) is null)
        {
            await using var create = new NpgsqlCommand($"CREATE DATABASE {Database}", connection);
            await create.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await RunAsync(Path.Combine(_binDirectory, "pg_ctl"), ["stop", "-D", _directory, "-m", "fast", "-w", "-t", "30"],
                _asPostgresUser, CancellationToken.None, throwOnError: false);
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            BillingLog.EmbeddedStopFailed(_logger, e);
        }
    }

    /// <summary>A loopback port that is free now, picked at random from [20000, start of the ephemeral range).</summary>
    private static int FreePort()
    {
        int high = 32_768;
        try
        {
            string range = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range");
            high = int.Parse(range.Split((char[])['\t', ' '], StringSplitOptions.RemoveEmptyEntries)[0], System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            // not Linux: the usual Linux default
        }
        const int Low = 20_000;
        high = Math.Max(high, Low + 1_000);
        for (int attempt = 0; attempt < 100; attempt++)
        {
            int port = Random.Shared.Next(Low, high);
            try
            {
                using var listener = new TcpListener(IPAddress.Loopback, port);
                listener.Start();
                return port;
            }
            catch (SocketException)
            {
                // taken: try another
            }
        }
        throw new InvalidOperationException($"No free loopback port for the embedded PostgreSQL between {Low} and {high}.");
    }

    private static async Task WriteOwnerOnlyAsync(string path, string content, CancellationToken cancellationToken)
    {
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        await using var stream = new FileStream(path, options);
        await using var writer = new StreamWriter(stream);
        await writer.WriteAsync(content.AsMemory(), cancellationToken);
    }

    private readonly record struct RunResult(int ExitCode, string Output);

    private static async Task<RunResult> RunAsync(string program, string[] arguments, bool asPostgres, CancellationToken cancellationToken, bool throwOnError = true)
    {
        var info = new ProcessStartInfo(asPostgres ? "runuser" : program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            // The postgres user may not be able to read the caller's directory; run from one it can.
            WorkingDirectory = "/",
        };
        if (asPostgres)
        {
            foreach (var a in (string[])["-u", "postgres", "--", program])
                info.ArgumentList.Add(a);
        }
        foreach (var a in arguments)
            info.ArgumentList.Add(a);
        // Messages in English whatever the machine's locale, so that the errors we pass on are readable.
        info.Environment["LC_ALL"] = "C.UTF-8";
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"Could not start {program}.");
        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        var output = (await stdout + await stderr).Trim();
        if (throwOnError && process.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"{Path.GetFileName(program)} {string.Join(' ', arguments)} failed with exit code {process.ExitCode}" +
                (asPostgres ? " (run as the postgres user: it needs to reach the data directory, so its parents must be searchable by others)" : "") +
                $": {output}");
        }
        return new RunResult(process.ExitCode, output);
    }
}
