using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace AlphaMesh.LoadTests;

/// <summary>
/// The server the harness talks to. Either one it owns (<see cref="StartOwnedAsync"/>: <c>dotnet AlphaMesh.Server.dll</c>
/// on a fresh temporary data directory and free loopback ports, which it can stop, kill and start again, and whose
/// CPU and memory it reads from /proc), or a running one given by its endpoints (<see cref="External"/>).
/// </summary>
internal sealed partial class ServerHost : IAsyncDisposable
{
    public const int Sigkill = 9;
    public const int Sigterm = 15;
    private const int Sigint = 2;

    private readonly string? _dll;
    private readonly IReadOnlyList<string> _extraArgs;
    private readonly bool _keepData;
    private readonly Lock _logGate = new();
    private readonly StreamWriter? _log;
    private readonly double _childrenCpuAtStart;
    private Process? _process;
    private int? _externalPid;
    private long _peakRssBytes;

    private ServerHost(Uri grpc, Uri rest, string adminKey, string? dll, string? dataDirectory, IReadOnlyList<string> extraArgs, bool keepData)
    {
        Grpc = grpc;
        Rest = rest;
        AdminKey = adminKey;
        _dll = dll;
        DataDirectory = dataDirectory;
        _extraArgs = extraArgs;
        _keepData = keepData;
        if (dataDirectory is not null)
            _log = new StreamWriter(Path.Combine(dataDirectory, "server.log")) { AutoFlush = true };
        _childrenCpuAtStart = ProcFs.ExitedChildrenCpuSeconds() ?? 0;
    }

    public Uri Grpc { get; }
    public Uri Rest { get; }

    /// <summary>A key of the operator tenant with every scope (the owned server's bootstrap key).</summary>
    public string AdminKey { get; }

    /// <summary>The owned server's data directory; null for an external server.</summary>
    public string? DataDirectory { get; }

    public bool Owned => _dll is not null;

    /// <summary>The server's process id now, when known.</summary>
    public int? Pid => _process is { HasExited: false } p ? p.Id : _externalPid;

    /// <summary>The owned server's console output (JSON lines), kept for the report.</summary>
    public string? LogPath => DataDirectory is null ? null : Path.Combine(DataDirectory, "server.log");

    /// <summary>True while the owned server's current process runs (always true for an external one).</summary>
    public bool Running => !Owned || _process is { HasExited: false };

    public static ServerHost External(Uri grpc, Uri rest, string key, int? pid) => new(grpc, rest, key, null, null, [], false) { _externalPid = pid };

