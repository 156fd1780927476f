using System.Diagnostics;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Polly;
using Polly.Contrib.WaitAndRetry;
using Polly.Timeout;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>One attempt a dispatcher has claimed: what to send, where, and which attempt of the delivery it is.</summary>
internal sealed record WebhookClaim(Guid DeliveryId, Guid EventId, string EventType, int Attempt, string Url, string Secret, string Payload);

/// <summary>
/// Sends webhook events. Every round it fans committed outbox events out to the endpoints subscribed at that moment
/// (one delivery per event and endpoint), then claims due deliveries with <c>FOR UPDATE SKIP LOCKED</c> and sends
/// them, several at once. The whole schedule lives in PostgreSQL: a claim bumps the attempt number and moves
/// <c>next_attempt_at</c> past the attempt's timeout (a lease, so that no other server sends the same attempt while it
/// runs, and a crashed server's attempt is retried once the lease ends); the result sets the next attempt time from
/// Polly's exponential backoff with jitter, capped by the delivery's age limit. A restart therefore neither loses a
/// delivery nor sends one that was not due. Delivery is at least once: a receiver that answered 2xx just before a
/// crash can get the event again, with the same id.
/// </summary>
internal sealed class WebhookDispatcher : BackgroundService
{
    /// <summary>Events fanned out per round (more wait for the next round, which follows at once).</summary>
    private const int FanOutBatch = 500;

    /// <summary>A claim outlives its attempt's timeout by this much, for the time it takes to record the result.</summary>
    private static readonly TimeSpan LeaseMargin = TimeSpan.FromSeconds(15);

