using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace AlphaMesh.Server.Tests.Support;

/// <summary>The real server (Kestrel on loopback, FasterLog on disk) inside the test process.</summary>
internal sealed class InProcessServer : IAsyncDisposable
{
    private readonly TempDirectory? _ownedDirectory;

    private InProcessServer(WebApplication app, ServerSettings settings, TempDirectory? ownedDirectory)
    {
        App = app;
        Settings = settings;
        _ownedDirectory = ownedDirectory;
    }

    public WebApplication App { get; }
    public ServerSettings Settings { get; }

    public static async Task<InProcessServer> StartAsync(Action<ServerSettings>? configure = null,
        Action<IServiceCollection>? services = null, string? dataDirectory = null)
    {
        var owned = dataDirectory is null ? new TempDirectory() : null;
        var settings = new ServerSettings(dataDirectory ?? owned!.Path);
        configure?.Invoke(settings);
        var app = AlphaMeshHost.Build(settings.ToArgs(), services);
        await app.StartAsync();
        return new InProcessServer(app, settings, owned);
    }

    private bool _stopped;

    /// <summary>Stops the server and disposes it (which makes the log's final commit); safe to call twice.</summary>
    public async Task StopAsync()
    {
        if (_stopped)
            return;
        _stopped = true;
        await App.StopAsync();
        await App.DisposeAsync();
    }

    /// <summary>Stops the server and reads back every event in its log.</summary>
    public async Task<List<LoggedEvent>> StopAndReadLogAsync()
    {
        await StopAsync();
        return await Requests.ReadLogAsync(Settings.DataDirectory);
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _ownedDirectory?.Dispose();
    }
}
