using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using AlphaMesh.Rating;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>A line ready to store: the rating library's line in the form of an <c>invoice_lines</c> row.</summary>
internal sealed record PendingLine(string Kind, string Code, string? Meter, string PlanCode, int PlanVersion, decimal Quantity,
    DateOnly ServiceFrom, DateOnly ServiceTo, decimal ExactAmount, decimal Amount, string Description, string TiersJson, string? AdjustsInvoice);

/// <summary>What a billing run did.</summary>
internal sealed record BillingRunResult(int Subscriptions, int Created, int Recalculated, int Finalized, IReadOnlyList<string> InvoiceIds,
    IReadOnlyList<(string Subscription, string Message)> Failures, TimeSpan Elapsed, BillingRunTimings Timings);

/// <summary>
/// Turns subscriptions into invoices. For each subscription it works out every billing date up to the run's "as of"
/// time (its start when the plan has in-advance fees, each period's end, each mid-period plan change, a mid-period
/// end) and makes the invoice of each date, a chunk of subscriptions per transaction. The unique key (subscription,
/// billing date) makes a run idempotent: running it twice, or on two servers at once, finds the invoice and creates
/// nothing. A draft (inside the tenant's grace period) is recalculated on every run, so late usage lands in it, and
/// finalized once the grace period is over; an invoice already past it when made is inserted final. Either way it is
/// numbered from the tenant's counter in the transaction that makes it final, so numbers have no gaps.
/// Late usage of a period whose invoice is already final is billed on the next invoice as adjustment lines.
/// </summary>
internal sealed class BillingEngine(BillingDatabase database, IBillingUsageSource usage, IOptions<BillingOptions> options, ILogger<BillingEngine> logger)
{
    private enum ItemKind
    {
        SubscriptionStart,
        PeriodEnd,
        PlanChange,
        SubscriptionEnd,
    }

    /// <summary>One invoice to make: its billing date, and the period it closes (or falls in).</summary>
    private readonly record struct Item(ItemKind Kind, DateOnly Date, BillingPeriod Period);


    /// <summary>What one run shares: the tenant's settings, and the usage it read (by meter and range, for every
    /// customer at once: one aggregator query for all subscriptions that share a period).</summary>
    private sealed class RunContext(string tenant, DateTimeOffset asOf, BillingSettingsRow settings)
    {
        public string Tenant { get; } = tenant;
        public DateTimeOffset AsOf { get; } = asOf;
        public DateOnly AsOfDay { get; } = DateOnly.FromDateTime(asOf.UtcDateTime);
        public BillingSettingsRow Settings { get; } = settings;
        public ConcurrentDictionary<(string Meter, DateOnly From, DateOnly To), Lazy<Task<IReadOnlyDictionary<string, ChargeUsage>>>> Usage { get; } = new();
        public BillingRunTimings Timings { get; } = new();
    }

    /// <summary>Bills every subscription of the tenant (or one) as of <paramref name="asOf"/>.</summary>
    public async Task<BillingRunResult> RunAsync(string tenant, DateTimeOffset asOf, string? onlySubscription, CancellationToken cancellationToken)
    {
        long started = Stopwatch.GetTimestamp();
        List<string> ids;
        BillingSettingsRow settings;
        await using (var connection = await database.DataSource.OpenConnectionAsync(cancellationToken))
        {
            settings = await CatalogStore.GetSettingsAsync(connection, tenant, cancellationToken);
            await using var list = CatalogStore.Command(connection,
                "SELECT id FROM subscriptions WHERE tenant_id = $1 AND ($2::text IS NULL OR id = $2) AND start_date <= $3 ORDER BY id",
                tenant, onlySubscription, DateOnly.FromDateTime(asOf.UtcDateTime));
            ids = await CatalogStore.ReadAllAsync(list, r => r.GetString(0), cancellationToken);
        }

        var run = new RunContext(tenant, asOf, settings);
        run.Timings.Add(BillingPhase.Read, started);
        int created = 0, recalculated = 0, finalized = 0;
        var invoiceIds = new List<string>();
        var failures = new List<(string, string)>();
        var gate = new object();
        await Parallel.ForEachAsync(ids.Chunk(options.Value.BillingRunChunkSize), new ParallelOptions { MaxDegreeOfParallelism = options.Value.BillingRunParallelism, CancellationToken = cancellationToken },
            async (chunk, ct) =>
            {
                var outcome = await BillChunkAsync(run, chunk, ct);
                lock (gate)
                {
                    created += outcome.Created;
                    recalculated += outcome.Recalculated;
                    finalized += outcome.FinalizedIds.Count;
                    invoiceIds.AddRange(outcome.Touched);
                    failures.AddRange(outcome.Failures);
                }
            });
        finalized += await FinalizeDueAsync(tenant, asOf, run.Timings, cancellationToken);
        invoiceIds.Sort(StringComparer.Ordinal);
        failures.Sort((a, b) => string.CompareOrdinal(a.Item1, b.Item1));
        var elapsed = Stopwatch.GetElapsedTime(started);
        if (created + recalculated + finalized + failures.Count > 0)
            BillingLog.BillingRunPhases(logger, tenant, ids.Count, created, recalculated, finalized, failures.Count, elapsed.TotalSeconds, run.Timings);
        return new BillingRunResult(ids.Count, created, recalculated, finalized, invoiceIds, failures, elapsed, run.Timings);
    }

