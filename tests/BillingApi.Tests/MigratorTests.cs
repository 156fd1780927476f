using AlphaMesh.BillingApi.Internal;
using AlphaMesh.Tests.Shared;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace AlphaMesh.BillingApi.Tests;

/// <summary>A fresh database per test (not per class): each test starts from an empty schema.</summary>
public sealed class MigratorTests : IAsyncLifetime
{
    private readonly TestDatabase _database = new();

    public Task InitializeAsync() => _database.InitializeAsync();

    public Task DisposeAsync() => _database.DisposeAsync();

    /// <summary>Numbers may skip (ranges are reserved for work done in parallel: webhooks took 0020 while 0003-0019 went
    /// to the catalog and invoices), and a database gets every one it lacks whatever its number; two files with one
    /// number never load.</summary>
    [Fact]
    public void Embedded_Migrations_StartAtOneAndAreUniqueAndAscending()
    {
        var versions = Migrator.Embedded.Select(m => m.Version).ToList();
        Assert.Equal(1, versions[0]);
        Assert.Equal(versions.Distinct().Order(), versions);
    }

    [Fact]
    public async Task MigrateAsync_FreshDatabaseThenAgain_AppliesEveryMigrationOnceInOrder()
    {
        await using var dataSource = NpgsqlDataSource.Create(_database.ConnectionString);

        var first = await Migrator.MigrateAsync(dataSource, NullLogger.Instance, default);
        var second = await Migrator.MigrateAsync(dataSource, NullLogger.Instance, default);

        Assert.Equal(Migrator.Embedded.Select(m => m.Version), first);
        Assert.Empty(second);
        Assert.Equal(Migrator.Embedded.Select(m => m.Version), await AppliedVersionsAsync(dataSource));
    }

    [Fact]
    public async Task MigrateAsync_FourServersAtOnce_EachMigrationAppliedExactlyOnce()
    {
        var dataSources = Enumerable.Range(0, 4).Select(_ => NpgsqlDataSource.Create(_database.ConnectionString)).ToList();
        try
        {
            var results = await Task.WhenAll(dataSources.Select(d => Task.Run(() => Migrator.MigrateAsync(d, NullLogger.Instance, default))));

            // The advisory lock lets one migrate; the others find nothing left (and no one fails on "already exists").
            Assert.Equal(Migrator.Embedded.Select(m => m.Version), results.SelectMany(r => r).Order());
            Assert.Equal(Migrator.Embedded.Select(m => m.Version), await AppliedVersionsAsync(dataSources[0]));
        }
        finally
        {
            foreach (var d in dataSources)
                await d.DisposeAsync();
        }
    }

    [Fact]
    public async Task MigrateAsync_DatabaseAheadOfServer_RunsWithoutError()
    {
        await using var dataSource = NpgsqlDataSource.Create(_database.ConnectionString);
        await Migrator.MigrateAsync(dataSource, NullLogger.Instance, default);
        await using (var newer = dataSource.CreateCommand("INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_from_a_newer_server')"))
            await newer.ExecuteNonQueryAsync();

        // An older server in a rolling deploy starts on a database a newer one has expanded.
        var applied = await Migrator.MigrateAsync(dataSource, NullLogger.Instance, default);

        Assert.Empty(applied);
    }

    private static async Task<List<int>> AppliedVersionsAsync(NpgsqlDataSource dataSource)
    {
        await using var command = dataSource.CreateCommand("SELECT version FROM schema_migrations ORDER BY version");
        await using var reader = await command.ExecuteReaderAsync();
        var versions = new List<int>();
        while (await reader.ReadAsync())
            versions.Add(reader.GetInt32(0));
        return versions;
    }
}