    /// <summary>Creates the data directory and starts the server; returns once its health check answers.</summary>
    public static async Task<ServerHost> StartOwnedAsync(string dll, IReadOnlyList<string> extraArgs, bool keepData)
    {
        var data = Directory.CreateTempSubdirectory("alphamesh-load-").FullName;
        // The embedded PostgreSQL runs as the postgres user when this runs as root, and must reach the data directory.
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(data, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
                | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        string key = "load-" + Convert.ToBase64String(RandomNumberGenerator.GetBytes(18)).Replace('+', '-').Replace('/', '_');
        var host = new ServerHost(new Uri($"http://127.0.0.1:{LoopbackPorts.GetFree()}"), new Uri($"http://127.0.0.1:{LoopbackPorts.GetFree()}"),
            key, Path.GetFullPath(dll), data, extraArgs, keepData);
        try
        {
            await host.StartAsync().ConfigureAwait(false);
        }
        catch
        {
            await host.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return host;
    }

    /// <summary>Starts the owned server (again) on the same data directory and waits until it is healthy.</summary>
    public async Task StartAsync()
    {
        if (_dll is null)
            throw new InvalidOperationException("An external server cannot be started by the harness.");
        if (_process is { HasExited: false })
            throw new InvalidOperationException("The server is already running.");
        _process?.Dispose();
        var info = new ProcessStartInfo("dotnet")
        {
            // Its output directory, so that its appsettings.json (log format and levels) is the configuration.
            WorkingDirectory = Path.GetDirectoryName(_dll)!,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(_dll);
        info.ArgumentList.Add("--data-dir");
        info.ArgumentList.Add(DataDirectory!);
        info.ArgumentList.Add($"--Kestrel:Endpoints:Rest:Url={Rest}");
        info.ArgumentList.Add($"--Kestrel:Endpoints:Grpc:Url={Grpc}");
        foreach (string arg in _extraArgs)
            info.ArgumentList.Add(arg);
        info.Environment["ALPHAMESH_BOOTSTRAP_KEY"] = AdminKey;
        var process = Process.Start(info) ?? throw new InvalidOperationException("dotnet did not start");
        process.OutputDataReceived += (_, e) => AppendLog(e.Data);
        process.ErrorDataReceived += (_, e) => AppendLog(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
        await WaitUntilHealthyAsync(process).ConfigureAwait(false);
    }

    /// <summary>Sends a signal to the owned server's process.</summary>
    public void Signal(int signal)
    {
        if (_process is not { HasExited: false } process)
            throw new InvalidOperationException("The server is not running.");
        if (Kill(process.Id, signal) != 0)
            throw new InvalidOperationException($"kill({process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>Waits for the owned server's process to exit; its exit code, or null when it did not exit in time.</summary>
    public async Task<int?> WaitForExitAsync(TimeSpan timeout)
    {
        if (_process is null)
            return null;
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
            return _process.ExitCode;
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>CPU seconds of the server since the harness started it: every stopped or killed process (reaped
    /// children, from this process's cutime and cstime) plus the running one. Null when not readable.</summary>
    public double? CpuSeconds()
    {
        if (!Owned)
            return _externalPid is { } pid ? ProcFs.CpuSeconds(pid) : null;
        double? exited = ProcFs.ExitedChildrenCpuSeconds() - _childrenCpuAtStart;
        double running = _process is { HasExited: false } p ? ProcFs.CpuSeconds(p.Id) ?? 0 : 0;
        return exited + running;
    }

    /// <summary>The server's resident memory now (bytes), and records its peak (VmHWM) for <see cref="PeakRssBytes"/>.</summary>
    public long? SampleRss()
    {
        if (Pid is not { } pid || ProcFs.Memory(pid) is not { } memory)
            return null;
        _peakRssBytes = Math.Max(_peakRssBytes, memory.Peak);
        return memory.Rss;
    }

    /// <summary>The highest VmHWM seen by <see cref="SampleRss"/>, over every process of the run; null if never read.</summary>
    public long? PeakRssBytes => _peakRssBytes > 0 ? _peakRssBytes : null;

    /// <summary>Lines the owned server logged at Error or Critical level.</summary>
    public IReadOnlyList<string> LoggedErrors()
    {
        if (LogPath is null || !File.Exists(LogPath))
            return [];
        lock (_logGate)
        {
            return [.. File.ReadLines(LogPath).Where(l => l.Contains("\"LogLevel\":\"Error\"", StringComparison.Ordinal) || l.Contains("\"LogLevel\":\"Critical\"", StringComparison.Ordinal))];
        }
    }

    /// <summary>Stops the owned server with SIGTERM; its exit code, or null if it had to be killed after a minute.</summary>
    public async Task<int?> StopAsync()
    {
        if (_process is not { HasExited: false })
            return _process?.ExitCode;
        Signal(Sigterm);
        int? code = await WaitForExitAsync(TimeSpan.FromSeconds(60)).ConfigureAwait(false);
        if (code is null)
            _process.Kill();
        return code;
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill();
            await process.WaitForExitAsync().ConfigureAwait(false);
        }
        _process?.Dispose();
        if (DataDirectory is null)
            return;
        await StopOrphanedPostgresAsync(DataDirectory).ConfigureAwait(false);
        lock (_logGate)
            _log?.Dispose();
        if (!_keepData)
        {
            try
            {
                Directory.Delete(DataDirectory, recursive: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"could not remove {DataDirectory}: {e.Message}");
            }
        }
    }

    private async Task WaitUntilHealthyAsync(Process process)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(120))
        {
            if (process.HasExited)
                throw new InvalidOperationException($"The server exited with {process.ExitCode} while starting; its output is in {LogPath}:\n{Tail()}");
            try
            {
                using var response = await http.GetAsync(new Uri(Rest, "/healthz")).ConfigureAwait(false);
                if (response.IsSuccessStatusCode)
                    return;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                // not listening yet
            }
            await Task.Delay(100).ConfigureAwait(false);
        }
        throw new TimeoutException($"The server did not become healthy within 120 s; its output is in {LogPath}:\n{Tail()}");
    }

    private void AppendLog(string? line)
    {
        if (line is null)
            return;
        lock (_logGate)
            _log?.WriteLine(line);
    }

    private string Tail()
    {
        lock (_logGate)
            return LogPath is null ? "" : string.Join('\n', File.ReadLines(LogPath).TakeLast(20));
    }

    /// <summary>A server killed last leaves its embedded PostgreSQL running (the next start would reuse it): stop it
    /// (SIGINT is PostgreSQL's fast shutdown) before its directory is removed.</summary>
    private static async Task StopOrphanedPostgresAsync(string dataDirectory)
    {
        string pidFile = Path.Combine(dataDirectory, "postgres", "postmaster.pid");
        if (!File.Exists(pidFile) || !int.TryParse(File.ReadLines(pidFile).FirstOrDefault(), out int pid) || Kill(pid, Sigint) != 0)
            return;
        for (int i = 0; i < 300 && File.Exists(pidFile); i++)
            await Task.Delay(100).ConfigureAwait(false);
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}

/// <summary>Free loopback ports for the owned server, as tests/Server.Tests/Support/Ports.cs picks them.</summary>
internal static class LoopbackPorts
{
    private static readonly Lock s_lock = new();
    private static int s_next = Random.Shared.Next(1 << 16);

    /// <summary>A loopback port that was free a moment ago, from below the kernel's ephemeral range: a port from that
    /// range could become the local end of an outgoing connection (the SDK's, PostgreSQL's) before the server binds it.</summary>
    public static int GetFree()
    {
        const int Low = 10_000;
        int high = 32_768;
        try
        {
            string range = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range");
            int start = int.Parse(range.Split((char[])['\t', ' '], StringSplitOptions.RemoveEmptyEntries)[0], System.Globalization.CultureInfo.InvariantCulture);
            if (start > Low + 1_000)
                high = start;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            // not Linux, or not readable: the usual Linux default
        }
        lock (s_lock)
        {
            for (int attempt = 0; attempt < high - Low; attempt++)
            {
                int port = Low + (s_next++ % (high - Low));
                try
                {
                    using var listener = new TcpListener(IPAddress.Loopback, port);
                    listener.Start();
                    return port;
                }
                catch (SocketException)
                {
                    // taken: try the next one
                }
            }
        }
        throw new InvalidOperationException($"No free loopback port between {Low} and {high}.");
    }
}
