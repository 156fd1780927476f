using System.Globalization;
using Npgsql;
using NpgsqlTypes;

namespace AlphaMesh.PeerBaselines;

/// <summary>
/// The "events table" approach several open-source billing systems take: every event is a row, a primary key on
/// (tenant, event id) with <c>ON CONFLICT DO NOTHING</c> drops the duplicates, and usage is a <c>GROUP BY</c> at
/// query time. Two ways in, each what an expert would write: <see cref="PostgresLoad.Insert"/> sends a prepared
/// <c>INSERT ... SELECT FROM unnest($arrays)</c> per batch (one round trip and one transaction per batch), and
/// <see cref="PostgresLoad.Copy"/> streams each batch with binary COPY into a temporary staging table, then moves it
/// with <c>INSERT ... SELECT ... ON CONFLICT DO NOTHING</c> in the same transaction. One connection per lane; a
/// customer's events always go through the same connection, so no two transactions insert the same ids.
/// </summary>
internal sealed class PostgresTarget(string connectionString, PostgresLoad load, int connections, int batch) : PeerTarget
{
    private const string Tenant = "default";

    private const string InsertFromArrays = """
        INSERT INTO peer_events (tenant, event_id, customer, type, time, amount)
        SELECT $1, e.id, e.customer, $2, e.time, e.amount
        FROM unnest($3::text[], $4::text[], $5::timestamptz[], $6::numeric[]) AS e(id, customer, time, amount)
        ON CONFLICT (tenant, event_id) DO NOTHING
        """;

    private const string InsertFromStaging = """
        INSERT INTO peer_events (tenant, event_id, customer, type, time, amount)
        SELECT $1, event_id, customer, $2, time, amount FROM peer_staging
        ON CONFLICT (tenant, event_id) DO NOTHING
        """;

    private readonly NpgsqlDataSource _dataSource = NpgsqlDataSource.Create(connectionString);
    private readonly List<NpgsqlConnection> _connections = [];
    private readonly List<NpgsqlCommand> _commands = [];
    private string _settings = "";

    public override string Name => load == PostgresLoad.Insert
        ? "PostgreSQL events table, INSERT unnest ... ON CONFLICT DO NOTHING"
        : "PostgreSQL events table, COPY BINARY to staging + INSERT ... ON CONFLICT DO NOTHING";

    public override string Durability => $"a batch is acknowledged when its COMMIT returns; {_settings}";

    public override string Method => (load == PostgresLoad.Insert
            ? $"{connections} connection(s), a prepared INSERT ... SELECT FROM unnest(arrays) ON CONFLICT (tenant, event_id) DO NOTHING per {batch:N0} events, one transaction each"
            : $"{connections} connection(s), per {batch:N0} events: COPY (FORMAT BINARY) into a temporary ON COMMIT DELETE ROWS staging table, then a prepared INSERT ... SELECT ... ON CONFLICT (tenant, event_id) DO NOTHING, one transaction each")
        + "; table peer_events(tenant, event_id, customer, type, time timestamptz, amount numeric(20,2)) with only its primary key (tenant, event_id) "
        + "(a real deployment also indexes (tenant, customer, time) for range queries, which would slow the inserts); usage: SELECT customer, count(*), sum(amount) ... GROUP BY customer";

    public override async Task SetupAsync(EventSet events, CancellationToken cancellationToken)
    {
        await using (var setup = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false))
        {
            await ExecuteAsync(setup, "DROP TABLE IF EXISTS peer_events", cancellationToken).ConfigureAwait(false);
            await ExecuteAsync(setup, """
                CREATE TABLE peer_events (
                    tenant text NOT NULL,
                    event_id text NOT NULL,
                    customer text NOT NULL,
                    type text NOT NULL,
                    time timestamptz NOT NULL,
                    amount numeric(20,2) NOT NULL,
                    PRIMARY KEY (tenant, event_id))
                """, cancellationToken).ConfigureAwait(false);
            Version = "PostgreSQL " + await ScalarAsync(setup, "SHOW server_version", cancellationToken).ConfigureAwait(false);
            var settings = new List<string>();
            foreach (string name in (string[])["fsync", "synchronous_commit", "wal_sync_method", "full_page_writes", "shared_buffers", "max_wal_size", "checkpoint_timeout", "wal_compression"])
                settings.Add($"{name}={await ScalarAsync(setup, "SHOW " + name, cancellationToken).ConfigureAwait(false)}");
            _settings = string.Join(", ", settings);
        }

