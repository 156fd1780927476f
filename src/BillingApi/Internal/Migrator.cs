using Microsoft.Extensions.Logging;
using Npgsql;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>
/// Forward-only schema migrations: numbered SQL files embedded in this assembly (<c>Migrations/0001_name.sql</c>),
/// each applied once, in order, in its own transaction, and recorded in <c>schema_migrations</c>. A session advisory
/// lock makes servers that start together take turns: the first migrates, the others then find nothing to do.
/// Migrations are written expand/migrate/contract: a file only adds (tables, nullable columns, indexes) or moves data,
/// and drops something only in a later release that no running server reads any more, so an old and a new server can
/// share the database during a rolling deploy. A database migrated further than this server knows is fine for that reason.
/// </summary>
internal static class Migrator
{
    /// <summary>Arbitrary, fixed: the advisory lock id of "AlphaMesh migrations" in every database.</summary>
    private const long LockId = 0x416c_7068_614d_6967; // "AlphaMig"

    internal sealed record Migration(int Version, string Name, string Sql);

    public static IReadOnlyList<Migration> Embedded { get; } = LoadEmbedded();

    /// <summary>Applies every embedded migration the database lacks; returns the versions it applied.</summary>
    public static async Task<IReadOnlyList<int>> MigrateAsync(NpgsqlDataSource dataSource, ILogger logger, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await ExecuteAsync(connection, $"SELECT pg_advisory_lock({LockId})", cancellationToken);
        try
        {
            await ExecuteAsync(connection, """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version     integer     PRIMARY KEY,
                    name        text        NOT NULL,
                    applied_at  timestamptz NOT NULL DEFAULT now())
                """, cancellationToken);
            var applied = new HashSet<int>();
            await using (var command = new NpgsqlCommand("SELECT version FROM schema_migrations", connection))
            await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
            {
                while (await reader.ReadAsync(cancellationToken))
                    applied.Add(reader.GetInt32(0));
            }
            var done = new List<int>();
            foreach (var migration in Embedded)
            {
                if (applied.Contains(migration.Version))
                    continue;
                await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
                await ExecuteAsync(connection, migration.Sql, cancellationToken);
                await using (var record = new NpgsqlCommand("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", connection))
                {
                    record.Parameters.Add(new NpgsqlParameter<int> { TypedValue = migration.Version });
                    record.Parameters.Add(new NpgsqlParameter<string> { TypedValue = migration.Name });
                    await record.ExecuteNonQueryAsync(cancellationToken);
                }
                await transaction.CommitAsync(cancellationToken);
                BillingLog.MigrationApplied(logger, migration.Version, migration.Name);
                done.Add(migration.Version);
            }
            int newest = applied.Count == 0 ? 0 : applied.Max();
            if (newest > Embedded[^1].Version)
                BillingLog.DatabaseAhead(logger, newest, Embedded[^1].Version);
            return done;
        }
        finally
        {
            // Also released when the connection closes; unlocking here returns a clean connection to the pool.
            await ExecuteAsync(connection, $"SELECT pg_advisory_unlock({LockId})", CancellationToken.None);
        }
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static List<Migration> LoadEmbedded()
    {
        var assembly = typeof(Migrator).Assembly;
        var migrations = new List<Migration>();
        foreach (var resource in assembly.GetManifestResourceNames())
        {
            if (!resource.StartsWith("migrations/", StringComparison.Ordinal))
                continue;
            var name = resource["migrations/".Length..^".sql".Length];
            int underscore = name.IndexOf('_', StringComparison.Ordinal);
            if (underscore <= 0 || !int.TryParse(name.AsSpan(0, underscore), out int version))
                throw new InvalidOperationException($"Migration '{resource}' must be named NNNN_description.sql.");
            using var stream = assembly.GetManifestResourceStream(resource)!;
            using var reader = new StreamReader(stream);
            migrations.Add(new Migration(version, name, reader.ReadToEnd()));
        }
        migrations.Sort((a, b) => a.Version.CompareTo(b.Version));
        for (int i = 1; i < migrations.Count; i++)
        {
            if (migrations[i].Version == migrations[i - 1].Version)
                throw new InvalidOperationException($"Two migrations have version {migrations[i].Version}.");
        }
        return migrations;
    }
}
