using AlphaMesh.LoadTests;

// `chart DIR...` draws the charts of earlier runs again from their report.json.
if (args is ["chart", .. var directories])
{
    foreach (string directory in directories)
        ReportWriter.RenderChartAgain(directory);
    return 0;
}

var options = LoadOptions.Parse(args, Console.Error);
if (options is null)
    return 64; // usage error

// run.sh passes the command as typed and the commit; run directly, the arguments are the command.
string command = Environment.GetEnvironmentVariable("ALPHAMESH_LOAD_COMMAND") is { Length: > 0 } typed
    ? typed
    : "dotnet AlphaMesh.LoadTests.dll " + string.Join(' ', args);
string? commit = Environment.GetEnvironmentVariable("ALPHAMESH_LOAD_COMMIT") is { Length: > 0 } c ? c : null;
var (exitCode, _) = await Harness.RunAsync(options, Console.Out, live: !Console.IsOutputRedirected, command, commit);
return exitCode;
