using System.Net;
using System.Net.Sockets;

namespace AlphaMesh.Server.Tests.Support;

internal static class Ports
{
    private static readonly Lock s_lock = new();
    private static int s_next = Random.Shared.Next(1 << 16);

    /// <summary>
    /// A loopback port that was free a moment ago, from below the kernel's ephemeral range. A port from the
    /// ephemeral range (what binding to port 0 gives) can be handed, between this check and the server's bind, to
    /// the local end of any outgoing connection, and the test suite makes thousands (SDK reconnects, PostgreSQL,
    /// HTTP clients): that failed 41 tests at once with "address already in use" in one run.
    /// </summary>
    public static int GetFree()
    {
        var (low, high) = NonEphemeralRange();
        lock (s_lock)
        {
            for (int attempt = 0; attempt < high - low; attempt++)
            {
                int port = low + (s_next++ % (high - low));
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
        throw new InvalidOperationException($"No free loopback port between {low} and {high}.");
    }

    /// <summary>[10000, start of the ephemeral range), or [10000, 32768) where the range cannot be read.</summary>
    private static (int Low, int High) NonEphemeralRange()
    {
        const int Low = 10_000;
        try
        {
            string range = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range");
            int start = int.Parse(range.Split((char[])['\t', ' '], StringSplitOptions.RemoveEmptyEntries)[0], System.Globalization.CultureInfo.InvariantCulture);
            if (start > Low + 1_000)
                return (Low, start);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            // not Linux, or not readable: the usual Linux default
        }
        return (Low, 32_768);
    }
}

/// <summary>A temporary directory removed on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "alphamesh-test-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A child process may still be releasing a file; the OS cleans temp eventually.
        }
    }
}