    private sealed class ChunkOutcome
    {
        public int Created;
        public int Recalculated;
        public List<string> Touched { get; } = [];
        public List<string> CreatedIds { get; } = [];
        public List<string> FinalizedIds { get; } = [];
        public List<(string, string)> Failures { get; } = [];
    }

    /// <summary>A usage or adjustment line already stored, as the late-usage comparison needs it.</summary>
    private sealed record BilledLine(string SubscriptionId, string InvoiceId, string Status, DateOnly BillingDate, BillingPeriod Period, string Kind,
        PhaseRow Range, string Meter, decimal Quantity, string? AdjustsInvoice);

    private async Task<ChunkOutcome> BillChunkAsync(RunContext run, string[] ids, CancellationToken cancellationToken)
    {
        var outcome = new ChunkOutcome();
        string tenant = run.Tenant;
        long step = Stopwatch.GetTimestamp();
        await using var connection = await database.DataSource.OpenConnectionAsync(cancellationToken);
        var subscriptions = await CatalogStore.LoadSubscriptionsAsync(connection, tenant, ids, cancellationToken);
        var existing = new Dictionary<(string, DateOnly), (string Id, string Status)>();
        await using (var invoices = CatalogStore.Command(connection,
            "SELECT subscription_id, billing_date, id, status FROM invoices WHERE tenant_id = $1 AND subscription_id = ANY($2)", tenant, ids))
        {
            foreach (var row in await CatalogStore.ReadAllAsync(invoices, r => (r.GetString(0), r.GetFieldValue<DateOnly>(1), r.GetString(2), r.GetString(3)), cancellationToken))
                existing[(row.Item1, row.Item2)] = (row.Item3, row.Item4);
        }

        // Only what is not final yet: a run with nothing due costs two queries per chunk.
        var due = new List<(SubscriptionRow Subscription, Dictionary<PhaseRow, PlanVersion> Plans, List<Item> Items)>();
        foreach (var subscription in subscriptions)
        {
            var plans = new Dictionary<PhaseRow, PlanVersion>();
            foreach (var phase in subscription.Phases)
                plans[phase] = await BillingPlans.PhasePlanAsync(connection, tenant, phase, cancellationToken);
            var items = Schedule(subscription, plans, run.AsOfDay)
                .Where(i => !existing.TryGetValue((subscription.Id, i.Date), out var e) || e.Status == "draft").ToList();
            if (items.Count > 0)
                due.Add((subscription, plans, items));
        }
        if (due.Count == 0)
        {
            run.Timings.Add(BillingPhase.Read, step);
            return outcome;
        }

        var billed = await BilledLinesAsync(connection, tenant, due.SelectMany(d => d.Items.Select(i => Since(i))).Min(), [.. due.Select(d => d.Subscription.Id)], cancellationToken);
        run.Timings.Add(BillingPhase.Read, step);
        step = Stopwatch.GetTimestamp();

        // First every invoice of the chunk is worked out in memory: reading usage and rating is what can fail for one
        // subscription (its usage cannot be totalled), and then nothing of it is written and the others go on.
        var planned = new List<PlannedInvoice>();
        foreach (var (subscription, plans, items) in due)
        {
            var mine = new List<PlannedInvoice>();
            var added = new List<BilledLine>();
            try
            {
                foreach (var item in items)
                {
                    string? draft = existing.TryGetValue((subscription.Id, item.Date), out var e) ? e.Id : null;
                    string invoiceId = draft ?? "inv_" + Guid.CreateVersion7().ToString("N");
                    var lines = await LinesAsync(run, subscription, plans, item, invoiceId, billed.Concat(added), connection, cancellationToken);
                    mine.Add(new PlannedInvoice(subscription, item, invoiceId, draft is not null, plans[subscription.Phases[0]].CurrencyCode, lines));
                    added.AddRange(lines.Where(l => l.AdjustsInvoice is not null).Select(l => new BilledLine(subscription.Id, invoiceId, "draft", item.Date, item.Period,
                        l.Kind, new PhaseRow(0, l.PlanCode, l.PlanVersion, l.ServiceFrom, l.ServiceTo), l.Meter!, l.Quantity, l.AdjustsInvoice)));
                }
            }
            catch (Exception e) when (e is BillingUsageException or PlanValidationException or ArgumentException)
            {
                logger.LogWarning("Billing subscription {Subscription} of tenant {Tenant} failed: {Message}", subscription.Id, tenant, e.Message);
                outcome.Failures.Add((subscription.Id, e.Message));
                continue;
            }
            planned.AddRange(mine);
            billed.AddRange(added);
        }

        // Usage waits inside the loop were moved out of rating as they happened (QuantitiesAsync).
        run.Timings.Add(BillingPhase.Rating, step);

        // Then written in one transaction with a handful of statements for the whole chunk.
        step = Stopwatch.GetTimestamp();
        // Lock order, here and wherever invoices are numbered: the tenant's number counter first, then invoice rows. The
        // lines of the new invoices go in before the counter is taken (their foreign key is checked at commit): the
        // counter serializes the chunks of a tenant until they commit, so as little as possible happens after it.
        // Every chunk that writes takes it, even one with nothing to number: a chunk of drafts alone that ran beside a
        // numbering chunk could lock a draft row out of the insert's key order and deadlock with it.
        if (planned.Count == 0)
        {
            run.Timings.Add(BillingPhase.Writes, step);
            return outcome;
        }
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var fresh = planned.Where(p => !p.IsDraft).ToList();
        if (fresh.Count > 0)
        {
            await using var defer = CatalogStore.Command(connection, "SET CONSTRAINTS invoice_lines_tenant_id_invoice_id_fkey DEFERRED");
            await defer.ExecuteNonQueryAsync(cancellationToken);
            await InsertLinesAsync(connection, tenant, fresh, cancellationToken);
        }
        long lastNumber = await LockNumberCounterAsync(connection, tenant, cancellationToken);
        var written = new List<PlannedInvoice>();
        foreach (var draft in planned.Where(p => p.IsDraft))
        {
            // Another run may have finalized it since it was read: only a draft is recalculated.
            if (await LockInvoiceAsync(connection, tenant, draft.Subscription.Id, draft.Item.Date, cancellationToken) is not { Status: "draft" })
                continue;
            await using (var clear = CatalogStore.Command(connection, "DELETE FROM invoice_lines WHERE tenant_id = $1 AND invoice_id = $2", tenant, draft.InvoiceId))
                await clear.ExecuteNonQueryAsync(cancellationToken);
            await using (var update = CatalogStore.Command(connection, "UPDATE invoices SET total = $3 WHERE tenant_id = $1 AND id = $2", tenant, draft.InvoiceId, draft.Total))
                await update.ExecuteNonQueryAsync(cancellationToken);
            written.Add(draft);
            outcome.Recalculated++;
        }
        await InsertLinesAsync(connection, tenant, written, cancellationToken);
        var claimed = await ClaimAsync(connection, transaction, run, fresh, lastNumber, cancellationToken);
        var skipped = new List<string>();
        foreach (var invoice in fresh)
        {
            if (!claimed.TryGetValue(invoice.InvoiceId, out bool final))
            {
                skipped.Add(invoice.InvoiceId);
                continue;
            }
            written.Add(invoice);
            outcome.CreatedIds.Add(invoice.InvoiceId);
            outcome.Created++;
            if (final)
                outcome.FinalizedIds.Add(invoice.InvoiceId);
        }
        if (skipped.Count > 0)
        {
            // A concurrent run made these meanwhile: their lines (under ids only this chunk knows) go again.
            await using var orphans = CatalogStore.Command(connection, "DELETE FROM invoice_lines WHERE tenant_id = $1 AND invoice_id = ANY($2)", tenant, skipped.ToArray());
            await orphans.ExecuteNonQueryAsync(cancellationToken);
        }
        long outbox = Stopwatch.GetTimestamp();
        // An invoice made final as it was inserted raises both events; each carries the invoice as it is now.
        await InvoiceEvents.PublishAsync(connection, tenant, WebhookEventTypes.InvoiceCreated, outcome.CreatedIds, cancellationToken);
        await InvoiceEvents.PublishAsync(connection, tenant, WebhookEventTypes.InvoiceFinalized, outcome.FinalizedIds, cancellationToken);
        run.Timings.Move(BillingPhase.Writes, run.Timings.Add(BillingPhase.Outbox, outbox));
        await transaction.CommitAsync(cancellationToken);
        run.Timings.Add(BillingPhase.Writes, step);
        outcome.Touched.AddRange(written.Select(w => w.InvoiceId));
        return outcome;
    }

