using System.Collections.Concurrent;
using System.Diagnostics;
using AlphaMesh.BillingApi;
using AlphaMesh.BillingApi.Internal;
using HdrHistogram;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Npgsql;

namespace AlphaMesh.Benchmarks;

/// <summary>
/// <c>--webhooks [events] [rate] [seconds] [concurrency]</c>: the webhook outbox and one dispatcher on a real PostgreSQL
/// (a temporary database on the server of <c>ALPHAMESH_TEST_POSTGRES</c>, or the test default) sending to a local
/// Kestrel receiver that answers 200 at once. Prints (1) how fast <c>events</c> events are enqueued, 100 per
/// transaction, and how fast the dispatcher then delivers that backlog, and (2) the latency from an event's commit to
/// its arrival at the receiver while events are committed one per transaction at <c>rate</c> per second for
/// <c>seconds</c>. Everything runs in this process on this machine, receiver included.
/// </summary>
public static class WebhookRuns
{
    private const string Tenant = "bench";

    public static async Task<int> RunAsync(int events, int rate, int seconds, int concurrency, TextWriter output)
    {
        string admin = Environment.GetEnvironmentVariable("ALPHAMESH_TEST_POSTGRES") is { Length: > 0 } s
            ? s : "Host=127.0.0.1;Port=5432;Username=alphamesh_test;Password=alphamesh_test;Database=alphamesh_test";
        string name = "am_bench_" + Guid.NewGuid().ToString("N")[..12];
        await ExecuteAsync(admin, $"CREATE DATABASE {name}");
        try
        {
            var options = new BillingOptions { ConnectionString = new NpgsqlConnectionStringBuilder(admin) { Database = name, MaxPoolSize = 50 }.ConnectionString };
            options.Webhooks.MaxConcurrentDeliveries = concurrency;
            await using var database = await BillingDatabase.OpenAsync(options, "", NullLoggerFactory.Instance, default);
            await new TenantStore(database).EnsureTenantsAsync([Tenant], default);
            await using var receiver = await Receiver.StartAsync();
            await using (var connection = await database.DataSource.OpenConnectionAsync())
                await WebhookStore.CreateEndpointAsync(connection, Tenant, receiver.Url, "", ["*"], WebhookSignature.NewSecret(), default);

            // (1) A backlog: enqueued with no dispatcher running, then delivered.
            var watch = Stopwatch.StartNew();
            for (int done = 0; done < events; done += 100)
            {
                await using var connection = await database.DataSource.OpenConnectionAsync();
                await using var transaction = await connection.BeginTransactionAsync();
                for (int i = done; i < Math.Min(events, done + 100); i++)
                    await WebhookOutbox.EnqueueAsync(connection, Tenant, WebhookEventTypes.InvoiceCreated, new { invoiceId = "inv_" + i, total = "10.00" }, default);
                await transaction.CommitAsync();
            }
            output.WriteLine($"enqueued {events:N0} events, 100 per transaction, in {watch.Elapsed.TotalSeconds:N2} s: {events / watch.Elapsed.TotalSeconds:N0} events/s");

            using var dispatcher = new WebhookDispatcher(database, Options.Create(options), NullLogger<WebhookDispatcher>.Instance);
            watch.Restart();
            await dispatcher.StartAsync(default);
            await WaitForDeliveredAsync(database, events);
            output.WriteLine($"delivered the backlog ({events:N0} deliveries, {concurrency} at a time) in {watch.Elapsed.TotalSeconds:N2} s: "
                + $"{events / watch.Elapsed.TotalSeconds:N0} deliveries/s; receiver got {receiver.Count:N0} requests");

            // (2) Steady: one event per transaction at the given rate; commit-to-arrival latency.
            var committed = new Dictionary<string, long>();
            int steady = rate * seconds;
            var interval = Stopwatch.Frequency / rate;
            long begin = Stopwatch.GetTimestamp();
            for (int i = 0; i < steady; i++)
            {
                long due = begin + i * interval;
                while (Stopwatch.GetTimestamp() < due)
                    await Task.Delay(1);
                await using var connection = await database.DataSource.OpenConnectionAsync();
                await using var transaction = await connection.BeginTransactionAsync();
                var id = await WebhookOutbox.EnqueueAsync(connection, Tenant, WebhookEventTypes.InvoiceFinalized, new { invoiceId = "steady_" + i }, default);
                await transaction.CommitAsync();
                committed[id.ToString()] = Stopwatch.GetTimestamp();
            }
            double committing = Stopwatch.GetElapsedTime(begin).TotalSeconds;
            await WaitForDeliveredAsync(database, events + steady);
            await dispatcher.StopAsync(default);
            // Arrival times are matched afterwards: an event can arrive before its committer has noted the commit time.
            var h = new LongHistogram(Stopwatch.Frequency * 60, 3);
            foreach (var (id, at) in committed)
                h.RecordValue(Math.Max(0, receiver.Arrivals[id] - at));
            double Ms(double percentile) => h.GetValueAtPercentile(percentile) * 1000.0 / Stopwatch.Frequency;
            output.WriteLine($"steady {rate}/s for {seconds} s ({steady:N0} events, one per transaction, committed in {committing:N2} s): commit to arrival "
                + $"p50 {Ms(50):N1} ms, p99 {Ms(99):N1} ms, max {h.GetMaxValue() * 1000.0 / Stopwatch.Frequency:N1} ms ({h.TotalCount:N0} measured)");
            output.WriteLine($"receiver got {receiver.Count:N0} requests in all for {events + steady:N0} events (more would be a duplicate)");
            return 0;
        }
        finally
        {
            NpgsqlConnection.ClearAllPools();
            await ExecuteAsync(admin, $"DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        }
    }

    private static async Task WaitForDeliveredAsync(BillingDatabase database, int expected)
    {
        while (true)
        {
            await using var command = database.DataSource.CreateCommand("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'");
            if ((long)(await command.ExecuteScalarAsync())! >= expected)
                return;
            await Task.Delay(20);
        }
    }

    private static async Task ExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>Kestrel on 127.0.0.1 (a port the kernel picks) answering 200 to every POST.</summary>
    private sealed class Receiver : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private long _count;

        private Receiver(WebApplication app) => _app = app;

        public string Url { get; private set; } = "";
        public long Count => Interlocked.Read(ref _count);
        public ConcurrentDictionary<string, long> Arrivals { get; } = new();

        public static async Task<Receiver> StartAsync()
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Configuration.Sources.Clear();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0));
            var app = builder.Build();
            var receiver = new Receiver(app);
            app.MapPost("/hook", async (HttpContext http) =>
            {
                await http.Request.Body.CopyToAsync(Stream.Null);
                long at = Stopwatch.GetTimestamp();
                Interlocked.Increment(ref receiver._count);
                receiver.Arrivals[http.Request.Headers["AlphaMesh-Event-Id"].ToString()] = at;
                return Results.Ok();
            });
            await app.StartAsync();
            receiver.Url = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>().Features
                .Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/') + "/hook";
            return receiver;
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
