namespace AlphaMesh.LoadTests.Tests;

public sealed class LoadOptionsTests
{
    /// <summary>Any existing file stands for the server's dll where only the options are parsed.</summary>
    private static readonly string Dll = typeof(LoadOptions).Assembly.Location;

    [Fact]
    public void Parse_NoScenario_SteadyWithItsDefaults()
    {
        var options = Parse("--server-dll", Dll);

        Assert.Equal(Scenario.Steady, options.Scenario);
        Assert.Equal(50_000, options.Rate);
        Assert.Equal(20, options.DurationSeconds);
        Assert.Equal(2, options.Tenants);
        Assert.Equal(2, options.Streams);
        Assert.Equal(3, options.WarmupSeconds);
        Assert.False(options.ClosedModel);
        // 15 s of a stream's share, at least 100,000.
        Assert.Equal(375_000, options.BufferPerStream);
    }

    [Fact]
    public void Parse_Ramp_LongerWarmupUnlessGiven()
    {
        Assert.Equal(10, Parse("ramp", "--server-dll", Dll).WarmupSeconds);
        Assert.Equal(0, Parse("ramp", "--warmup", "0", "--server-dll", Dll).WarmupSeconds);
        Assert.Equal(50_000, Parse("ramp", "--server-dll", Dll).StepRate);
    }

    [Fact]
    public void Parse_Spike_BufferCoversTheSpikeRate()
    {
        var options = Parse("spike", "--server-dll", Dll);

        Assert.Equal((20_000L, 30.0, 10.0, 10.0), (options.Rate, options.DurationSeconds, options.SpikeFactor, options.SpikeSeconds));
        // 15 s of 100,000/s per stream would be 1,500,000: capped at 1,000,000.
        Assert.Equal(1_000_000, options.BufferPerStream);
    }

    [Fact]
    public void Parse_MoreTenantsThanDefaultStreams_OneStreamPerTenant()
    {
        var options = Parse("restart", "--tenants", "3", "--server-dll", Dll);

        Assert.Equal(3, options.Streams);
        Assert.Equal(Scenario.Restart, options.Scenario);
        // restart: 30 s of the stream's share (20,000 / 3 events/s).
        Assert.Equal(6_666 * 30, options.BufferPerStream);
    }

    [Fact]
    public void Parse_ClosedModelAndClientsAlias_Accepted()
    {
        var options = Parse("steady", "--rate", "0", "--clients", "4", "--tenants", "1", "--server-dll", Dll);

        Assert.True(options.ClosedModel);
        Assert.Equal(4, options.Streams);
        Assert.Equal(100_000, options.BufferPerStream);
    }

    [Theory]
    [InlineData("unknown scenario 'bounce'", "bounce")]
    [InlineData("unknown option --rte", "--rte", "5")]
    [InlineData("--rate abc: not a number", "--rate", "abc")]
    [InlineData("--rate -5: must be 0 or more", "--rate", "-5")]
    [InlineData("--duration 0: must be more than 0", "--duration", "0")]
    [InlineData("--spike-factor 0.5: must be 1 or more", "spike", "--spike-factor", "0.5")]
    [InlineData("--rate 0 (closed model) does not work with ramp", "ramp", "--rate", "0")]
    [InlineData("--rate 0 (closed model) does not work with spike", "spike", "--rate", "0")]
    [InlineData("--streams 1 is less than --tenants 2", "--streams", "1", "--tenants", "2")]
    [InlineData("--spike-seconds 30 must be shorter than --duration 30", "spike", "--spike-seconds", "30")]
    [InlineData("--endpoint ftp://x/: ", "--endpoint", "ftp://x/")]
    public void Parse_BadArguments_ErrorNamesWhatIsWrong(string expected, params string[] args)
    {
        var error = new StringWriter();

        Assert.Null(LoadOptions.Parse([.. args, "--server-dll", Dll], error));

        Assert.Contains("error: " + expected, error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_OptionWithoutValue_Refused()
    {
        var error = new StringWriter();

        Assert.Null(LoadOptions.Parse(["--server-dll", Dll, "--streams"], error));

        Assert.Contains("error: --streams needs a value", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_RestartAgainstARunningServer_Refused()
    {
        var error = new StringWriter();

        Assert.Null(LoadOptions.Parse(["restart", "--endpoint", "http://127.0.0.1:5081", "--key", "k"], error));

        Assert.Contains("restart stops and starts the server, so the harness must own it", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_NoServer_SaysHowToGiveOne()
    {
        var error = new StringWriter();

        Assert.Null(LoadOptions.Parse(["steady"], error));
        Assert.Contains("no server: pass --server-dll PATH", error.ToString(), StringComparison.Ordinal);

        error = new StringWriter();
        Assert.Null(LoadOptions.Parse(["--server-dll", "/nonexistent/AlphaMesh.Server.dll"], error));
        Assert.Contains("--server-dll /nonexistent/AlphaMesh.Server.dll: no such file", error.ToString(), StringComparison.Ordinal);
    }

    private static LoadOptions Parse(params string[] args)
    {
        var error = new StringWriter();
        return LoadOptions.Parse(args, error) ?? throw new InvalidOperationException(error.ToString());
    }
}