    /// <summary>An invoice worked out and ready to write: a new one, or a draft to recalculate.</summary>
    private sealed record PlannedInvoice(SubscriptionRow Subscription, Item Item, string InvoiceId, bool IsDraft, string Currency, List<PendingLine> Lines)
    {
        public decimal Total { get; } = Lines.Sum(l => l.Amount);
    }

    /// <summary>
    /// Inserts the new invoices in one statement and returns the ids it inserted, each with whether it was inserted
    /// final. An invoice whose (subscription, billing date) exists already is left out: a concurrent run waits here on
    /// the other's uncommitted row, then skips it.
    /// </summary>
    /// <remarks>
    /// An invoice whose grace period is over by the run's "as of" time (always, with the default grace period of 0) is
    /// inserted final and numbered, rather than inserted as a draft and rewritten by <see cref="FinalizeDueAsync"/>:
    /// that second pass made a new version of every row and of its index entries. The numbers follow
    /// <paramref name="lastNumber"/>, read under the tenant's counter row lock, which this transaction holds to its commit,
    /// so they have no gaps: a rolled-back chunk rolls its numbers back, and the chunks of a tenant number one after
    /// another. An invoice that a concurrent run made meanwhile would leave a gap (its number was given out), so then the
    /// insert is undone to a savepoint and done again without it.
    /// </remarks>
    private static async Task<Dictionary<string, bool>> ClaimAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, RunContext run,
        List<PlannedInvoice> invoices, long lastNumber, CancellationToken cancellationToken)
    {
        string tenant = run.Tenant;
        int graceDays = run.Settings.GracePeriodDays;
        bool[] final = [.. invoices.Select(i => IsFinalOnInsert(run, i.Item))];
        while (true)
        {
            if (invoices.Count == 0)
                return [];
            int finals = final.Count(f => f);
            if (finals > 0)
                await transaction.SaveAsync("claim", cancellationToken);
            // Numbered in billing-date order within the chunk, as FinalizeDueAsync numbers drafts.
            await using var claim = CatalogStore.Command(connection, """
                INSERT INTO invoices (tenant_id, id, subscription_id, customer_id, billing_date, reason, period_start, period_end, currency, status, total,
                                      finalize_after, number, finalized_at)
                SELECT $1, u.id, u.subscription_id, u.customer_id, u.billing_date, u.reason, u.period_start, u.period_end, u.currency,
                       CASE WHEN u.final THEN 'finalized' ELSE 'draft' END, u.total, u.finalize_after,
                       CASE WHEN u.final THEN $13 + count(*) FILTER (WHERE u.final) OVER (ORDER BY u.billing_date, u.subscription_id) END,
                       CASE WHEN u.final THEN $14::timestamptz END
                FROM unnest($2::text[], $3::text[], $4::text[], $5::date[], $6::text[], $7::date[], $8::date[], $9::text[], $10::numeric[], $11::timestamptz[], $12::boolean[])
                     AS u(id, subscription_id, customer_id, billing_date, reason, period_start, period_end, currency, total, finalize_after, final)
                ORDER BY u.subscription_id, u.billing_date
                ON CONFLICT (tenant_id, subscription_id, billing_date) DO NOTHING
                RETURNING id, status = 'finalized'
                """, tenant,
                invoices.Select(i => i.InvoiceId).ToArray(), invoices.Select(i => i.Subscription.Id).ToArray(), invoices.Select(i => i.Subscription.CustomerId).ToArray(),
                invoices.Select(i => i.Item.Date).ToArray(), invoices.Select(i => Reason(i.Item.Kind)).ToArray(), invoices.Select(i => i.Item.Period.Start).ToArray(),
                invoices.Select(i => i.Item.Period.End).ToArray(), invoices.Select(i => i.Currency).ToArray(), invoices.Select(i => i.Total).ToArray(),
                invoices.Select(i => Midnight(i.Item.Date).AddDays(graceDays).UtcDateTime).ToArray(), final, lastNumber, run.AsOf.UtcDateTime);
            var inserted = (await CatalogStore.ReadAllAsync(claim, r => (Id: r.GetString(0), Final: r.GetBoolean(1)), cancellationToken))
                .ToDictionary(r => r.Id, r => r.Final);
            int numbered = inserted.Count(r => r.Value);
            if (numbered == finals)
            {
                if (finals > 0)
                {
                    await using var advance = CatalogStore.Command(connection,
                        "UPDATE invoice_number_counters SET last_number = $2 WHERE tenant_id = $1", tenant, lastNumber + finals);
                    await advance.ExecuteNonQueryAsync(cancellationToken);
                }
                return inserted;
            }
            await transaction.RollbackAsync("claim", cancellationToken);
            final = [.. final.Where((_, n) => inserted.ContainsKey(invoices[n].InvoiceId))];
            invoices = [.. invoices.Where(i => inserted.ContainsKey(i.InvoiceId))];
        }
    }

    /// <summary>Whether a new invoice of <paramref name="item"/> is past its grace period at the run's "as of" time, so
    /// that it is inserted final (what <see cref="FinalizeDueAsync"/> would otherwise do to it at the end of the run).</summary>
    private static bool IsFinalOnInsert(RunContext run, Item item) => Midnight(item.Date).AddDays(run.Settings.GracePeriodDays) <= run.AsOf;

    /// <summary>
    /// Takes the row lock of the tenant's invoice-number counter (creating it at 0) until the transaction ends, and
    /// returns its last number. Whatever numbers invoices takes this lock before it locks any invoice row, so that two
    /// of them can never wait on each other.
    /// </summary>
    public static async Task<long> LockNumberCounterAsync(NpgsqlConnection connection, string tenant, CancellationToken cancellationToken)
    {
        await using var counter = CatalogStore.Command(connection, """
            INSERT INTO invoice_number_counters (tenant_id, last_number) VALUES ($1, 0)
            ON CONFLICT (tenant_id) DO UPDATE SET last_number = invoice_number_counters.last_number RETURNING last_number
            """, tenant);
        return (long)(await counter.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>How far back a billing date's late-usage comparison looks: one period plus the late-usage window.</summary>
    private DateOnly Since(Item item) => item.Date.AddDays(-(item.Period.Days + (int)Math.Ceiling(options.Value.LateUsageWindow.TotalDays)));

    /// <summary>The usage and adjustment lines of the subscriptions' invoices (not void) whose range ends after <paramref name="since"/>.</summary>
    /// <remarks>The lines are read invoice by invoice (LATERAL, by the lines' primary key; OFFSET 0 keeps the planner
    /// from flattening the subquery into a plain join again): left to choose, the planner scanned every usage line of the
    /// tenant for each chunk once the tables had grown past their statistics, which made a run quadratic in its size.</remarks>
    private static async Task<List<BilledLine>> BilledLinesAsync(NpgsqlConnection connection, string tenant, DateOnly since, string[] subscriptions,
        CancellationToken cancellationToken)
    {
        await using var command = CatalogStore.Command(connection, """
            SELECT i.subscription_id, i.id, i.status, i.billing_date, i.period_start, i.period_end, l.kind, l.plan_code, l.plan_version,
                   l.service_from, l.service_to, l.meter, l.quantity, l.adjusts_invoice
            FROM invoices i CROSS JOIN LATERAL (
                SELECT * FROM invoice_lines l WHERE l.tenant_id = i.tenant_id AND l.invoice_id = i.id
                  AND l.kind IN ('usage', 'late_usage_adjustment') AND l.meter IS NOT NULL AND l.service_to > $3
                OFFSET 0) l
            WHERE i.tenant_id = $1 AND i.subscription_id = ANY($2) AND i.status <> 'void'
            ORDER BY i.billing_date, l.line_number
            """, tenant, subscriptions, since);
        return await CatalogStore.ReadAllAsync(command, r => new BilledLine(r.GetString(0), r.GetString(1), r.GetString(2), r.GetFieldValue<DateOnly>(3),
            new BillingPeriod(r.GetFieldValue<DateOnly>(4), r.GetFieldValue<DateOnly>(5)), r.GetString(6),
            new PhaseRow(0, r.GetString(7), r.GetInt32(8), r.GetFieldValue<DateOnly>(9), r.GetFieldValue<DateOnly>(10)),
            r.GetString(11), r.GetDecimal(12), r.IsDBNull(13) ? null : r.GetString(13)), cancellationToken);
    }

    private static string Reason(ItemKind kind) => kind switch
    {
        ItemKind.SubscriptionStart => "subscription_start",
        ItemKind.PlanChange => "plan_change",
        ItemKind.SubscriptionEnd => "subscription_end",
        _ => "period_end",
    };

    private sealed record LockedInvoice(string Id, string Status);

    private static async Task<LockedInvoice?> LockInvoiceAsync(NpgsqlConnection connection, string tenant, string subscription, DateOnly date,
        CancellationToken cancellationToken)
    {
        await using var command = CatalogStore.Command(connection,
            "SELECT id, status FROM invoices WHERE tenant_id = $1 AND subscription_id = $2 AND billing_date = $3 FOR UPDATE", tenant, subscription, date);
        var rows = await CatalogStore.ReadAllAsync(command, r => new LockedInvoice(r.GetString(0), r.GetString(1)), cancellationToken);
        return rows.Count == 1 ? rows[0] : null;
    }

    private const int FinalizeChunk = 5000;

    /// <summary>
    /// Makes every draft of the tenant whose grace period is over by <paramref name="asOf"/> final, in chunks: each
    /// chunk takes consecutive numbers from the tenant's counter in one transaction, in billing-date order. Numbering
    /// in bulk keeps the counter's row lock to one short transaction per chunk rather than one per invoice. Drafts that
    /// another run is recalculating right now are skipped (that run finalizes them).
    /// </summary>
    public async Task<int> FinalizeDueAsync(string tenant, DateTimeOffset asOf, BillingRunTimings timings, CancellationToken cancellationToken)
    {
        int total = 0;
        while (true)
        {
            long step = Stopwatch.GetTimestamp();
            await using var connection = await database.DataSource.OpenConnectionAsync(cancellationToken);
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            await LockNumberCounterAsync(connection, tenant, cancellationToken);
            await using var number = CatalogStore.Command(connection, """
                WITH due AS (
                    SELECT id, billing_date FROM invoices WHERE tenant_id = $1 AND status = 'draft' AND finalize_after <= $2
                    ORDER BY billing_date, id LIMIT $3 FOR UPDATE SKIP LOCKED),
                base AS (SELECT last_number FROM invoice_number_counters WHERE tenant_id = $1),
                numbered AS (
                    UPDATE invoices i SET status = 'finalized', finalized_at = $2,
                           number = (SELECT last_number FROM base) + n.rank
                    FROM (SELECT id, row_number() OVER (ORDER BY billing_date, id) AS rank FROM due) n
                    WHERE i.tenant_id = $1 AND i.id = n.id RETURNING i.id)
                SELECT id FROM numbered
                """, tenant, asOf.UtcDateTime, FinalizeChunk);
            var ids = await CatalogStore.ReadAllAsync(number, r => r.GetString(0), cancellationToken);
            if (ids.Count == 0)
            {
                timings.Add(BillingPhase.Finalize, step);
                return total;
            }
            await using (var advance = CatalogStore.Command(connection,
                "UPDATE invoice_number_counters SET last_number = last_number + $2 WHERE tenant_id = $1", tenant, ids.Count))
                await advance.ExecuteNonQueryAsync(cancellationToken);
            long outbox = Stopwatch.GetTimestamp();
            await InvoiceEvents.PublishAsync(connection, tenant, WebhookEventTypes.InvoiceFinalized, ids, cancellationToken);
            timings.Move(BillingPhase.Finalize, timings.Add(BillingPhase.Outbox, outbox));
            await transaction.CommitAsync(cancellationToken);
            timings.Add(BillingPhase.Finalize, step);
            total += ids.Count;
        }
    }

    /// <summary>Numbers one draft from the tenant's counter and makes it final, in the caller's transaction.</summary>
    public static async Task FinalizeAsync(NpgsqlConnection connection, string tenant, string invoiceId, DateTimeOffset at, CancellationToken cancellationToken)
    {
        long number;
        await using (var next = CatalogStore.Command(connection, """
            INSERT INTO invoice_number_counters (tenant_id, last_number) VALUES ($1, 1)
            ON CONFLICT (tenant_id) DO UPDATE SET last_number = invoice_number_counters.last_number + 1 RETURNING last_number
            """, tenant))
            number = (long)(await next.ExecuteScalarAsync(cancellationToken))!;
        await using (var update = CatalogStore.Command(connection,
            "UPDATE invoices SET status = 'finalized', number = $3, finalized_at = $4 WHERE tenant_id = $1 AND id = $2 AND status = 'draft'",
            tenant, invoiceId, number, at.UtcDateTime))
        {
            if (await update.ExecuteNonQueryAsync(cancellationToken) != 1)
                throw new InvalidOperationException($"invoice {invoiceId} is not a draft");
        }
        await InvoiceEvents.PublishAsync(connection, tenant, WebhookEventTypes.InvoiceFinalized, invoiceId, cancellationToken);
    }

    /// <summary>Every billing date of the subscription that is due by <paramref name="asOfDay"/> (a date is due from its
    /// first moment, 00:00 UTC), in date order.</summary>
    private static List<Item> Schedule(SubscriptionRow subscription, Dictionary<PhaseRow, PlanVersion> plans, DateOnly asOfDay)
    {
        var items = new List<Item>();
        var interval = plans[subscription.Phases[0]].Interval;
        var anchor = subscription.BillingAnchor;
        var start = subscription.StartDate;
        var first = interval.PeriodContaining(start, anchor);
        if (plans[subscription.Phases[0]].FixedFees.Any(f => f.Timing == FeeTiming.InAdvance))
            items.Add(new Item(ItemKind.SubscriptionStart, start, first));
        foreach (var phase in subscription.Phases.Skip(1))
        {
            var period = interval.PeriodContaining(phase.StartsOn, anchor);
            if (phase.StartsOn != period.Start && phase.StartsOn <= asOfDay)
                items.Add(new Item(ItemKind.PlanChange, phase.StartsOn, period));
        }
        for (var period = first; ; period = interval.PeriodContaining(period.End, anchor))
        {
            if (subscription.EndDate is { } end && end <= period.End)
            {
                if (end <= asOfDay)
                    items.Add(new Item(end == period.End ? ItemKind.PeriodEnd : ItemKind.SubscriptionEnd, end, period));
                break;
            }
            if (period.End > asOfDay)
                break;
            items.Add(new Item(ItemKind.PeriodEnd, period.End, period));
        }
        items.Sort((a, b) => a.Date.CompareTo(b.Date));
        return items;
    }

    private async Task<List<PendingLine>> LinesAsync(RunContext run, SubscriptionRow subscription, Dictionary<PhaseRow, PlanVersion> plans, Item item,
        string invoiceId, IEnumerable<BilledLine> billed, NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var rounding = run.Settings.Rounding;
        var lines = new List<PendingLine>();
        var end = subscription.EndDate;
        var interval = plans[subscription.Phases[0]].Interval;
        switch (item.Kind)
        {
            case ItemKind.SubscriptionStart:
                {
                    var phase = subscription.Phases[0];
                    var to = Min(item.Period.End, end, phase.EndsOn);
                    Add(lines, plans[phase], Rater.RatePeriod(plans[phase], item.Period, subscription.StartDate, to, NoUsage, rounding, LineSelection.InAdvanceFees));
                    break;
                }
            case ItemKind.PlanChange:
                {
                    var to = subscription.Phases.First(p => p.StartsOn == item.Date);
                    var from = subscription.Phases.Last(p => p.StartsOn < item.Date);
                    Add(lines, plans[to], Rater.RatePlanChange(plans[from], plans[to], item.Period, item.Date, rounding));
                    break;
                }
            default:
                {
                    // The period's usage and in-arrears fees, under the plan of each day.
                    var closeFrom = Max(item.Period.Start, subscription.StartDate);
                    var closeTo = item.Date;
                    foreach (var phase in subscription.Phases)
                    {
                        var from = Max(closeFrom, phase.StartsOn);
                        var to = Min(closeTo, phase.EndsOn, null);
                        if (from >= to)
                            continue;
                        var plan = plans[phase];
                        var quantities = await QuantitiesAsync(run, subscription.CustomerId, plan, from, to, cancellationToken);
                        Add(lines, plan, Rater.RatePeriod(plan, item.Period, from, to, quantities, rounding, LineSelection.InArrearsFees | LineSelection.Usage));
                    }
                    if (item.Kind == ItemKind.SubscriptionEnd)
                    {
                        // Service ends inside the period: the in-advance fees paid for the days after the end come back.
                        var phase = subscription.Phases.Last(p => p.StartsOn < item.Date);
                        var unused = Rater.RatePeriod(plans[phase], item.Period, item.Date, item.Period.End, NoUsage, rounding, LineSelection.InAdvanceFees);
                        foreach (var line in unused.Lines)
                            lines.Add(ToPending(line, plans[phase], "cancellation_credit", -1m));
                    }
                    else if (end is null || end > item.Date)
                    {
                        // The next period's in-advance fees, under the plan that serves its first day.
                        var next = interval.PeriodContaining(item.Date, subscription.BillingAnchor);
                        var phase = subscription.Phases.Last(p => p.StartsOn <= item.Date);
                        var to = Min(next.End, end, phase.EndsOn);
                        Add(lines, plans[phase], Rater.RatePeriod(plans[phase], next, item.Date, to, NoUsage, rounding, LineSelection.InAdvanceFees));
                    }
                    if (item.Kind == ItemKind.PeriodEnd || item.Kind == ItemKind.SubscriptionEnd)
                        lines.AddRange(await LateUsageAdjustmentsAsync(run, subscription, item, invoiceId, billed, connection, cancellationToken));
                    break;
                }
        }
        return lines;
    }

    /// <summary>
    /// For each earlier, final invoice of the subscription whose usage could still change (its range ended within the
    /// late-usage window plus one period of this billing date): the usage now against the usage billed so far (the
    /// invoice's usage lines plus the adjustments made since on other invoices), rated under the plan of that range;
    /// every line whose amount or quantity moved becomes an adjustment line.
    /// </summary>
    private async Task<List<PendingLine>> LateUsageAdjustmentsAsync(RunContext run, SubscriptionRow subscription, Item item, string invoiceId,
        IEnumerable<BilledLine> billed, NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var since = Since(item);
        var mine = billed.Where(b => b.SubscriptionId == subscription.Id).ToList();
        var bases = mine.Where(b => b.Kind == "usage" && b.Status is "finalized" or "paid" && b.BillingDate < item.Date && b.Range.EndsOn > since);
        var lines = new List<PendingLine>();
        foreach (var range in bases.GroupBy(b => (b.InvoiceId, b.Period, b.Range)))
        {
            var (adjusted, period, phase) = range.Key;
            var plan = await BillingPlans.PhasePlanAsync(connection, run.Tenant, phase, cancellationToken);
            var before = range.ToDictionary(b => b.Meter, b => new ChargeUsage(b.Quantity + mine
                .Where(a => a.Kind == "late_usage_adjustment" && a.AdjustsInvoice == adjusted && a.InvoiceId != invoiceId && a.Meter == b.Meter && a.Range == phase)
                .Sum(a => a.Quantity)));
            var now = await QuantitiesAsync(run, subscription.CustomerId, plan, phase.StartsOn, phase.EndsOn!.Value, cancellationToken);
            if (before.All(b => now.TryGetValue(b.Key, out var q) && q.Quantity == b.Value.Quantity))
                continue;
            var old = Rater.RatePeriod(plan, period, phase.StartsOn, phase.EndsOn.Value, before, run.Settings.Rounding, LineSelection.Usage);
            var current = Rater.RatePeriod(plan, period, phase.StartsOn, phase.EndsOn.Value, now, run.Settings.Rounding, LineSelection.Usage);
            foreach (var line in current.Lines)
            {
                var was = old.Lines.FirstOrDefault(l => l.Code == line.Code && l.Kind == line.Kind);
                decimal quantity = line.Quantity - (was?.Quantity ?? 0m);
                decimal amount = line.Amount - (was?.Amount ?? 0m);
                if (quantity == 0m && amount == 0m)
                    continue;
                lines.Add(new PendingLine("late_usage_adjustment", line.Code, line.MeterCode, plan.PlanCode, plan.Version, quantity,
                    line.ServiceFrom, line.ServiceTo, line.ExactAmount - (was?.ExactAmount ?? 0m), amount,
                    $"late usage for [{line.ServiceFrom:yyyy-MM-dd}, {line.ServiceTo:yyyy-MM-dd}) billed on {adjusted}: quantity {was?.Quantity ?? 0m} -> {line.Quantity}, amount {was?.Amount ?? 0m} -> {line.Amount}",
                    "[]", adjusted));
            }
        }
        return lines;
    }

    private static readonly Dictionary<string, ChargeUsage> NoUsage = [];

    /// <summary>The quantity of each of the plan's metered charges for the customer over the UTC days <c>[from, to)</c>,
    /// from the run's usage: the first subscription that needs a (meter, range) reads it for every customer.</summary>
    private async Task<Dictionary<string, ChargeUsage>> QuantitiesAsync(RunContext run, string customer, PlanVersion plan, DateOnly from, DateOnly to,
        CancellationToken cancellationToken)
    {
        var quantities = new Dictionary<string, ChargeUsage>(plan.Charges.Length);
        foreach (var charge in plan.Charges)
        {
            long waited = Stopwatch.GetTimestamp();
            var all = await run.Usage.GetOrAdd((charge.Meter.Code, from, to), key => new Lazy<Task<IReadOnlyDictionary<string, ChargeUsage>>>(
                () => usage.GetUsagesAsync(run.Tenant, key.Meter, Midnight(key.From), Midnight(key.To), CancellationToken.None))).Value.WaitAsync(cancellationToken);
            run.Timings.Move(BillingPhase.Rating, run.Timings.Add(BillingPhase.Usage, waited));
            quantities[charge.Meter.Code] = all.TryGetValue(customer, out var used) ? used : default;
        }
        return quantities;
    }

    private static void Add(List<PendingLine> lines, PlanVersion plan, Invoice rated)
    {
        foreach (var line in rated.Lines)
            lines.Add(ToPending(line, plan, null, 1m));
    }

    private static PendingLine ToPending(InvoiceLine line, PlanVersion plan, string? kind, decimal sign) => new(
        kind ?? KindName(line.Kind), line.Code, line.MeterCode, plan.PlanCode, plan.Version, line.Quantity, line.ServiceFrom, line.ServiceTo,
        sign * line.ExactAmount, sign * line.Amount, (sign < 0 ? "credit of " : "") + line.Explain(), JsonSerializer.Serialize(TierRows(line)), null);

    /// <summary>The API's name of a rating line kind.</summary>
    internal static string KindName(LineKind kind) => kind switch
    {
        LineKind.FixedFee => "fixed_fee",
        LineKind.Usage => "usage",
        LineKind.MinimumCommitmentTrueUp => "minimum_commitment_true_up",
        _ => "plan_change_credit",
    };

    /// <summary>A tiered line's breakdown as the API shows it (exact decimals as strings); empty for other lines.</summary>
    internal static IEnumerable<object> TierRows(InvoiceLine line) => line.GetTiers().Select(t => new
    {
        tier = t.Tier,
        from = ApiHttp.Decimal(t.From),
        upTo = t.UpTo is { } u ? ApiHttp.Decimal(u) : null,
        units = ApiHttp.Decimal(t.Units),
        unitPrice = ApiHttp.Decimal(t.UnitPrice),
        flatFee = ApiHttp.Decimal(t.FlatFee),
        amount = ApiHttp.Decimal(t.Amount),
    });

    /// <summary>Every line of the written invoices in one statement.</summary>
    private static async Task InsertLinesAsync(NpgsqlConnection connection, string tenant, List<PlannedInvoice> invoices, CancellationToken cancellationToken)
    {
        var rows = invoices.SelectMany(i => i.Lines.Select((l, n) => (Invoice: i.InvoiceId, Number: n + 1, Line: l))).ToList();
        if (rows.Count == 0)
            return;
        await using var insert = CatalogStore.Command(connection, """
            INSERT INTO invoice_lines (tenant_id, invoice_id, line_number, kind, code, meter, plan_code, plan_version, quantity, service_from, service_to,
                                       exact_amount, amount, description, tiers, adjusts_invoice)
            SELECT $1, u.invoice_id, u.line_number, u.kind, u.code, u.meter, u.plan_code, u.plan_version, u.quantity, u.service_from, u.service_to,
                   u.exact_amount, u.amount, u.description, u.tiers::jsonb, u.adjusts_invoice
            FROM unnest($2::text[], $3::integer[], $4::text[], $5::text[], $6::text[], $7::text[], $8::integer[], $9::numeric[], $10::date[], $11::date[],
                        $12::numeric[], $13::numeric[], $14::text[], $15::text[], $16::text[])
                 AS u(invoice_id, line_number, kind, code, meter, plan_code, plan_version, quantity, service_from, service_to, exact_amount, amount,
                      description, tiers, adjusts_invoice)
            """, tenant,
            rows.Select(r => r.Invoice).ToArray(), rows.Select(r => r.Number).ToArray(), rows.Select(r => r.Line.Kind).ToArray(),
            rows.Select(r => r.Line.Code).ToArray(), rows.Select(r => r.Line.Meter).ToArray(), rows.Select(r => r.Line.PlanCode).ToArray(),
            rows.Select(r => r.Line.PlanVersion).ToArray(), rows.Select(r => r.Line.Quantity).ToArray(), rows.Select(r => r.Line.ServiceFrom).ToArray(),
            rows.Select(r => r.Line.ServiceTo).ToArray(), rows.Select(r => r.Line.ExactAmount).ToArray(), rows.Select(r => r.Line.Amount).ToArray(),
            rows.Select(r => r.Line.Description).ToArray(), rows.Select(r => r.Line.TiersJson).ToArray(), rows.Select(r => r.Line.AdjustsInvoice).ToArray());
        await insert.ExecuteNonQueryAsync(cancellationToken);
    }

    internal static DateTimeOffset Midnight(DateOnly day) => new(day.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);

    private static DateOnly Max(DateOnly a, DateOnly b) => a > b ? a : b;

    private static DateOnly Min(DateOnly a, DateOnly? b, DateOnly? c)
    {
        var min = a;
        if (b is { } x && x < min)
            min = x;
        if (c is { } y && y < min)
            min = y;
        return min;
    }
}