    private readonly BillingDatabase _database;
    private readonly WebhookOptions _options;
    private readonly ILogger _logger;
    private readonly HttpClient _http;
    private readonly ResiliencePipeline _attemptTimeout;
    private readonly SemaphoreSlim _slots;
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    public WebhookDispatcher(BillingDatabase database, IOptions<BillingOptions> options, ILogger<WebhookDispatcher> logger)
    {
        _database = database;
        _options = options.Value.Webhooks;
        _logger = logger;
        // Redirects are not followed: a receiver answers for itself (a 3xx is a failed attempt, like any non-2xx).
        // The attempt's timeout is Polly's, around the whole request.
        _http = new HttpClient(new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            UseCookies = false,
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        })
        { Timeout = Timeout.InfiniteTimeSpan };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd("AlphaMesh-Webhooks/1");
        _attemptTimeout = new ResiliencePipelineBuilder().AddTimeout(_options.AttemptTimeout).Build();
        _slots = new SemaphoreSlim(_options.MaxConcurrentDeliveries, _options.MaxConcurrentDeliveries);
    }

    /// <summary>Makes the dispatcher look for work now: a NOTIFY (an event committed on any server) or free slots.</summary>
    public void Wake() => _wake.Writer.TryWrite(true);

    /// <summary>
    /// The wait before the retry after failed attempt <paramref name="attempt"/> (1-based) of a delivery: the
    /// attempt-th step of Polly's decorrelated-jitter exponential backoff (the retry after attempt n comes about
    /// FirstRetryDelay x 2^(n-1) after the first attempt, jittered), each step at most
    /// <see cref="WebhookOptions.MaxRetryDelay"/>. The jitter is seeded with the delivery id, so a delivery keeps one
    /// schedule however many servers or restarts take part in it, and different deliveries spread out.
    /// </summary>
    internal TimeSpan RetryDelay(Guid deliveryId, int attempt)
    {
        Span<int> words = stackalloc int[4];
        deliveryId.TryWriteBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(words));
        int seed = words[0] ^ words[1] ^ words[2] ^ words[3];
        var delay = Backoff.DecorrelatedJitterBackoffV2(_options.FirstRetryDelay, attempt, seed).ElementAt(attempt - 1);
        return delay < _options.MaxRetryDelay ? delay : _options.MaxRetryDelay;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!_options.DispatcherEnabled)
            return;
        var listening = ListenAsync(stoppingToken);
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                TimeSpan wait;
                try
                {
                    wait = await RunRoundAsync(stoppingToken);
                }
                catch (Exception e) when (e is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
                {
                    BillingLog.WebhookRoundFailed(_logger, e);
                    wait = _options.PollInterval;
                }
                if (wait > TimeSpan.Zero)
                    await WaitForWakeAsync(wait, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            // Let the attempts in flight finish (they see the stop and record themselves as interrupted).
            for (int i = 0; i < _options.MaxConcurrentDeliveries; i++)
                await _slots.WaitAsync(CancellationToken.None);
            await listening;
        }
    }

    /// <summary>Fans out, claims and starts what is due; returns how long to sleep (zero: go on at once).</summary>
    private async Task<TimeSpan> RunRoundAsync(CancellationToken stoppingToken)
    {
        bool moreEvents = await FanOutAsync(stoppingToken) == FanOutBatch;
        int free = _slots.CurrentCount;
        if (free == 0)
            return _options.PollInterval; // a finishing attempt wakes the loop
        var claims = await ClaimAsync(free, stoppingToken);
        foreach (var claim in claims)
        {
            await _slots.WaitAsync(stoppingToken);
            _ = Task.Run(() => DeliverAndReleaseAsync(claim, stoppingToken), CancellationToken.None);
        }
        if (moreEvents || claims.Count == free)
            return TimeSpan.Zero;
        // A delivery due now that this round did not get is being claimed by another server: look again shortly
        // rather than at once.
        var nextDue = await NextDueInAsync(stoppingToken);
        return nextDue is { } due && due < _options.PollInterval ? TimeSpan.FromMilliseconds(Math.Max(due.TotalMilliseconds, 20)) : _options.PollInterval;
    }

    private async Task WaitForWakeAsync(TimeSpan wait, CancellationToken stoppingToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        timeout.CancelAfter(wait);
        try
        {
            await _wake.Reader.WaitToReadAsync(timeout.Token);
        }
        catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested)
        {
            // waited long enough
        }
        _wake.Reader.TryRead(out _);
    }

    /// <summary>LISTENs on a connection of its own, so that an event committed on any server wakes this dispatcher.
    /// Polling covers the time while the connection is down.</summary>
    private async Task ListenAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var connection = await _database.DataSource.OpenConnectionAsync(stoppingToken);
                connection.Notification += (_, _) => Wake();
                await using (var listen = new NpgsqlCommand($"LISTEN {WebhookOutbox.Channel}", connection))
                    await listen.ExecuteNonQueryAsync(stoppingToken);
                Wake(); // events committed before LISTEN took effect
                while (true)
                    await connection.WaitAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                BillingLog.WebhookListenFailed(_logger, e);
                try
                {
                    await Task.Delay(_options.PollInterval, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>Creates the deliveries of committed events not fanned out yet, for the tenant's endpoints subscribed to
    /// the type now, and marks the events dispatched; two servers take different events (SKIP LOCKED). Returns the
    /// number of events handled.</summary>
    internal async Task<int> FanOutAsync(CancellationToken cancellationToken)
    {
        await using var command = _database.DataSource.CreateCommand("""
            WITH events AS (
                SELECT id, tenant_id, type FROM webhook_events WHERE dispatched_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED),
            deliveries AS (
                INSERT INTO webhook_deliveries (id, event_id, endpoint_id, tenant_id, status, next_attempt_at)
                SELECT gen_random_uuid(), e.id, p.id, e.tenant_id, 'pending', now()
                FROM events e JOIN webhook_endpoints p ON p.tenant_id = e.tenant_id AND p.deleted_at IS NULL
                    AND (e.type = ANY (p.event_types) OR '*' = ANY (p.event_types))
                ON CONFLICT (event_id, endpoint_id) DO NOTHING)
            UPDATE webhook_events SET dispatched_at = now() WHERE id IN (SELECT id FROM events)
            """);
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = FanOutBatch });
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Claims up to <paramref name="max"/> due deliveries: bumps each one's attempt number, leases it for the
    /// attempt's timeout plus a margin, closes an attempt a crash left open as interrupted and records the new attempt
    /// as started. One statement, so one round trip and one transaction.</summary>
    internal async Task<List<WebhookClaim>> ClaimAsync(int max, CancellationToken cancellationToken)
    {
        // The sub-statements share one snapshot: "closed" sees only attempts that were open before, never the ones
        // "started" inserts.
        await using var claim = _database.DataSource.CreateCommand("""
            WITH due AS (
                SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= now()
                ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED),
            claimed AS (
                UPDATE webhook_deliveries d SET attempt_count = d.attempt_count + 1, next_attempt_at = now() + $2
                FROM due WHERE d.id = due.id
                RETURNING d.id, d.event_id, d.endpoint_id, d.attempt_count),
            closed AS (
                UPDATE webhook_attempts a SET finished_at = now(), error = 'interrupted: the server sending it stopped before the receiver answered'
                FROM claimed c WHERE a.delivery_id = c.id AND a.finished_at IS NULL),
            started AS (
                INSERT INTO webhook_attempts (delivery_id, number) SELECT id, attempt_count FROM claimed)
            SELECT c.id, c.event_id, e.type, c.attempt_count, p.url, p.secret, e.payload
            FROM claimed c JOIN webhook_events e ON e.id = c.event_id JOIN webhook_endpoints p ON p.id = c.endpoint_id
            """);
        claim.Parameters.Add(new NpgsqlParameter<int> { TypedValue = max });
        claim.Parameters.Add(new NpgsqlParameter<TimeSpan> { TypedValue = _options.AttemptTimeout + LeaseMargin });
        var claims = new List<WebhookClaim>();
        await using var reader = await claim.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            claims.Add(new WebhookClaim(reader.GetGuid(0), reader.GetGuid(1), reader.GetString(2), reader.GetInt32(3), reader.GetString(4),
                reader.GetString(5), reader.GetString(6)));
        }
        return claims;
    }

    private async Task DeliverAndReleaseAsync(WebhookClaim claim, CancellationToken stoppingToken)
    {
        try
        {
            await DeliverAsync(claim, stoppingToken);
        }
        catch (Exception e)
        {
            // The claim's lease ends and the attempt is retried; nothing is lost.
            BillingLog.WebhookRecordFailed(_logger, claim.DeliveryId, e);
        }
        finally
        {
            // Wake the loop once half the slots are free (or the only one), so that under a backlog a round claims
            // several deliveries at once instead of one query round per finished attempt.
            if (_slots.Release() + 1 >= (_options.MaxConcurrentDeliveries + 1) / 2)
                Wake();
        }
    }

    /// <summary>Sends one claimed attempt and records its outcome and the delivery's next state.</summary>
    internal async Task DeliverAsync(WebhookClaim claim, CancellationToken stoppingToken)
    {
        var body = Encoding.UTF8.GetBytes(claim.Payload);
        int? status = null;
        string? error = null;
        bool interrupted = false;
        long started = Stopwatch.GetTimestamp();
        try
        {
            status = await _attemptTimeout.ExecuteAsync(static async (state, token) =>
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, state.Claim.Url) { Content = new ByteArrayContent(state.Body) };
                request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
                request.Headers.TryAddWithoutValidation(WebhookSignature.Header,
                    WebhookSignature.Sign(state.Claim.Secret, DateTimeOffset.UtcNow.ToUnixTimeSeconds(), state.Body));
                request.Headers.TryAddWithoutValidation("AlphaMesh-Event-Id", state.Claim.EventId.ToString());
                using var response = await state.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, token);
                return (int)response.StatusCode;
            }, (Http: _http, Claim: claim, Body: body), stoppingToken);
            if (status is < 200 or > 299)
                error = $"the receiver answered HTTP {status}";
        }
        catch (TimeoutRejectedException)
        {
            error = $"no answer within the attempt timeout ({_options.AttemptTimeout.TotalSeconds:0.###} s)";
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            interrupted = true;
            error = "interrupted: the server sending it stopped before the receiver answered";
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Refused, reset, DNS, TLS, a malformed answer: a failed attempt like a 5xx, so that it is recorded and the
            // delivery still ends at its max age.
            error = e.InnerException is { } inner ? $"{e.Message} ({inner.Message})" : e.Message;
        }
        double durationMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        bool delivered = error is null;
        // Record with no cancellation: a stop must not leave the attempt open when the result is known.
        await RecordAsync(claim, delivered, interrupted, status, error, durationMs, CancellationToken.None);
    }

    private async Task RecordAsync(WebhookClaim claim, bool delivered, bool interrupted, int? status, string? error, double durationMs,
        CancellationToken cancellationToken)
    {
        // An interrupted attempt is due again at once (another server may take it); a failed one waits its backoff.
        var retryDelay = delivered || interrupted ? TimeSpan.Zero : RetryDelay(claim.DeliveryId, claim.Attempt);
        await using var batch = _database.DataSource.CreateBatch();
        batch.BatchCommands.Add(new NpgsqlBatchCommand("""
            UPDATE webhook_attempts SET finished_at = now(), http_status = $3, error = $4, duration_ms = $5
            WHERE delivery_id = $1 AND number = $2 AND finished_at IS NULL
            """)
        {
            Parameters =
            {
                new NpgsqlParameter<Guid> { TypedValue = claim.DeliveryId },
                new NpgsqlParameter<int> { TypedValue = claim.Attempt },
                new NpgsqlParameter<int?> { TypedValue = status },
                new NpgsqlParameter<string?> { TypedValue = error },
                new NpgsqlParameter<double> { TypedValue = durationMs },
            },
        });
        // Only the claim's own attempt moves the delivery on (attempt_count still matches, still pending): a deleted
        // endpoint's canceled delivery stays canceled.
        batch.BatchCommands.Add(new NpgsqlBatchCommand("""
            UPDATE webhook_deliveries SET
                status = CASE WHEN $3 THEN 'delivered' WHEN now() >= created_at + $4 THEN 'failed' ELSE 'pending' END,
                next_attempt_at = CASE WHEN $3 OR now() >= created_at + $4 THEN NULL ELSE least(now() + $5, created_at + $4) END,
                completed_at = CASE WHEN $3 OR now() >= created_at + $4 THEN now() END
            WHERE id = $1 AND attempt_count = $2 AND status = 'pending'
            RETURNING status
            """)
        {
            Parameters =
            {
                new NpgsqlParameter<Guid> { TypedValue = claim.DeliveryId },
                new NpgsqlParameter<int> { TypedValue = claim.Attempt },
                new NpgsqlParameter<bool> { TypedValue = delivered },
                new NpgsqlParameter<TimeSpan> { TypedValue = _options.MaxAge },
                new NpgsqlParameter<TimeSpan> { TypedValue = retryDelay },
            },
        });
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        if (await reader.ReadAsync(cancellationToken) && reader.GetString(0) == "failed")
            BillingLog.WebhookGaveUp(_logger, claim.DeliveryId, claim.EventId, claim.Attempt, error ?? "");
    }

    /// <summary>How long until the earliest pending delivery is due (zero or less: now); null when none is pending.</summary>
    private async Task<TimeSpan?> NextDueInAsync(CancellationToken cancellationToken)
    {
        await using var command = _database.DataSource.CreateCommand(
            "SELECT min(next_attempt_at) - now() FROM webhook_deliveries WHERE status = 'pending'");
        var value = await command.ExecuteScalarAsync(cancellationToken);
        return value is TimeSpan due ? (due > TimeSpan.Zero ? due : TimeSpan.Zero) : null;
    }

    public override void Dispose()
    {
        base.Dispose();
        _http.Dispose();
        _slots.Dispose();
    }
}
