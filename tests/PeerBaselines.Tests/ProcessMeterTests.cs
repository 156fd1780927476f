using System.Diagnostics;

namespace AlphaMesh.PeerBaselines.Tests;

/// <summary>Reading a server's CPU and memory from /proc.</summary>
public sealed class ProcessMeterTests
{
    [Fact]
    public void Parse_CommandWithSpacesAndParentheses_ReadsFieldsAfterIt()
    {
        // proc(5): pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
        var stat = ProcessMeter.Stat.Parse("4242 (postgres: a (b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 311 57 1200 34 20 0 1 0 999 1000 10");

        Assert.Equal(new ProcessMeter.Stat(17, 311, 57, 1200, 34), stat);
    }

    [Fact]
    public void Meter_ChildProcess_CountedWhileAliveAndInPeak()
    {
        using var child = Process.Start(new ProcessStartInfo("sleep", "30") { UseShellExecute = false })!;
        try
        {
            var meter = new ProcessMeter([Environment.ProcessId]);

            Assert.True(meter.ProcessCount() >= 2, "the child should be a descendant");
            Assert.True(meter.CpuSeconds() > 0);
            // VmHWM is at least what is resident now.
            Assert.True(meter.PeakResidentBytes() >= Process.GetCurrentProcess().WorkingSet64 / 2);
        }
        finally
        {
            child.Kill();
            child.WaitForExit();
        }
    }

    [Fact]
    public void CpuSeconds_RootGone_ThrowsNamingIt()
    {
        using var child = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        child.WaitForExit();

        var error = Assert.Throws<InvalidOperationException>(() => new ProcessMeter([child.Id]).CpuSeconds());
        Assert.Contains(child.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), error.Message);
    }
}
