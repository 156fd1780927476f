using System.Globalization;

namespace AlphaMesh.LoadTests;

/// <summary>Process and machine figures from Linux /proc; null where they cannot be read (another OS, a process gone).</summary>
internal static class ProcFs
{
    /// <summary>USER_HZ, the unit of the CPU times in /proc/PID/stat: 100 on every Linux architecture .NET runs on.</summary>
    private const double ClockTicksPerSecond = 100;

    /// <summary>utime + stime of a process, in seconds.</summary>
    public static double? CpuSeconds(int pid) => StatFields(pid.ToString(CultureInfo.InvariantCulture)) is { } f ? (Field(f, 14) + Field(f, 15)) / ClockTicksPerSecond : null;

    /// <summary>cutime + cstime of this process: the CPU of its children that have exited and been waited for (a
    /// server the harness stopped or killed).</summary>
    public static double? ExitedChildrenCpuSeconds() => StatFields("self") is { } f ? (Field(f, 16) + Field(f, 17)) / ClockTicksPerSecond : null;

    /// <summary>Resident set size now and its peak (VmRSS, VmHWM), in bytes.</summary>
    public static (long Rss, long Peak)? Memory(int pid)
    {
        try
        {
            long rss = -1, peak = -1;
            foreach (string line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    rss = Kilobytes(line);
                else if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    peak = Kilobytes(line);
            }
            return rss >= 0 && peak >= 0 ? (rss, peak) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The 1, 5 and 15 minute load averages as /proc/loadavg shows them, e.g. "1.02 0.87 0.55".</summary>
    public static string LoadAverage()
    {
        try
        {
            return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ', 4)[..3]);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "unknown";
        }
    }

    /// <summary>Bytes of every file under a directory (their lengths), skipping what vanishes or cannot be read
    /// while the server writes.</summary>
    public static long DirectoryBytes(string path)
    {
        long total = 0;
        var options = new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, AttributesToSkip = 0 };
        try
        {
            foreach (var file in new DirectoryInfo(path).EnumerateFiles("*", options))
            {
                try
                {
                    total += file.Length;
                }
                catch (FileNotFoundException)
                {
                    // removed since it was listed (log truncation, checkpoint clean-up)
                }
            }
        }
        catch (DirectoryNotFoundException)
        {
        }
        return total;
    }

    private static string[]? StatFields(string pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            // The command name (field 2) is in parentheses and may hold spaces: split after its closing one.
            return stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Field <paramref name="number"/> of /proc/PID/stat as proc(5) numbers them (field 3, the state, is the
    /// first after the command name).</summary>
    private static long Field(string[] afterCommand, int number) => long.Parse(afterCommand[number - 3], CultureInfo.InvariantCulture);

    private static long Kilobytes(string line)
        => long.Parse(line.AsSpan(line.IndexOf(':') + 1).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture) * 1024;
}
