using AlphaMesh.PeerBaselines;

var options = PeerOptions.Parse(args, Console.Error);
if (options is null)
    return 64; // usage error
using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cancel.Cancel();
};
return options.Command == "run"
    ? await PeerRun.RunAsync(options, Console.Out, cancel.Token)
    : await PeerReport.RunAsync(options, Console.Out, cancel.Token);
