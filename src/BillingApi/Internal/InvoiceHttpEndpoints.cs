using System.Globalization;
using System.Text.Json;
using AlphaMesh.Ingest;
using AlphaMesh.Rating;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Npgsql;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>
/// Billing runs, invoices (read, finalize, pay, void), credit notes and a customer's running usage. Reads need the read
/// scope and changes the admin scope; another tenant's invoice is a 404.
/// </summary>
internal sealed class InvoiceHttpEndpoints(IApiKeyStore keys, BillingDatabase database, IdempotentPost post, BillingEngine engine,
    IBillingUsageSource usage, TimeProvider time)
{
    private const int MaxReasonLength = 500;

    public void Map(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPost("/v1/billing-runs", ApiDocs.Handler(RunAsync)).Writes<RunRequest, RunBody>("Invoices", "Bills every due period up to asOf", 200);
        endpoints.MapGet("/v1/invoices", ApiDocs.Handler(ListAsync)).Reads<PageBody<InvoiceBody>>("Invoices", "Lists invoices (filters: customer, subscription, status)");
        endpoints.MapGet("/v1/invoices/{id}", GetAsync).Reads<InvoiceBody>("Invoices", "Reads an invoice with its lines and credit notes");
        endpoints.MapPost("/v1/invoices/{id}/finalize", (HttpContext http, string id) => TransitionAsync(http, id, "finalize"))
            .Writes<EmptyRequest, InvoiceBody>("Invoices", "Finalizes a draft now (numbered)", 200);
        endpoints.MapPost("/v1/invoices/{id}/pay", (HttpContext http, string id) => TransitionAsync(http, id, "pay"))
            .Writes<EmptyRequest, InvoiceBody>("Invoices", "Marks a finalized invoice paid", 200);
        endpoints.MapPost("/v1/invoices/{id}/void", (HttpContext http, string id) => TransitionAsync(http, id, "void"))
            .Writes<EmptyRequest, InvoiceBody>("Invoices", "Voids a finalized invoice", 200);
        endpoints.MapPost("/v1/invoices/{id}/credit-notes", CreateCreditNoteAsync).Writes<CreditNoteRequest, CreditNoteBody>("Invoices", "Credits a finalized or paid invoice, whole or by line");
        endpoints.MapGet("/v1/customers/{id}/simulate", SimulateAsync).Reads<SimulationBody>("Customers", "What a period's usage would cost under a plan version; creates nothing");
        endpoints.MapGet("/v1/customers/{id}/usage/current", CurrentUsageAsync).Reads<CurrentUsageBody>("Customers", "The running period's usage and what it would be invoiced at now");
    }

    /// <summary><c>{asOf, subscription?}</c>: bills every due period up to <c>asOf</c> (RFC 3339; default now).</summary>
    private async Task RunAsync(HttpContext http)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Admin) is not { } caller
            || await ApiHttp.ReadAsync<RunRequest>(http) is not ({ } body, { } request))
            return;
        var asOf = time.GetUtcNow();
        if (request.AsOf is { } text && (!ApiHttp.TryParseRfc3339(text, out asOf) || asOf.Year is < 2000 or > 2200))
        {
            await ApiHttp.WriteAsync(http, ApiHttp.BadRequest($"asOf '{PlanDefinition.Truncate(text)}' is not an RFC 3339 time with a zone (for example 2026-12-01T00:00:00Z).", "asOf"));
            return;
        }
        // The run is idempotent by itself (one invoice per subscription and billing date); an Idempotency-Key also
        // replays its first answer. The run works on its own connections: a crash before the key's record commits
        // only means that a retry runs again, which finds the invoices.
        await post.ExecuteAsync(http, caller.TenantId, body, async (_, ct) =>
        {
            var result = await engine.RunAsync(caller.TenantId, asOf, request.Subscription, ct);
            return new PostOutcome(new ApiResult(200, new RunBody(ApiHttp.Rfc3339(asOf.UtcDateTime), result.Subscriptions, result.Created,
                result.Recalculated, result.Finalized, result.InvoiceIds, result.Failures.Select(f => new FailureBody(f.Subscription, f.Message)).ToList())));
        });
    }

    private async Task ListAsync(HttpContext http)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Read) is not { } caller)
            return;
        if (ApiHttp.ParsePaging(http, out int limit, out var cursor, "customer", "subscription", "status") is { } invalid)
        {
            await ApiHttp.WriteAsync(http, invalid);
            return;
        }
        string? Filter(string name) => http.Request.Query[name] is { Count: > 0 } v ? v.ToString() : null;
        var status = Filter("status");
        if (status is not (null or "draft" or "finalized" or "paid" or "void"))
        {
            await ApiHttp.WriteAsync(http, ApiHttp.BadRequest($"status '{PlanDefinition.Truncate(status)}' is not draft, finalized, paid or void.", "status"));
            return;
        }
        await using var connection = await database.DataSource.OpenConnectionAsync(http.RequestAborted);
        await using var command = CatalogStore.Command(connection, InvoiceSelect + """
             WHERE tenant_id = $1 AND ($2::text IS NULL OR customer_id = $2) AND ($3::text IS NULL OR subscription_id = $3)
               AND ($4::text IS NULL OR status = $4) AND ($5::text IS NULL OR id > $5) ORDER BY id LIMIT $6
            """, caller.TenantId, Filter("customer"), Filter("subscription"), status, cursor, limit + 1);
        var rows = await CatalogStore.ReadAllAsync(command, ReadInvoice, http.RequestAborted);
        await ApiHttp.WriteAsync(http, new ApiResult(200, ApiHttp.Page(rows, limit, r => r, r => r.Id)));
    }

    private async Task GetAsync(HttpContext http, string id)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Read) is not { } caller)
            return;
        await using var connection = await database.DataSource.OpenConnectionAsync(http.RequestAborted);
        await ApiHttp.WriteAsync(http, await LoadAsync(connection, caller.TenantId, id, http.RequestAborted) is { } invoice
            ? new ApiResult(200, invoice)
            : NoInvoice(id));
    }

    private static ApiResult NoInvoice(string id) => ApiHttp.NotFound($"there is no invoice '{PlanDefinition.Truncate(id)}'");

    /// <summary>finalize: draft to finalized (numbered now); pay: finalized to paid; void: finalized to void (a paid
    /// invoice is corrected with a credit note instead).</summary>
    private async Task TransitionAsync(HttpContext http, string id, string action)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Admin) is not { } caller)
            return;
        var body = await ApiHttp.ReadBodyAsync(http) ?? [];
        await post.ExecuteAsync(http, caller.TenantId, body, async (connection, ct) =>
        {
            // Numbering takes the tenant's counter before the invoice's row, as a billing run does (no deadlock between them).
            if (action == "finalize")
                await BillingEngine.LockNumberCounterAsync(connection, caller.TenantId, ct);
            await using (var lockRow = CatalogStore.Command(connection, "SELECT status FROM invoices WHERE tenant_id = $1 AND id = $2 FOR UPDATE", caller.TenantId, id))
            {
                var status = await lockRow.ExecuteScalarAsync(ct) as string;
                if (status is null)
                    return new PostOutcome(NoInvoice(id));
                string? required = action switch { "finalize" => "draft", _ => "finalized" };
                if (status != required)
                    return new PostOutcome(ApiHttp.Error(409, "conflict", $"invoice '{id}' is {status}; {action} needs a {required} invoice."));
            }
            var now = time.GetUtcNow();
            if (action == "finalize")
            {
                await BillingEngine.FinalizeAsync(connection, caller.TenantId, id, now, ct);
            }
            else
            {
                await using var update = CatalogStore.Command(connection, action == "pay"
                    ? "UPDATE invoices SET status = 'paid', paid_at = $3 WHERE tenant_id = $1 AND id = $2"
                    : "UPDATE invoices SET status = 'void', voided_at = $3 WHERE tenant_id = $1 AND id = $2", caller.TenantId, id, now.UtcDateTime);
                await update.ExecuteNonQueryAsync(ct);
                if (action == "void")
                    await InvoiceEvents.PublishAsync(connection, caller.TenantId, WebhookEventTypes.InvoiceVoided, id, ct);
            }
            return new PostOutcome(new ApiResult(200, (await LoadAsync(connection, caller.TenantId, id, ct))!));
        });
    }

    /// <summary><c>{reason, lines?: [{lineNumber, amount}]}</c> against a finalized or paid invoice; without lines it
    /// credits whatever is left of every positive line. A line is never credited beyond its amount, over all its credit notes.</summary>
    private async Task CreateCreditNoteAsync(HttpContext http, string id)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Admin) is not { } caller
            || await ApiHttp.ReadAsync<CreditNoteRequest>(http) is not ({ } body, { } request))
            return;
        var errors = new List<(string, string)>();
        if (string.IsNullOrWhiteSpace(request.Reason))
            errors.Add(("reason", "reason is required: why the amount is credited (kept in the audit trail)."));
        else if (request.Reason.Length > MaxReasonLength)
            errors.Add(("reason", $"reason is {request.Reason.Length} characters; at most {MaxReasonLength}."));
        for (int i = 0; i < (request.Lines?.Count ?? 0); i++)
        {
            var line = request.Lines![i];
            if (line.LineNumber is not > 0)
                errors.Add(($"lines[{i}].lineNumber", "lineNumber is required: the invoice line's number, from 1."));
            if (line.Amount is not > 0)
                errors.Add(($"lines[{i}].amount", $"amount must be more than 0; got {line.Amount?.ToString(CultureInfo.InvariantCulture) ?? "nothing"}."));
        }
        if (request.Lines is { Count: 0 })
            errors.Add(("lines", "lines is empty; leave it out to credit the whole invoice."));
        if (request.Lines?.GroupBy(l => l.LineNumber).Any(g => g.Count() > 1) == true)
            errors.Add(("lines", "a line number appears twice."));
        if (errors.Count > 0)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.Invalid(errors));
            return;
        }
        await post.ExecuteAsync(http, caller.TenantId, body, async (connection, ct) =>
        {
            string currency;
            await using (var lockRow = CatalogStore.Command(connection, "SELECT status, currency FROM invoices WHERE tenant_id = $1 AND id = $2 FOR UPDATE", caller.TenantId, id))
            {
                var rows = await CatalogStore.ReadAllAsync(lockRow, r => (Status: r.GetString(0), Currency: r.GetString(1)), ct);
                if (rows.Count == 0)
                    return new PostOutcome(NoInvoice(id));
                if (rows[0].Status is not ("finalized" or "paid"))
                    return new PostOutcome(ApiHttp.Error(409, "conflict", $"invoice '{id}' is {rows[0].Status}; credit notes are for finalized or paid invoices."));
                currency = rows[0].Currency;
            }
            // What each line can still be credited: its amount less every earlier credit note's amount for it.
            await using var remaining = CatalogStore.Command(connection, """
                SELECT l.line_number, l.amount - coalesce((SELECT sum(c.amount) FROM credit_note_lines c JOIN credit_notes n
                        ON n.tenant_id = c.tenant_id AND n.id = c.credit_note_id
                        WHERE c.tenant_id = l.tenant_id AND n.invoice_id = l.invoice_id AND c.line_number = l.line_number), 0)
                FROM invoice_lines l WHERE l.tenant_id = $1 AND l.invoice_id = $2 ORDER BY l.line_number
                """, caller.TenantId, id);
            var left = (await CatalogStore.ReadAllAsync(remaining, r => (Line: r.GetInt32(0), Left: r.GetDecimal(1)), ct)).ToDictionary(x => x.Line, x => x.Left);
            int minorUnits = Currency.Get(currency).MinorUnits;
            var credit = new List<(int Line, decimal Amount)>();
            if (request.Lines is null)
            {
                credit.AddRange(left.Where(l => l.Value > 0).Select(l => (l.Key, l.Value)));
                if (credit.Count == 0)
                    return new PostOutcome(ApiHttp.Error(409, "conflict", $"invoice '{id}' has nothing left to credit."));
            }
            else
            {
                for (int i = 0; i < request.Lines.Count; i++)
                {
                    var (number, amount) = (request.Lines[i].LineNumber!.Value, request.Lines[i].Amount!.Value);
                    if (!left.TryGetValue(number, out var open))
                        return new PostOutcome(ApiHttp.BadRequest($"invoice '{id}' has no line {number}.", $"lines[{i}].lineNumber"));
                    if (decimal.Round(amount, minorUnits) != amount)
                        return new PostOutcome(ApiHttp.BadRequest($"amount {amount} has more decimals than {currency} has ({minorUnits}).", $"lines[{i}].amount"));
                    if (amount > open)
                        return new PostOutcome(ApiHttp.BadRequest($"amount {amount} is more than the {Math.Max(open, 0)} {currency} of line {number} not yet credited.", $"lines[{i}].amount"));
                    credit.Add((number, amount));
                }
            }
            string noteId = "cn_" + Guid.CreateVersion7().ToString("N");
            decimal total = credit.Sum(c => c.Amount);
            await using (var note = CatalogStore.Command(connection,
                "INSERT INTO credit_notes (tenant_id, id, invoice_id, reason, total, created_by) VALUES ($1, $2, $3, $4, $5, $6)",
                caller.TenantId, noteId, id, request.Reason, total, caller.KeyPrefix))
                await note.ExecuteNonQueryAsync(ct);
            foreach (var (line, amount) in credit)
            {
                await using var insert = CatalogStore.Command(connection,
                    "INSERT INTO credit_note_lines (tenant_id, credit_note_id, line_number, amount) VALUES ($1, $2, $3, $4)", caller.TenantId, noteId, line, amount);
                await insert.ExecuteNonQueryAsync(ct);
            }
            await InvoiceEvents.PublishAsync(connection, caller.TenantId, WebhookEventTypes.CreditNoteCreated, noteId, ct);
            var created = (await CreditNotesAsync(connection, caller.TenantId, id, ct)).Single(n => n.Id == noteId);
            return new PostOutcome(new ApiResult(201, created));
        });
    }

    /// <summary>For each running subscription of the customer: the current period's usage so far and what it would be
    /// invoiced at now (usage charges and in-arrears fees; in-advance fees were billed at the period's start).</summary>
    private async Task CurrentUsageAsync(HttpContext http, string id)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Read) is not { } caller)
            return;
        await using var connection = await database.DataSource.OpenConnectionAsync(http.RequestAborted);
        if (await CatalogStore.GetCustomerAsync(connection, caller.TenantId, id, http.RequestAborted) is null)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.NotFound($"there is no customer '{PlanDefinition.Truncate(id)}'"));
            return;
        }
        var today = DateOnly.FromDateTime(time.GetUtcNow().UtcDateTime);
        var settings = await CatalogStore.GetSettingsAsync(connection, caller.TenantId, http.RequestAborted);
        var result = new List<CurrentBody>();
        foreach (var subscription in await CatalogStore.ListSubscriptionsAsync(connection, caller.TenantId, id, null, 1000, http.RequestAborted))
        {
            if (subscription.StartDate > today || subscription.EndDate is { } end && end <= today)
                continue;
            var firstPlan = await BillingPlans.PhasePlanAsync(connection, caller.TenantId, subscription.Phases[0], http.RequestAborted);
            var period = firstPlan.Interval.PeriodContaining(today, subscription.BillingAnchor);
            var lines = new List<LineBody>();
            decimal total = 0;
            foreach (var phase in subscription.Phases)
            {
                var from = Later(period.Start, Later(subscription.StartDate, phase.StartsOn));
                var to = phase.EndsOn is { } e && e < period.End ? e : period.End;
                if (from >= to || from > today)
                    continue;
                var plan = await BillingPlans.PhasePlanAsync(connection, caller.TenantId, phase, http.RequestAborted);
                var quantities = new Dictionary<string, ChargeUsage>();
                foreach (var charge in plan.Charges)
                    quantities[charge.Meter.Code] = await usage.GetUsageAsync(caller.TenantId, charge.Meter.Code, id,
                        BillingEngine.Midnight(from), BillingEngine.Midnight(to), http.RequestAborted);
                var rated = Rater.RatePeriod(plan, period, from, to, quantities, settings.Rounding, LineSelection.Usage | LineSelection.InArrearsFees);
                total += rated.Total;
                int n = lines.Count;
                lines.AddRange(rated.Lines.Select((l, i) => ToBody(l, plan, n + i + 1)));
            }
            result.Add(new CurrentBody(subscription.Id, ApiHttp.Date(period.Start), ApiHttp.Date(period.End), firstPlan.CurrencyCode, ApiHttp.Decimal(total), lines));
        }
        await ApiHttp.WriteAsync(http, new ApiResult(200, new CurrentUsageBody(result)));
    }

    /// <summary><c>?plan=&amp;version=&amp;periodStart=</c>: the customer's usage in the plan's period that starts on
    /// <c>periodStart</c> (anchored there), rated under that plan version (latest by default) as if subscribed for the
    /// whole period; nothing is created.</summary>
    private async Task SimulateAsync(HttpContext http, string id)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Read) is not { } caller)
            return;
        var errors = new List<(string, string)>();
        foreach (var (name, _) in http.Request.Query)
        {
            if (name is not ("plan" or "version" or "periodStart"))
                errors.Add((name, $"unknown query parameter '{PlanDefinition.Truncate(name)}' (use plan, version, periodStart)."));
        }
        string? planCode = http.Request.Query["plan"] is { Count: 1 } p ? p.ToString() : null;
        if (string.IsNullOrEmpty(planCode))
            errors.Add(("plan", "plan is required: the code of the plan to price the usage with."));
        int? version = null;
        if (http.Request.Query["version"] is { Count: 1 } v)
        {
            if (int.TryParse(v.ToString(), NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n >= 1)
                version = n;
            else
                errors.Add(("version", $"version '{PlanDefinition.Truncate(v.ToString())}' is not a whole number from 1."));
        }
        var start = CatalogHttpEndpoints.ParseDate(http.Request.Query["periodStart"] is { Count: 1 } d ? d.ToString() : null, "periodStart", required: true, errors);
        if (errors.Count > 0)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.Invalid(errors));
            return;
        }
        await using var connection = await database.DataSource.OpenConnectionAsync(http.RequestAborted);
        if (await CatalogStore.GetCustomerAsync(connection, caller.TenantId, id, http.RequestAborted) is null)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.NotFound($"there is no customer '{PlanDefinition.Truncate(id)}'"));
            return;
        }
        if (await CatalogStore.GetVersionAsync(connection, caller.TenantId, planCode!, version, http.RequestAborted) is not { } row)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.Error(404, "not_found", $"there is no plan '{PlanDefinition.Truncate(planCode!)}'" + (version is { } x ? $" version {x}" : ""), "plan"));
            return;
        }
        var plan = row.ToPlanVersion();
        var period = plan.Interval.PeriodContaining(start!.Value, start.Value);
        var settings = await CatalogStore.GetSettingsAsync(connection, caller.TenantId, http.RequestAborted);
        var quantities = new Dictionary<string, ChargeUsage>();
        try
        {
            foreach (var charge in plan.Charges)
                quantities[charge.Meter.Code] = await usage.GetUsageAsync(caller.TenantId, charge.Meter.Code, id,
                    BillingEngine.Midnight(period.Start), BillingEngine.Midnight(period.End), http.RequestAborted);
        }
        catch (BillingUsageException e)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.BadRequest(e.Message, "plan"));
            return;
        }
        var rated = Rater.Simulate(plan, period, quantities, settings.Rounding);
        var lines = rated.Lines.Select((l, i) => ToBody(l, plan, i + 1)).ToList();
        await ApiHttp.WriteAsync(http, new ApiResult(200, new SimulationBody(id, plan.PlanCode, plan.Version, ApiHttp.Date(period.Start), ApiHttp.Date(period.End),
            plan.CurrencyCode, ApiHttp.Decimal(rated.Total), lines)));
    }

    private static DateOnly Later(DateOnly a, DateOnly b) => a > b ? a : b;

    /// <summary>A line rated now (not stored): current usage and simulations.</summary>
    private static LineBody ToBody(InvoiceLine l, PlanVersion plan, int number) => new(number, BillingEngine.KindName(l.Kind), l.Code, l.MeterCode,
        plan.PlanCode, plan.Version, ApiHttp.Decimal(l.Quantity), ApiHttp.Date(l.ServiceFrom), ApiHttp.Date(l.ServiceTo), ApiHttp.Decimal(l.Amount),
        l.Explain(), JsonSerializer.SerializeToElement(BillingEngine.TierRows(l)), null);

    private const string InvoiceSelect = """
        SELECT id, subscription_id, customer_id, billing_date, reason, period_start, period_end, currency, status, number, total,
               finalize_after, created_at, finalized_at, paid_at, voided_at FROM invoices
        """;

    private static InvoiceBody ReadInvoice(NpgsqlDataReader r) => new(r.GetString(0), r.GetString(1), r.GetString(2), ApiHttp.Date(r.GetFieldValue<DateOnly>(3)),
        r.GetString(4), ApiHttp.Date(r.GetFieldValue<DateOnly>(5)), ApiHttp.Date(r.GetFieldValue<DateOnly>(6)), r.GetString(7), r.GetString(8),
        r.IsDBNull(9) ? null : $"INV-{r.GetInt64(9):D6}", ApiHttp.Decimal(r.GetDecimal(10)), ApiHttp.Rfc3339(r.GetDateTime(11)), ApiHttp.Rfc3339(r.GetDateTime(12)),
        Time(r, 13), Time(r, 14), Time(r, 15), null, null);

    private static string? Time(NpgsqlDataReader r, int i) => r.IsDBNull(i) ? null : ApiHttp.Rfc3339(r.GetDateTime(i));

    private static async Task<InvoiceBody?> LoadAsync(NpgsqlConnection connection, string tenant, string id, CancellationToken cancellationToken)
    {
        await using var head = CatalogStore.Command(connection, InvoiceSelect + " WHERE tenant_id = $1 AND id = $2", tenant, id);
        var rows = await CatalogStore.ReadAllAsync(head, ReadInvoice, cancellationToken);
        if (rows.Count == 0)
            return null;
        await using var lines = CatalogStore.Command(connection, """
            SELECT line_number, kind, code, meter, plan_code, plan_version, quantity, service_from, service_to, amount, description, tiers::text, adjusts_invoice
            FROM invoice_lines WHERE tenant_id = $1 AND invoice_id = $2 ORDER BY line_number
            """, tenant, id);
        var lineBodies = await CatalogStore.ReadAllAsync(lines, r => new LineBody(r.GetInt32(0), r.GetString(1), r.GetString(2), r.IsDBNull(3) ? null : r.GetString(3),
            r.GetString(4), r.GetInt32(5), ApiHttp.Decimal(r.GetDecimal(6)), ApiHttp.Date(r.GetFieldValue<DateOnly>(7)), ApiHttp.Date(r.GetFieldValue<DateOnly>(8)),
            ApiHttp.Decimal(r.GetDecimal(9)), r.GetString(10), JsonSerializer.Deserialize<JsonElement>(r.GetString(11)), r.IsDBNull(12) ? null : r.GetString(12)), cancellationToken);
        return rows[0] with { Lines = lineBodies, CreditNotes = await CreditNotesAsync(connection, tenant, id, cancellationToken) };
    }

    private static async Task<List<CreditNoteBody>> CreditNotesAsync(NpgsqlConnection connection, string tenant, string invoiceId, CancellationToken cancellationToken)
    {
        await using var command = CatalogStore.Command(connection, """
            SELECT n.id, n.reason, n.total, n.created_by, n.created_at,
                   coalesce(json_agg(json_build_object('lineNumber', c.line_number, 'amount', c.amount::text) ORDER BY c.line_number), '[]')::text
            FROM credit_notes n JOIN credit_note_lines c ON c.tenant_id = n.tenant_id AND c.credit_note_id = n.id
            WHERE n.tenant_id = $1 AND n.invoice_id = $2 GROUP BY n.id, n.reason, n.total, n.created_by, n.created_at ORDER BY n.id
            """, tenant, invoiceId);
        return await CatalogStore.ReadAllAsync(command, r => new CreditNoteBody(r.GetString(0), invoiceId, r.GetString(1), ApiHttp.Decimal(r.GetDecimal(2)),
            r.GetString(3), ApiHttp.Rfc3339(r.GetDateTime(4)), JsonSerializer.Deserialize<JsonElement>(r.GetString(5))), cancellationToken);
    }

    /// <summary>The body of a state change: none (an empty body or <c>{}</c>).</summary>
    private sealed class EmptyRequest;

    private sealed record SimulationBody(string Customer, string Plan, int PlanVersion, string PeriodStart, string PeriodEnd, string Currency, string Total,
        IReadOnlyList<LineBody> Lines);

    private sealed record CurrentUsageBody(IReadOnlyList<CurrentBody> Data);

    private sealed class RunRequest
    {
        public string? AsOf { get; set; }
        public string? Subscription { get; set; }
    }

    private sealed class CreditNoteRequest
    {
        public string? Reason { get; set; }
        public List<CreditLineRequest>? Lines { get; set; }
    }

    private sealed class CreditLineRequest
    {
        public int? LineNumber { get; set; }
        public decimal? Amount { get; set; }
    }

    private sealed record RunBody(string AsOf, int Subscriptions, int Created, int Recalculated, int Finalized, IReadOnlyList<string> Invoices,
        IReadOnlyList<FailureBody> Failures);

    private sealed record FailureBody(string Subscription, string Message);

    private sealed record InvoiceBody(string Id, string Subscription, string Customer, string BillingDate, string Reason, string PeriodStart, string PeriodEnd,
        string Currency, string Status, string? Number, string Total, string FinalizeAfter, string CreatedAt, string? FinalizedAt, string? PaidAt,
        string? VoidedAt, IReadOnlyList<LineBody>? Lines, IReadOnlyList<CreditNoteBody>? CreditNotes);

    private sealed record LineBody(int LineNumber, string Kind, string Code, string? Meter, string Plan, int PlanVersion, string Quantity,
        string ServiceFrom, string ServiceTo, string Amount, string Description, JsonElement Tiers, string? AdjustsInvoice);

    private sealed record CreditNoteBody(string Id, string Invoice, string Reason, string Total, string CreatedBy, string CreatedAt, JsonElement Lines);

    private sealed record CurrentBody(string Subscription, string PeriodStart, string PeriodEnd, string Currency, string Amount, IReadOnlyList<LineBody> Lines);
}
