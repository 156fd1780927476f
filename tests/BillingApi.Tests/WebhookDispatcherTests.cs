using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using AlphaMesh.BillingApi.Internal;
using AlphaMesh.Tests.Shared;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace AlphaMesh.BillingApi.Tests;

/// <summary>
/// The outbox and the dispatcher against the real PostgreSQL and real HTTP receivers (Kestrel on 127.0.0.1). One
/// database for the class; each test makes its own tenant and closes what earlier tests left pending, so that a
/// dispatcher of this test sends only this test's events.
/// </summary>
public sealed class WebhookDispatcherTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private readonly List<WebhookDispatcher> _dispatchers = [];
    private BillingDatabase _billing = null!;
    private WebhookStore _store = null!;

    public async Task InitializeAsync()
    {
        _billing = await TestSupport.OpenAsync(database);
        _store = new WebhookStore(_billing);
        await using var command = _billing.DataSource.CreateCommand(
            "UPDATE webhook_deliveries SET status = 'canceled' WHERE status = 'pending'; UPDATE webhook_events SET dispatched_at = now() WHERE dispatched_at IS NULL");
        await command.ExecuteNonQueryAsync();
    }

    public async Task DisposeAsync()
    {
        foreach (var dispatcher in _dispatchers)
        {
            await dispatcher.StopAsync(default);
            dispatcher.Dispose();
        }
        await _billing.DisposeAsync();
    }

    private static WebhookOptions FastOptions() => new()
    {
        FirstRetryDelay = TimeSpan.FromMilliseconds(100),
        MaxRetryDelay = TimeSpan.FromMilliseconds(400),
        AttemptTimeout = TimeSpan.FromSeconds(5),
        PollInterval = TimeSpan.FromSeconds(1),
    };

    private WebhookDispatcher NewDispatcher(WebhookOptions? options = null)
    {
        var dispatcher = new WebhookDispatcher(_billing, Options.Create(new BillingOptions { Webhooks = options ?? FastOptions() }),
            NullLogger<WebhookDispatcher>.Instance);
        _dispatchers.Add(dispatcher);
        return dispatcher;
    }

    private async Task<WebhookDispatcher> StartDispatcherAsync(WebhookOptions? options = null)
    {
        var dispatcher = NewDispatcher(options);
        await dispatcher.StartAsync(default);
        return dispatcher;
    }

    private async Task<string> CreateTenantAsync()
    {
        var tenant = "t-" + Guid.NewGuid().ToString("N")[..12];
        await new TenantStore(_billing).EnsureTenantsAsync([tenant], default);
        return tenant;
    }

    private async Task<(Guid Id, string Secret)> CreateEndpointAsync(string tenant, string url, params string[] eventTypes)
    {
        var secret = WebhookSignature.NewSecret();
        await using var connection = await _billing.DataSource.OpenConnectionAsync();
        var row = await WebhookStore.CreateEndpointAsync(connection, tenant, url, "", eventTypes.Length == 0 ? ["*"] : eventTypes, secret, default);
        return (row.Id, secret);
    }

    /// <summary>Enqueues in a transaction of its own, committed or rolled back.</summary>
    private async Task<Guid> EnqueueAsync(string tenant, string type, object data, bool commit = true)
    {
        await using var connection = await _billing.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        var id = await WebhookOutbox.EnqueueAsync(connection, tenant, type, data, default);
        if (commit)
            await transaction.CommitAsync();
        else
            await transaction.RollbackAsync();
        return id;
    }

    private Task<List<WebhookDeliveryRow>> DeliveriesAsync(Guid endpointId) => _store.ListDeliveriesAsync(endpointId, null, 100, default);

    private async Task<WebhookDeliveryRow> WaitForDeliveryAsync(Guid endpointId, Func<WebhookDeliveryRow, bool> condition)
    {
        WebhookDeliveryRow? found = null;
        bool done = await TestSupport.EventuallyAsync(async () => (found = (await DeliveriesAsync(endpointId)).FirstOrDefault(condition)) is not null, Patience);
        Assert.True(done, $"no delivery to {endpointId} reached the expected state: " + string.Join("; ", (await DeliveriesAsync(endpointId)).Select(d => d.ToString())));
        return found!;
    }

    /// <summary>What a receiver does, written from the README's description and not with the server's code:
    /// HMAC-SHA256 keyed with the secret's UTF-8 bytes over "&lt;t&gt;.&lt;body&gt;", compared with v1, and t recent.</summary>
    private static bool SignatureIsValid(string secret, ReceivedWebhook request)
    {
        if (request.Signature is not { } header)
            return false;
        var parts = header.Split(',').Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p.Length > 1 ? p[1] : "");
        if (!parts.TryGetValue("t", out var t) || !parts.TryGetValue("v1", out var v1) || !long.TryParse(t, CultureInfo.InvariantCulture, out long seconds))
            return false;
        using var hmac = new HMACSHA256(Encoding.UTF8.GetBytes(secret));
        var expected = hmac.ComputeHash([.. Encoding.UTF8.GetBytes(t + "."), .. request.Body]);
        return CryptographicOperations.FixedTimeEquals(expected, Convert.FromHexString(v1))
            && Math.Abs(DateTimeOffset.UtcNow.ToUnixTimeSeconds() - seconds) < 300;
    }

    [Fact]
    public async Task Dispatcher_FirstAttemptAnswers500_RetriesAndTheReceiverVerifiesBothSignatures()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Respond = (request, _) => Task.FromResult(request.Attempt == 1 ? 500 : 200);
        var tenant = await CreateTenantAsync();
        var (endpointId, secret) = await CreateEndpointAsync(tenant, receiver.Url());
        await StartDispatcherAsync();

        var eventId = await EnqueueAsync(tenant, WebhookEventTypes.InvoiceFinalized, new { invoiceId = "inv_1", total = "12.50", currency = "EUR" });
        var delivery = await WaitForDeliveryAsync(endpointId, d => d.Status == "delivered");

        var received = receiver.Received;
        Assert.Equal([500, 200], received.Select(r => r.Status));
        Assert.All(received, r => Assert.True(SignatureIsValid(secret, r), $"signature {r.Signature} does not verify"));
        Assert.All(received, r => Assert.Equal((eventId.ToString(), "application/json"), (r.EventId, r.ContentType)));
        Assert.Equal(received[0].Text, received[1].Text);
        // A receiver with another secret, or a body changed on the way, fails the same check.
        Assert.False(SignatureIsValid(WebhookSignature.NewSecret(), received[1]));
        Assert.False(SignatureIsValid(secret, received[1] with { Body = Encoding.UTF8.GetBytes(received[1].Text.Replace("12.50", "99.50")) }));

        var envelope = JsonNode.Parse(received[1].Text)!;
        Assert.Equal(eventId.ToString(), envelope["id"]!.GetValue<string>());
        Assert.Equal("invoice.finalized", envelope["type"]!.GetValue<string>());
        Assert.Equal(tenant, envelope["tenant"]!.GetValue<string>());
        Assert.True(DateTimeOffset.UtcNow - DateTimeOffset.Parse(envelope["createdAt"]!.GetValue<string>(), CultureInfo.InvariantCulture) < TimeSpan.FromMinutes(5));
        Assert.Equal("""{"invoiceId":"inv_1","total":"12.50","currency":"EUR"}""", envelope["data"]!.ToJsonString());

        Assert.Equal((eventId, "invoice.finalized", 2), (delivery.EventId, delivery.EventType, delivery.AttemptCount));
        Assert.Null(delivery.NextAttemptAt);
        Assert.NotNull(delivery.CompletedAt);
        Assert.Collection(delivery.Attempts,
            first =>
            {
                Assert.Equal((1, 500), (first.Number, first.HttpStatus));
                Assert.Contains("500", first.Error, StringComparison.Ordinal);
                Assert.True(first.FinishedAt >= first.StartedAt && first.DurationMs >= 0);
            },
            second =>
            {
                Assert.Equal((2, 200, null), (second.Number, second.HttpStatus, second.Error));
                Assert.True(second.StartedAt >= delivery.Attempts[0].FinishedAt && second.DurationMs >= 0);
            });
    }

    /// <summary>With a 10-minute poll interval, only the NOTIFY sent at commit can wake an idle dispatcher within the
    /// test's patience (30 s). The first event warms it up; after it the dispatcher goes idle, and the second event
    /// must wake it.</summary>
    [Fact]
    public async Task Dispatcher_IdleWithTenMinutePollInterval_CommitWakesItThroughNotify()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        var tenant = await CreateTenantAsync();
        var (endpointId, _) = await CreateEndpointAsync(tenant, receiver.Url());
        var options = FastOptions();
        options.PollInterval = TimeSpan.FromMinutes(10);
        await StartDispatcherAsync(options);
        var first = await EnqueueAsync(tenant, WebhookEventTypes.InvoiceCreated, new { n = 1 });
        await WaitForDeliveryAsync(endpointId, d => d.EventId == first && d.Status == "delivered");
        await Task.Delay(500); // lets the round after the first delivery end, so that the dispatcher is asleep

        var second = await EnqueueAsync(tenant, WebhookEventTypes.InvoiceCreated, new { n = 2 });

        await WaitForDeliveryAsync(endpointId, d => d.EventId == second && d.Status == "delivered");
        Assert.Equal([first.ToString(), second.ToString()], receiver.Received.Select(r => r.EventId));
    }

    [Fact]
    public async Task EnqueueAsync_TransactionRolledBack_EventIsNeverSent()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        var tenant = await CreateTenantAsync();
        var (endpointId, _) = await CreateEndpointAsync(tenant, receiver.Url());
        await StartDispatcherAsync();

        var rolledBack = await EnqueueAsync(tenant, WebhookEventTypes.InvoiceCreated, new { n = 1 }, commit: false);
        var committed = await EnqueueAsync(tenant, WebhookEventTypes.InvoiceCreated, new { n = 2 });
        await WaitForDeliveryAsync(endpointId, d => d.EventId == committed && d.Status == "delivered");
        // One more round after the committed event, so that anything enqueued before it has had its chance.
        var last = await EnqueueAsync(tenant, WebhookEventTypes.InvoiceCreated, new { n = 3 });
        await WaitForDeliveryAsync(endpointId, d => d.EventId == last && d.Status == "delivered");

        Assert.Equal([committed.ToString(), last.ToString()], receiver.Received.Select(r => r.EventId));
        Assert.DoesNotContain(await DeliveriesAsync(endpointId), d => d.EventId == rolledBack);
        await using var command = _billing.DataSource.CreateCommand($"SELECT count(*) FROM webhook_events WHERE id = '{rolledBack}'");
        Assert.Equal(0L, await command.ExecuteScalarAsync());
    }

    [Fact]
    public async Task Dispatchers_TwoOnOneDatabase_DeliverEveryEventExactlyOnceToEachEndpoint()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Respond = async (_, ct) =>
        {
            await Task.Delay(5, ct); // keeps several attempts in flight on both dispatchers
            return 200;
        };
        var tenant = await CreateTenantAsync();
        await CreateEndpointAsync(tenant, receiver.Url("/a"));
        await CreateEndpointAsync(tenant, receiver.Url("/b"));
        var options = FastOptions();
        options.MaxConcurrentDeliveries = 4;
        await StartDispatcherAsync(options);
        await StartDispatcherAsync(options);

        const int Transactions = 20, PerTransaction = 10;
        var ids = (await Task.WhenAll(Enumerable.Range(0, Transactions).Select(async t =>
        {
            await using var connection = await _billing.DataSource.OpenConnectionAsync();
            await using var transaction = await connection.BeginTransactionAsync();
            var made = new List<Guid>();
            for (int i = 0; i < PerTransaction; i++)
                made.Add(await WebhookOutbox.EnqueueAsync(connection, tenant, WebhookEventTypes.InvoiceCreated, new { t, i }, default));
            await transaction.CommitAsync();
            return made;
        }))).SelectMany(m => m).ToHashSet();

        await using var delivered = _billing.DataSource.CreateCommand($"SELECT count(*) FROM webhook_deliveries WHERE tenant_id = '{tenant}' AND status = 'delivered'");
        Assert.True(await TestSupport.EventuallyAsync(async () => (long)(await delivered.ExecuteScalarAsync())! == 2 * Transactions * PerTransaction, Patience),
            $"{await delivered.ExecuteScalarAsync()} of {2 * Transactions * PerTransaction} deliveries delivered");

        var received = receiver.Received;
        Assert.Equal(2 * Transactions * PerTransaction, received.Count);
        foreach (var path in new[] { "/a", "/b" })
        {
            var events = received.Where(r => r.Path == path).Select(r => Guid.Parse(r.EventId!)).ToList();
            Assert.Equal(events.Count, events.Distinct().Count());
            Assert.True(ids.SetEquals(events), $"{path} did not get exactly the enqueued events");
        }
        await using var attempts = _billing.DataSource.CreateCommand(
            $"SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.tenant_id = '{tenant}'");
        Assert.Equal((long)received.Count, await attempts.ExecuteScalarAsync());
    }

    [Fact]
    public async Task FanOut_EndpointsSubscribedToOtherTypes_GetOnlyTheirTypes()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        var tenant = await CreateTenantAsync();
        var other = await CreateTenantAsync();
        var (invoices, _) = await CreateEndpointAsync(tenant, receiver.Url("/invoices"), WebhookEventTypes.InvoiceCreated, WebhookEventTypes.InvoiceVoided);
        var (everything, _) = await CreateEndpointAsync(tenant, receiver.Url("/everything"));
        var (credits, _) = await CreateEndpointAsync(tenant, receiver.Url("/credits"), WebhookEventTypes.CreditNoteCreated);
        var (deleted, _) = await CreateEndpointAsync(tenant, receiver.Url("/deleted"));
        await CreateEndpointAsync(other, receiver.Url("/other-tenant"));
        Assert.NotNull(await _store.DeleteEndpointAsync(tenant, deleted, default));
        await StartDispatcherAsync();

        var created = await EnqueueAsync(tenant, WebhookEventTypes.InvoiceCreated, new { });
        var threshold = await EnqueueAsync(tenant, WebhookEventTypes.EntitlementThresholdReached, new { percent = 80 });
        var voided = await EnqueueAsync(tenant, WebhookEventTypes.InvoiceVoided, new { });
        await WaitForDeliveryAsync(everything, d => d.EventId == voided && d.Status == "delivered");
        await WaitForDeliveryAsync(invoices, d => d.EventId == voided && d.Status == "delivered");

        string Got(string path) => string.Join(",", receiver.Received.Where(r => r.Path == path).Select(r => r.EventId).Order(StringComparer.Ordinal));
        Assert.Equal(string.Join(",", new[] { created, voided }.Select(g => g.ToString()).Order(StringComparer.Ordinal)), Got("/invoices"));
        Assert.Equal(string.Join(",", new[] { created, threshold, voided }.Select(g => g.ToString()).Order(StringComparer.Ordinal)), Got("/everything"));
        Assert.Equal("", Got("/credits"));
        Assert.Equal("", Got("/deleted"));
        Assert.Equal("", Got("/other-tenant"));
        Assert.Empty(await DeliveriesAsync(credits));
        Assert.Equal(5, receiver.Received.Count);
    }

    [Fact]
    public async Task Dispatcher_ReceiverAlwaysFails_StopsRetryingAfterMaxAgeAndMarksFailed()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Respond = (_, _) => Task.FromResult(503);
        var tenant = await CreateTenantAsync();
        var (endpointId, _) = await CreateEndpointAsync(tenant, receiver.Url());
        var options = FastOptions();
        options.MaxAge = TimeSpan.FromSeconds(2);
        await StartDispatcherAsync(options);

        await EnqueueAsync(tenant, WebhookEventTypes.CreditNoteCreated, new { creditNoteId = "cn_1" });
        var failed = await WaitForDeliveryAsync(endpointId, d => d.Status == "failed");

        Assert.True(failed.AttemptCount >= 2, $"only {failed.AttemptCount} attempt(s) before giving up");
        Assert.Equal(Enumerable.Range(1, failed.AttemptCount), failed.Attempts.Select(a => a.Number));
        Assert.All(failed.Attempts, a => Assert.Equal(503, a.HttpStatus));
        Assert.Equal(failed.AttemptCount, receiver.Received.Count);
        Assert.Null(failed.NextAttemptAt);
        Assert.True(failed.CompletedAt >= failed.CreatedAt + options.MaxAge, $"gave up at {failed.CompletedAt:O}, before the max age");
        // Nothing is due any more: another dispatcher finds nothing to claim.
        Assert.Empty(await NewDispatcher(options).ClaimAsync(10, default));
    }

    [Fact]
    public async Task Dispatcher_ReceiverSlowerThanAttemptTimeout_RecordsTimeoutThenDelivers()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Respond = async (request, ct) =>
        {
            if (request.Attempt == 1)
                await Task.Delay(TimeSpan.FromSeconds(20), ct); // the dispatcher hangs up at its 300 ms timeout
            return 200;
        };
        var tenant = await CreateTenantAsync();
        var (endpointId, _) = await CreateEndpointAsync(tenant, receiver.Url());
        var options = FastOptions();
        options.AttemptTimeout = TimeSpan.FromMilliseconds(300);
        await StartDispatcherAsync(options);

        await EnqueueAsync(tenant, WebhookEventTypes.InvoiceCreated, new { });
        var delivery = await WaitForDeliveryAsync(endpointId, d => d.Status == "delivered");

        Assert.Equal(2, delivery.AttemptCount);
        Assert.Null(delivery.Attempts[0].HttpStatus);
        Assert.Contains("timeout", delivery.Attempts[0].Error, StringComparison.Ordinal);
        Assert.Equal(200, delivery.Attempts[1].HttpStatus);
    }

    [Fact]
    public async Task Dispatcher_ReceiverRefusesConnections_RecordsTheErrorAndRetries()
    {
        var tenant = await CreateTenantAsync();
        WebhookReceiver receiver = await WebhookReceiver.StartAsync();
        var url = receiver.Url();
        await receiver.DisposeAsync(); // nothing listens there now
        var (endpointId, _) = await CreateEndpointAsync(tenant, url);
        await StartDispatcherAsync();

        await EnqueueAsync(tenant, WebhookEventTypes.InvoiceCreated, new { });
        var delivery = await WaitForDeliveryAsync(endpointId, d => d.AttemptCount >= 2 && d.Attempts.Count >= 1 && d.Attempts[0].FinishedAt is not null);

        Assert.Equal("pending", delivery.Status);
        Assert.Null(delivery.Attempts[0].HttpStatus);
        Assert.False(string.IsNullOrEmpty(delivery.Attempts[0].Error));
    }

    /// <summary>A dispatcher claims an attempt and dies before it sends (the claim is taken, nothing else happens).
    /// Once the claim's lease ends, another dispatcher sends the same delivery, records the lost attempt as interrupted
    /// and carries on with the next number: nothing lost, nothing invented.</summary>
    [Fact]
    public async Task Dispatcher_AnotherDiedDuringAnAttempt_SendsItAfterTheLeaseAndRecordsTheInterruption()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        var tenant = await CreateTenantAsync();
        var (endpointId, _) = await CreateEndpointAsync(tenant, receiver.Url());
        var eventId = await EnqueueAsync(tenant, WebhookEventTypes.InvoiceCreated, new { });
        var crashed = NewDispatcher();
        await crashed.FanOutAsync(default);
        var claim = Assert.Single(await crashed.ClaimAsync(10, default));
        Assert.Equal((eventId, 1), (claim.EventId, claim.Attempt));

        // Leased: a second dispatcher finds nothing to take while the claim runs.
        Assert.Empty(await NewDispatcher().ClaimAsync(10, default));
        // The lease ends (attempt timeout + 15 s in real time; moved here instead of waiting).
        await using (var expire = _billing.DataSource.CreateCommand($"UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id = '{claim.DeliveryId}'"))
            await expire.ExecuteNonQueryAsync();
        await StartDispatcherAsync();
        var delivery = await WaitForDeliveryAsync(endpointId, d => d.Status == "delivered");

        Assert.Equal(eventId.ToString(), Assert.Single(receiver.Received).EventId);
        Assert.Equal(2, delivery.AttemptCount);
        Assert.Contains("interrupted", delivery.Attempts[0].Error, StringComparison.Ordinal);
        Assert.Null(delivery.Attempts[0].HttpStatus);
        Assert.NotNull(delivery.Attempts[0].FinishedAt);
        Assert.Equal(200, delivery.Attempts[1].HttpStatus);
    }

    [Fact]
    public async Task Dispatcher_RestartedAfterAFailedAttempt_ContinuesTheStoredSchedule()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Respond = (_, _) => Task.FromResult(500);
        var tenant = await CreateTenantAsync();
        var (endpointId, _) = await CreateEndpointAsync(tenant, receiver.Url());
        var options = FastOptions();
        options.FirstRetryDelay = options.MaxRetryDelay = TimeSpan.FromSeconds(1);
        var first = await StartDispatcherAsync(options);
        await EnqueueAsync(tenant, WebhookEventTypes.InvoiceCreated, new { });
        await WaitForDeliveryAsync(endpointId, d => d.Attempts.Count >= 1 && d.Attempts[0].FinishedAt is not null);
        await first.StopAsync(default);
        var stored = Assert.Single(await DeliveriesAsync(endpointId));

        receiver.Respond = (_, _) => Task.FromResult(200);
        await StartDispatcherAsync(options);
        var delivery = await WaitForDeliveryAsync(endpointId, d => d.Status == "delivered");

        Assert.Equal(("pending", 1), (stored.Status, stored.AttemptCount));
        Assert.NotNull(stored.NextAttemptAt);
        Assert.Equal([500, 200], delivery.Attempts.Select(a => a.HttpStatus ?? 0));
        Assert.True(delivery.Attempts[1].StartedAt >= stored.NextAttemptAt, "the restarted dispatcher sent before the stored retry time");
        Assert.Equal(2, receiver.Received.Count);
    }

    [Fact]
    public async Task DeleteEndpointAsync_PendingDelivery_IsCanceledAndNotRetried()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Respond = (_, _) => Task.FromResult(500);
        var tenant = await CreateTenantAsync();
        var (endpointId, _) = await CreateEndpointAsync(tenant, receiver.Url());
        var options = FastOptions();
        options.FirstRetryDelay = options.MaxRetryDelay = TimeSpan.FromHours(1);
        await StartDispatcherAsync(options);
        await EnqueueAsync(tenant, WebhookEventTypes.InvoiceCreated, new { });
        await WaitForDeliveryAsync(endpointId, d => d.Attempts.Count == 1 && d.Attempts[0].FinishedAt is not null);

        Assert.Null(await _store.DeleteEndpointAsync("another-tenant", endpointId, default));
        Assert.NotNull(await _store.DeleteEndpointAsync(tenant, endpointId, default));

        var delivery = Assert.Single(await DeliveriesAsync(endpointId));
        Assert.Equal("canceled", delivery.Status);
        Assert.Null(delivery.NextAttemptAt);
        Assert.Null(await _store.GetEndpointAsync(tenant, endpointId, default));
    }

    [Fact]
    public async Task EnqueueAsync_UnknownEventType_ThrowsAndWritesNothing()
    {
        var tenant = await CreateTenantAsync();
        await using var connection = await _billing.DataSource.OpenConnectionAsync();

        var error = await Assert.ThrowsAsync<ArgumentException>(() => WebhookOutbox.EnqueueAsync(connection, tenant, "invoice.paid", new { }, default));

        Assert.Contains("invoice.paid", error.Message, StringComparison.Ordinal);
        await using var command = new Npgsql.NpgsqlCommand($"SELECT count(*) FROM webhook_events WHERE tenant_id = '{tenant}'", connection);
        Assert.Equal(0L, await command.ExecuteScalarAsync());
    }

    /// <summary>The schedule against Polly's documented definition of its decorrelated-jitter backoff: retry n comes at
    /// a median of about FirstRetryDelay x 2^(n-1) after the first attempt. Over many delivery ids: those medians, one
    /// schedule per delivery (the same id gives the same delays: a restart does not re-draw them), jitter between
    /// deliveries, and the cap.</summary>
    [Fact]
    public void RetryDelay_ManyDeliveries_RetryTimesDoubleAreJitteredAndCapped()
    {
        var options = new WebhookOptions { FirstRetryDelay = TimeSpan.FromSeconds(1), MaxRetryDelay = TimeSpan.FromSeconds(1000) };
        var dispatcher = NewDispatcher(options);
        var ids = Enumerable.Range(0, 2001).Select(_ => Guid.NewGuid()).ToList();
        for (int retry = 1; retry <= 8; retry++)
        {
            var retryTimes = ids.Select(id => Enumerable.Range(1, retry).Sum(n => dispatcher.RetryDelay(id, n).TotalSeconds)).Order().ToList();
            double median = retryTimes[1000], expected = Math.Pow(2, retry - 1);
            Assert.InRange(median, expected * 0.75, expected * 1.33);
            Assert.True(retryTimes.Distinct().Count() > 1900, $"retry {retry}: too little jitter");
        }
        Assert.All(ids.Take(50), id => Assert.Equal(
            Enumerable.Range(1, 10).Select(n => dispatcher.RetryDelay(id, n)),
            Enumerable.Range(1, 10).Select(n => NewDispatcher(options).RetryDelay(id, n))));

        options.MaxRetryDelay = TimeSpan.FromSeconds(30);
        var capped = NewDispatcher(options);
        var late = ids.Select(id => capped.RetryDelay(id, 12)).ToList();
        Assert.All(late, d => Assert.True(d <= options.MaxRetryDelay));
        Assert.Contains(options.MaxRetryDelay, late);
    }
}