        for (int c = 0; c < connections; c++)
        {
            var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            _connections.Add(connection);
            if (load == PostgresLoad.Copy)
            {
                await ExecuteAsync(connection,
                    "CREATE TEMPORARY TABLE peer_staging (event_id text NOT NULL, customer text NOT NULL, time timestamptz NOT NULL, amount numeric(20,2) NOT NULL) ON COMMIT DELETE ROWS",
                    cancellationToken).ConfigureAwait(false);
            }
            var command = new NpgsqlCommand(load == PostgresLoad.Insert ? InsertFromArrays : InsertFromStaging, connection);
            command.Parameters.Add(new NpgsqlParameter<string> { NpgsqlDbType = NpgsqlDbType.Text, TypedValue = Tenant });
            command.Parameters.Add(new NpgsqlParameter<string> { NpgsqlDbType = NpgsqlDbType.Text, TypedValue = AlphaMeshTarget.EventType });
            if (load == PostgresLoad.Insert)
            {
                command.Parameters.Add(new NpgsqlParameter<string[]> { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
                command.Parameters.Add(new NpgsqlParameter<string[]> { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
                command.Parameters.Add(new NpgsqlParameter<DateTime[]> { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz });
                command.Parameters.Add(new NpgsqlParameter<decimal[]> { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Numeric });
            }
            await command.PrepareAsync(cancellationToken).ConfigureAwait(false);
            _commands.Add(command);
        }
    }

    public override Task IngestAsync(EventSet events, int[][] lanes, CancellationToken cancellationToken)
    {
        if (lanes.Length != connections)
            throw new ArgumentException($"{lanes.Length} lanes for {connections} connections", nameof(lanes));
        return RunLanesAsync(lanes, (lane, indexes) => load == PostgresLoad.Insert
            ? InsertLaneAsync(_commands[lane], events, indexes, cancellationToken)
            : CopyLaneAsync(_connections[lane], _commands[lane], events, indexes, cancellationToken));
    }

    public override async Task<Dictionary<string, CustomerUsage>> ReadUsageAsync(EventSet events, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            "SELECT customer, count(*), sum(amount) FROM peer_events WHERE tenant = $1 AND type = $2 AND time >= $3 AND time < $4 GROUP BY customer",
            _connections[0]);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = Tenant });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = AlphaMeshTarget.EventType });
        command.Parameters.Add(new NpgsqlParameter<DateTime> { TypedValue = events.BaseTime.AddDays(-1).UtcDateTime });
        command.Parameters.Add(new NpgsqlParameter<DateTime> { TypedValue = events.BaseTime.AddDays(1).UtcDateTime });
        var usage = new Dictionary<string, CustomerUsage>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            usage[reader.GetString(0)] = new CustomerUsage(reader.GetInt64(1), reader.GetDecimal(2));
        return usage;
    }

    public override async ValueTask DisposeAsync()
    {
        foreach (var command in _commands)
            await command.DisposeAsync().ConfigureAwait(false);
        foreach (var connection in _connections)
            await connection.DisposeAsync().ConfigureAwait(false);
        await _dataSource.DisposeAsync().ConfigureAwait(false);
    }

    private async Task InsertLaneAsync(NpgsqlCommand command, EventSet events, int[] indexes, CancellationToken cancellationToken)
    {
        for (int start = 0; start < indexes.Length; start += batch)
        {
            int n = Math.Min(batch, indexes.Length - start);
            // Arrays are sent whole, so each batch gets arrays of its exact length.
            var ids = new string[n];
            var customers = new string[n];
            var times = new DateTime[n];
            var amounts = new decimal[n];
            for (int k = 0; k < n; k++)
            {
                var e = events.Events[indexes[start + k]];
                ids[k] = e.Id;
                customers[k] = events.Customers[e.Customer];
                times[k] = events.TimeOf(e).UtcDateTime;
                amounts[k] = EventSet.Amount(e.AmountMinor);
            }
            ((NpgsqlParameter<string[]>)command.Parameters[2]).TypedValue = ids;
            ((NpgsqlParameter<string[]>)command.Parameters[3]).TypedValue = customers;
            ((NpgsqlParameter<DateTime[]>)command.Parameters[4]).TypedValue = times;
            ((NpgsqlParameter<decimal[]>)command.Parameters[5]).TypedValue = amounts;
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task CopyLaneAsync(NpgsqlConnection connection, NpgsqlCommand insert, EventSet events, int[] indexes, CancellationToken cancellationToken)
    {
        for (int start = 0; start < indexes.Length; start += batch)
        {
            int n = Math.Min(batch, indexes.Length - start);
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            await using (var copy = await connection.BeginBinaryImportAsync("COPY peer_staging (event_id, customer, time, amount) FROM STDIN (FORMAT BINARY)", cancellationToken).ConfigureAwait(false))
            {
                for (int k = 0; k < n; k++)
                {
                    var e = events.Events[indexes[start + k]];
                    await copy.StartRowAsync(cancellationToken).ConfigureAwait(false);
                    await copy.WriteAsync(e.Id, NpgsqlDbType.Text, cancellationToken).ConfigureAwait(false);
                    await copy.WriteAsync(events.Customers[e.Customer], NpgsqlDbType.Text, cancellationToken).ConfigureAwait(false);
                    await copy.WriteAsync(events.TimeOf(e).UtcDateTime, NpgsqlDbType.TimestampTz, cancellationToken).ConfigureAwait(false);
                    await copy.WriteAsync(EventSet.Amount(e.AmountMinor), NpgsqlDbType.Numeric, cancellationToken).ConfigureAwait(false);
                }
                await copy.CompleteAsync(cancellationToken).ConfigureAwait(false);
            }
            insert.Transaction = transaction;
            await insert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private static async Task<string> ScalarAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return Convert.ToString(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), CultureInfo.InvariantCulture) ?? "";
    }
}

/// <summary>How the PostgreSQL baseline loads its batches.</summary>
internal enum PostgresLoad
{
    /// <summary>A prepared INSERT ... SELECT FROM unnest of one array per column.</summary>
    Insert,

    /// <summary>Binary COPY into a staging table, then INSERT ... SELECT.</summary>
    Copy,
}
