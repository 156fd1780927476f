using AlphaMesh.BillingApi.Internal;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace AlphaMesh.BillingApi.Tests;

/// <summary>The embedded default: a private cluster made and started by the server itself (needs the PostgreSQL
/// package, as on a machine where test.sh ran).</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class EmbeddedPostgresTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "alphamesh-pg-test-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private string ClusterDirectory => Path.Combine(_directory, "postgres");

    [Fact]
    public async Task OpenAsync_NoConnectionString_MakesAClusterThatKeepsItsDataAcrossRestarts()
    {
        Directory.CreateDirectory(_directory);
        var options = new BillingOptions();

        await using (var first = await BillingDatabase.OpenAsync(options, ClusterDirectory, NullLoggerFactory.Instance, default))
        {
            Assert.True(first.IsEmbedded);
            await using var insert = first.DataSource.CreateCommand("INSERT INTO tenants (id, name) VALUES ('kept', 'Kept')");
            await insert.ExecuteNonQueryAsync();
        }

        await using var second = await BillingDatabase.OpenAsync(options, ClusterDirectory, NullLoggerFactory.Instance, default);
        await using var select = second.DataSource.CreateCommand("SELECT name FROM tenants WHERE id = 'kept'");
        Assert.Equal("Kept", await select.ExecuteScalarAsync());
        // The password is kept beside the cluster, readable only by the server's user.
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(ClusterDirectory + ".password"));
    }

    [Fact]
    public async Task OpenAsync_ClusterStillRunningFromAKilledServer_ReusesIt()
    {
        Directory.CreateDirectory(_directory);
        var started = await EmbeddedPostgres.StartAsync(ClusterDirectory, null, NullLogger.Instance, default);
        try
        {
            // No dispose of `started`: as if the server had been killed and its cluster left running.
            await using var again = await EmbeddedPostgres.StartAsync(ClusterDirectory, null, NullLogger.Instance, default);

            Assert.Equal(new NpgsqlConnectionStringBuilder(started.ConnectionString).Port, new NpgsqlConnectionStringBuilder(again.ConnectionString).Port);
            await using var connection = new NpgsqlConnection(again.ConnectionString);
            await connection.OpenAsync();
        }
        finally
        {
            await started.DisposeAsync();
        }
    }

    [Fact]
    public async Task StartAsync_BinDirectoryWithoutPostgres_FailsNamingTheSetting()
    {
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            EmbeddedPostgres.StartAsync(ClusterDirectory, "/nonexistent", NullLogger.Instance, default));

        Assert.Contains("AlphaMesh:Billing:PostgresBinDirectory", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task OpenAsync_WrongConnectionString_FailsSayingWhichServerWithoutThePassword()
    {
        var options = new BillingOptions { ConnectionString = "Host=127.0.0.1;Port=1;Username=nobody;Password=secret-pw;Timeout=2" };

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            BillingDatabase.OpenAsync(options, ClusterDirectory, NullLoggerFactory.Instance, default));

        Assert.Contains("Port=1", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("secret-pw", error.Message, StringComparison.Ordinal);
    }
}
