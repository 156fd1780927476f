using AlphaMesh.LoadTests;

var options = LoadOptions.Parse(args, Console.Error);
if (options is null)
    return 64; // usage error
return await LoadRun.RunAsync(options, Console.Out);
