using AlphaMesh.Tests.Shared;

namespace AlphaMesh.Server.Tests.Support;

/// <summary>
/// A class fixture with a database of its own on the test PostgreSQL and one real server (in process) on it. Subclasses
/// add their settings in <see cref="Configure"/> and their own set-up in <see cref="StartedAsync"/>.
/// </summary>
public abstract class DatabaseServerFixture : IAsyncLifetime
{
    public TestDatabase Database { get; } = new();

    internal InProcessServer Server { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await Database.InitializeAsync();
        Server = await StartServerAsync();
        await StartedAsync();
    }

    /// <summary>Another server on the same database, with the same settings (the caller disposes it).</summary>
    internal Task<InProcessServer> StartServerAsync() => InProcessServer.StartAsync(settings =>
    {
        settings.BillingConnectionString = Database.ConnectionString;
        Configure(settings);
    });

    public virtual async Task DisposeAsync()
    {
        await Server.DisposeAsync();
        await Database.DisposeAsync();
    }

    /// <summary>Settings beyond the database's connection string.</summary>
    private protected virtual void Configure(ServerSettings settings)
    {
    }

    /// <summary>Set-up once the server runs.</summary>
    private protected virtual Task StartedAsync() => Task.CompletedTask;
}
