using System.Globalization;

namespace AlphaMesh.PeerBaselines;

/// <summary>
/// CPU time and peak memory of a server, from Linux's /proc. A server is one or more root processes and all their
/// descendants (PostgreSQL forks a backend per connection, Redis forks for AOF rewrites): CPU is each root's own time
/// plus what it reaped from children (cutime, cstime) plus the own time of every live descendant, so a child that
/// exits between two readings is neither lost nor counted twice.
/// </summary>
internal sealed class ProcessMeter(IReadOnlyList<int> roots)
{
    private const double ClockTicksPerSecond = 100; // USER_HZ, 100 on every Linux the project runs on

    /// <summary>CPU seconds used so far by the roots and their descendants.</summary>
    public double CpuSeconds()
    {
        var all = ReadAll();
        double ticks = 0;
        foreach (int root in roots)
        {
            if (!all.TryGetValue(root, out var stat))
                throw new InvalidOperationException($"process {root} is not running (it should be the server being measured)");
            ticks += stat.UserTicks + stat.SystemTicks + stat.ChildUserTicks + stat.ChildSystemTicks;
            foreach (int child in Descendants(root, all))
                ticks += all[child].UserTicks + all[child].SystemTicks;
        }
        return ticks / ClockTicksPerSecond;
    }

    /// <summary>The largest VmHWM (peak resident set) among the first root and its live descendants, in bytes.</summary>
    public long PeakResidentBytes()
    {
        var all = ReadAll();
        long peak = VmHwmBytes(roots[0]);
        foreach (int child in Descendants(roots[0], all))
            peak = Math.Max(peak, VmHwmBytes(child));
        return peak;
    }

    /// <summary>Processes the memory figure covers (the first root and its live descendants).</summary>
    public int ProcessCount() => 1 + Descendants(roots[0], ReadAll()).Count;

    private static List<int> Descendants(int root, Dictionary<int, Stat> all)
    {
        var found = new List<int>();
        var frontier = new Queue<int>();
        frontier.Enqueue(root);
        while (frontier.Count > 0)
        {
            int parent = frontier.Dequeue();
            foreach (var (pid, stat) in all)
            {
                if (stat.Parent == parent)
                {
                    found.Add(pid);
                    frontier.Enqueue(pid);
                }
            }
        }
        return found;
    }

    private static long VmHwmBytes(int pid)
    {
        try
        {
            foreach (string line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    return long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture) * 1024;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The process ended between the listing and this read.
        }
        return 0;
    }

    private static Dictionary<int, Stat> ReadAll()
    {
        var all = new Dictionary<int, Stat>();
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
                continue;
            try
            {
                all[pid] = Stat.Parse(File.ReadAllText(Path.Combine(dir, "stat")));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Gone since the listing.
            }
        }
        return all;
    }

    /// <summary>The fields of /proc/PID/stat used here (proc(5): ppid is field 4, utime to cstime 14 to 17).</summary>
    internal readonly record struct Stat(int Parent, long UserTicks, long SystemTicks, long ChildUserTicks, long ChildSystemTicks)
    {
        public static Stat Parse(string text)
        {
            // The command name is in parentheses and may hold spaces: split only what follows it (field 3 on).
            var fields = text[(text.LastIndexOf(')') + 2)..].Split(' ');
            return new Stat(
                int.Parse(fields[1], CultureInfo.InvariantCulture),
                long.Parse(fields[11], CultureInfo.InvariantCulture),
                long.Parse(fields[12], CultureInfo.InvariantCulture),
                long.Parse(fields[13], CultureInfo.InvariantCulture),
                long.Parse(fields[14], CultureInfo.InvariantCulture));
        }
    }
}
