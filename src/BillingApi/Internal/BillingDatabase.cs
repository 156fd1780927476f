using Microsoft.Extensions.Logging;
using Npgsql;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>The billing store's PostgreSQL: the configured server, or the embedded cluster when none is configured;
/// migrated before anything uses it. Disposed after everything that uses it (created first).</summary>
internal sealed class BillingDatabase : IAsyncDisposable
{
    private readonly EmbeddedPostgres? _embedded;

    private BillingDatabase(NpgsqlDataSource dataSource, EmbeddedPostgres? embedded)
    {
        DataSource = dataSource;
        _embedded = embedded;
    }

    public NpgsqlDataSource DataSource { get; }

    public bool IsEmbedded => _embedded is not null;

    public static async Task<BillingDatabase> OpenAsync(BillingOptions options, string embeddedDirectory, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        var logger = loggers.CreateLogger("AlphaMesh.BillingApi");
        EmbeddedPostgres? embedded = null;
        string connectionString = options.ConnectionString ?? "";
        if (connectionString.Length == 0)
        {
            embedded = await EmbeddedPostgres.StartAsync(embeddedDirectory, options.PostgresBinDirectory, logger, cancellationToken);
            connectionString = embedded.ConnectionString;
        }
        var dataSource = new NpgsqlDataSourceBuilder(connectionString).UseLoggerFactory(loggers).Build();
        try
        {
            await Migrator.MigrateAsync(dataSource, logger, cancellationToken);
        }
        catch (NpgsqlException e)
        {
            await dataSource.DisposeAsync();
            if (embedded is not null)
                await embedded.DisposeAsync();
            var safe = new NpgsqlConnectionStringBuilder(connectionString) { Password = null };
            throw new InvalidOperationException($"Could not reach or migrate the billing database ({safe.ConnectionString}): {e.Message}", e);
        }
        return new BillingDatabase(dataSource, embedded);
    }

    public async ValueTask DisposeAsync()
    {
        await DataSource.DisposeAsync();
        if (_embedded is not null)
            await _embedded.DisposeAsync();
    }
}
