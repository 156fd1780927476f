using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AlphaMesh.Server;
using AlphaMesh.Usage.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;
using Npgsql;
using NpgsqlTypes;

namespace AlphaMesh.Benchmarks;

/// <summary>
/// <c>--billing-run [subscriptions]</c>: the real server in this process (embedded PostgreSQL under a temporary data
/// directory, or <c>ALPHAMESH_BENCH_POSTGRES</c>), a Pro-like plan (fixed fee in advance, graduated usage charge),
/// that many customers each with a subscription from the first of last month, ten API calls each through the real
/// gRPC ingest, then one billing run as of the first of this month, timed: every subscription gets its start invoice
/// and its period-end invoice, rated from the aggregator's usage and finalized. A second run (nothing to do) is timed
/// too. The catalog rows are bulk-loaded with COPY, since what is measured is the run, not 200,000 POSTs.
/// </summary>
internal static class BillingRunBenchmark
{
    private const string Key = "amk_bench_billing_run_0123456789abcdef";

    public static async Task<int> RunAsync(int subscriptions, TextWriter output)
    {
        string data = Directory.CreateTempSubdirectory("alphamesh-billing-bench-").FullName;
        // The embedded PostgreSQL runs as the postgres user when this runs as root, and must reach the data directory.
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(data, (UnixFileMode)0b111_101_101);
        int restPort = 15380, grpcPort = 15381;
        var args = new List<string>
        {
            "--data-dir", data,
            $"--Kestrel:Endpoints:Rest:Url=http://127.0.0.1:{restPort}",
            $"--Kestrel:Endpoints:Grpc:Url=http://127.0.0.1:{grpcPort}",
            "--Logging:LogLevel:Default=Warning",
            // The run's own log line splits its time into phases.
            "--Logging:LogLevel:AlphaMesh.BillingApi.Internal.BillingEngine=Information",
            $"--ALPHAMESH_BOOTSTRAP_KEY={Key}",
            "--AlphaMesh:BootstrapTenant=bench",
            "--AlphaMesh:Ingest:BackdatingLimit=90.00:00:00",
            "--AlphaMesh:Aggregator:DedupeRetention=90.00:00:00",
            "--AlphaMesh:Billing:BillingRunInterval=00:00:00",
        };
        string? external = Environment.GetEnvironmentVariable("ALPHAMESH_BENCH_POSTGRES") is { Length: > 0 } e ? e : null;
        if (external is not null)
            args.Add($"--AlphaMesh:Billing:ConnectionString={external}");
        var app = AlphaMeshHost.Build([.. args]);
        await app.StartAsync();
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{restPort}"), Timeout = TimeSpan.FromMinutes(30) };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
            var thisMonth = new DateOnly(DateTime.UtcNow.Year, DateTime.UtcNow.Month, 1);
            var lastMonth = thisMonth.AddMonths(-1);
            string run = DateTime.UtcNow.ToString("HHmmss", CultureInfo.InvariantCulture);
            string plan = "pro-" + run;

            await PostAsync(http, "/v1/meters", new { key = "api_calls", eventType = "api_call", aggregation = "COUNT" });
            await PostAsync(http, "/v1/plans", new
            {
                code = plan,
                name = "Pro",
                version = new
                {
                    currency = "USD",
                    interval = "monthly",
                    fixedFees = new[] { new { code = "platform", amount = "49.00" } },
                    charges = new[]
                    {
                        new
                        {
                            code = "calls", meter = "api_calls", freeUnits = "5",
                            model = new { type = "graduated", tiers = new object[] { new { upTo = "8", unitPrice = "0.0005" }, new { unitPrice = "0.0004" } } },
                        },
                    },
                },
            });

            var load = Stopwatch.StartNew();
            string connectionString = external ?? EmbeddedConnectionString(data);
            await BulkLoadAsync(connectionString, subscriptions, run, plan, lastMonth);
            output.WriteLine($"loaded {subscriptions:N0} customers and subscriptions with COPY in {load.Elapsed.TotalSeconds:F1} s");

            var ingest = Stopwatch.StartNew();
            long events = await IngestAsync(grpcPort, subscriptions, run, lastMonth);
            output.WriteLine($"ingested {events:N0} events in {ingest.Elapsed.TotalSeconds:F1} s");

            // The embedded cluster's CPU is read from /proc (its postmaster and backends); an external server's is not known.
            string? postmaster = external is null ? Path.Combine(data, "postgres", "postmaster.pid") : null;
            foreach (var label in new[] { "first run", "second run (nothing due)" })
            {
                var cpu = Process.GetCurrentProcess().TotalProcessorTime;
                var postgresCpu = PostgresCpu(postmaster);
                var clock = Stopwatch.StartNew();
                var result = await PostAsync(http, "/v1/billing-runs", new { asOf = thisMonth.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture) + "T00:00:00Z" });
                clock.Stop();
                var cpuUsed = Process.GetCurrentProcess().TotalProcessorTime - cpu;
                string postgres = PostgresCpu(postmaster) - postgresCpu is { } used ? $"PostgreSQL's CPU {used.TotalSeconds:F1} s" : "PostgreSQL's not known";
                output.WriteLine($"{label}: {result["subscriptions"]} subscriptions, {result["created"]} invoices created, {result["finalized"]} finalized, " +
                    $"{result["failures"]!.AsArray().Count} failures in {clock.Elapsed.TotalSeconds:F1} s " +
                    $"({int.Parse(result["subscriptions"]!.ToString(), CultureInfo.InvariantCulture) / clock.Elapsed.TotalSeconds:N0} subscriptions/s; this process's CPU {cpuUsed.TotalSeconds:F1} s, {postgres})");
                // Autovacuum runs in the cluster's CPU above: it says when the vacuum of what the first run wrote fell.
                output.WriteLine("  autovacuum so far: " + await AutovacuumAsync(connectionString));
            }
            return 0;
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
            Directory.Delete(data, recursive: true);
        }
    }

    /// <summary>
    /// CPU time (user and system) of a PostgreSQL cluster on Linux: its postmaster's own and that of its children that
    /// have exited (cutime, cstime), plus that of its running children (the backends of the pool, the background
    /// workers). Null when not on Linux or with no cluster of ours.
    /// </summary>
    private static TimeSpan? PostgresCpu(string? pidFile)
    {
        if (pidFile is null || !OperatingSystem.IsLinux() || !File.Exists(pidFile))
            return null;
        int postmaster = int.Parse(File.ReadLines(pidFile).First(), CultureInfo.InvariantCulture);
        long ticks = 0;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid))
                continue;
            string stat;
            try
            {
                stat = File.ReadAllText(Path.Combine(dir, "stat"));
            }
            catch (IOException)
            {
                continue; // the process ended meanwhile
            }
            // Fields after the command name (which may hold spaces, inside parentheses): state ppid ... utime stime cutime cstime.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            int parent = int.Parse(fields[1], CultureInfo.InvariantCulture);
            if (pid == postmaster)
                ticks += fields[11..15].Sum(f => long.Parse(f, CultureInfo.InvariantCulture));
            else if (parent == postmaster)
                ticks += long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        }
        // Linux reports these in clock ticks of 1/100 s (USER_HZ).
        return TimeSpan.FromSeconds(ticks / 100.0);
    }

    /// <summary>The embedded cluster's port is line 4 of its postmaster.pid and its password sits beside its
    /// directory (see EmbeddedPostgres in the billing API).</summary>
    private static string EmbeddedConnectionString(string data)
    {
        int port = int.Parse(File.ReadAllLines(Path.Combine(data, "postgres", "postmaster.pid"))[3], CultureInfo.InvariantCulture);
        string password = File.ReadAllText(Path.Combine(data, "postgres.password")).Trim();
        return new NpgsqlConnectionStringBuilder { Host = "127.0.0.1", Port = port, Username = "alphamesh", Password = password, Database = "alphamesh" }.ConnectionString;
    }

    private static async Task BulkLoadAsync(string connectionString, int count, string run, string plan, DateOnly start)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using (var customers = await connection.BeginBinaryImportAsync("COPY customers (tenant_id, id, name, currency) FROM STDIN (FORMAT BINARY)"))
        {
            for (int i = 0; i < count; i++)
            {
                await customers.StartRowAsync();
                await customers.WriteAsync("bench", NpgsqlDbType.Text);
                await customers.WriteAsync(Customer(run, i), NpgsqlDbType.Text);
                await customers.WriteAsync("Customer " + i, NpgsqlDbType.Text);
                await customers.WriteAsync("USD", NpgsqlDbType.Text);
            }
            await customers.CompleteAsync();
        }
        await using (var subs = await connection.BeginBinaryImportAsync("COPY subscriptions (tenant_id, id, customer_id, start_date, billing_anchor) FROM STDIN (FORMAT BINARY)"))
        {
            for (int i = 0; i < count; i++)
            {
                await subs.StartRowAsync();
                await subs.WriteAsync("bench", NpgsqlDbType.Text);
                await subs.WriteAsync($"sub_{run}_{i:D7}", NpgsqlDbType.Text);
                await subs.WriteAsync(Customer(run, i), NpgsqlDbType.Text);
                await subs.WriteAsync(start, NpgsqlDbType.Date);
                await subs.WriteAsync(start, NpgsqlDbType.Date);
            }
            await subs.CompleteAsync();
        }
        await using (var phases = await connection.BeginBinaryImportAsync(
            "COPY subscription_phases (tenant_id, subscription_id, phase, plan_code, plan_version, starts_on) FROM STDIN (FORMAT BINARY)"))
        {
            for (int i = 0; i < count; i++)
            {
                await phases.StartRowAsync();
                await phases.WriteAsync("bench", NpgsqlDbType.Text);
                await phases.WriteAsync($"sub_{run}_{i:D7}", NpgsqlDbType.Text);
                await phases.WriteAsync(1, NpgsqlDbType.Integer);
                await phases.WriteAsync(plan, NpgsqlDbType.Text);
                await phases.WriteAsync(1, NpgsqlDbType.Integer);
                await phases.WriteAsync(start, NpgsqlDbType.Date);
            }
            await phases.CompleteAsync();
        }
        await using var analyze = new NpgsqlCommand("ANALYZE", connection);
        await analyze.ExecuteNonQueryAsync();
    }

    private static async Task<string> AutovacuumAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("""
            SELECT string_agg(relname || ' ' || autovacuum_count || ' vacuums, ' || autoanalyze_count || ' analyzes', '; ' ORDER BY relname)
            FROM pg_stat_user_tables WHERE relname IN ('invoices', 'invoice_lines')
            """, connection);
        return (string)(await command.ExecuteScalarAsync())!;
    }

    private static string Customer(string run, int i) => $"cust-{run}-{i:D7}";

    /// <summary>Ten calls per customer in the middle of last month, in batches of 1,000 over 4 gRPC calls at a time.</summary>
    private static async Task<long> IngestAsync(int grpcPort, int count, string run, DateOnly month)
    {
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{grpcPort}");
        var client = new UsageIngest.UsageIngestClient(channel);
        var auth = new Metadata { { "authorization", "Bearer " + Key } };
        var time = Timestamp.FromDateTimeOffset(new DateTimeOffset(month.AddDays(14).ToDateTime(TimeOnly.MinValue), TimeSpan.Zero));
        const int PerCustomer = 10, Batch = 1000;
        long total = (long)count * PerCustomer;
        await Parallel.ForEachAsync(Enumerable.Range(0, (int)((total + Batch - 1) / Batch)), new ParallelOptions { MaxDegreeOfParallelism = 4 }, async (b, ct) =>
        {
            var request = new IngestRequest { BatchId = $"{run}-{b}" };
            for (long n = (long)b * Batch; n < Math.Min(total, (long)(b + 1) * Batch); n++)
                request.Events.Add(new UsageEvent { Id = $"{run}-{n}", Type = "api_call", Customer = Customer(run, (int)(n / PerCustomer)), Time = time });
            var reply = await client.IngestAsync(request, auth, cancellationToken: ct);
            if (reply.Rejected.Count > 0)
                throw new InvalidOperationException($"ingest rejected {reply.Rejected.Count} events: {reply.Rejected[0]}");
        });
        return total;
    }

    private static async Task<JsonNode> PostAsync(HttpClient http, string path, object body)
    {
        using var response = await http.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"POST {path}: {(int)response.StatusCode} {text}");
        return JsonNode.Parse(text)!;
    }
}
