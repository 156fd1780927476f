using AlphaMesh.Server;

await using (var app = AlphaMeshHost.Build(args))
{
    await app.RunAsync();
}
// Disposing the host disposed the event log, which made its final commit.
return 0;
