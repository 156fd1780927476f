using Npgsql;

namespace AlphaMesh.Tests.Shared;

/// <summary>
/// A fresh PostgreSQL database for one test class, created on the server named by <c>ALPHAMESH_TEST_POSTGRES</c>
/// (test.sh sets it up and exports it; the default is what test.sh creates) and dropped afterwards.
/// </summary>
public sealed class TestDatabase : IAsyncLifetime
{
    public const string Variable = "ALPHAMESH_TEST_POSTGRES";
    public const string Default = "Host=127.0.0.1;Port=5432;Username=alphamesh_test;Password=alphamesh_test;Database=alphamesh_test";

    private readonly string _name = "am_test_" + Guid.NewGuid().ToString("N")[..16];

    /// <summary>Connection string of the database made for this class.</summary>
    public string ConnectionString { get; private set; } = "";

    public static string AdminConnectionString => Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } s ? s : Default;

    public async Task InitializeAsync()
    {
        try
        {
            await using var connection = new NpgsqlConnection(AdminConnectionString);
            await connection.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE {_name}", connection);
            await create.ExecuteNonQueryAsync();
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
        {
            var safe = new NpgsqlConnectionStringBuilder(AdminConnectionString) { Password = null };
            throw new InvalidOperationException(
                $"Cannot create a test database through '{safe}' ({e.Message}). Run ./test.sh (as root it installs and starts " +
                $"PostgreSQL and creates the role), or set {Variable} to a connection string of a role with CREATEDB.", e);
        }
        ConnectionString = new NpgsqlConnectionStringBuilder(AdminConnectionString) { Database = _name }.ConnectionString;
    }

    public async Task DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        // Dropping can meet other classes' CREATE and DROP DATABASE on the same cluster (a CI run once failed one test
        // class's clean-up with a PostgresException after all its tests passed): a few tries before giving up.
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                await using var connection = new NpgsqlConnection(AdminConnectionString);
                await connection.OpenAsync();
                await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {_name} WITH (FORCE)", connection);
                await drop.ExecuteNonQueryAsync();
                return;
            }
            catch (PostgresException) when (attempt < 5)
            {
                await Task.Delay(200 * attempt);
            }
        }
    }
}
