using System.Text;
using System.Text.Json;
using AlphaMesh.Ingest;
using AlphaMesh.Rating;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>
/// The catalog: billing settings, customers, plans and their versions, subscriptions. Reads need the read scope and
/// changes the admin scope; everything belongs to the key's tenant, and another tenant's id is a 404.
/// </summary>
internal sealed class CatalogHttpEndpoints(IApiKeyStore keys, BillingDatabase database, IdempotentPost post, IBillingUsageSource usage,
    TimeProvider time)
{
    private const int MaxNameLength = 200;
    private const int MaxEmailLength = 254;
    private const int MaxCustomerIdBytes = 256;

    public void Map(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/v1/billing-settings", ApiDocs.Handler(GetSettingsAsync)).Reads<SettingsBody>("Settings", "The tenant's rounding mode and grace period");
        endpoints.MapPost("/v1/billing-settings", ApiDocs.Handler(SetSettingsAsync)).Writes<SettingsRequest, SettingsBody>("Settings", "Sets the rounding mode and grace period", 200);
        endpoints.MapPost("/v1/customers", ApiDocs.Handler(CreateCustomerAsync)).Writes<CustomerRequest, CustomerBody>("Customers", "Creates a customer");
        endpoints.MapGet("/v1/customers", ApiDocs.Handler(ListCustomersAsync)).Reads<PageBody<CustomerBody>>("Customers", "Lists customers (cursor pages)");
        endpoints.MapGet("/v1/customers/{id}", GetCustomerAsync).Reads<CustomerBody>("Customers", "Reads a customer");
        endpoints.MapPost("/v1/plans", ApiDocs.Handler(CreatePlanAsync)).Writes<PlanRequest, PlanBody>("Plans", "Creates a plan with its first version");
        endpoints.MapGet("/v1/plans", ApiDocs.Handler(ListPlansAsync)).Reads<PageBody<PlanBody>>("Plans", "Lists plans");
        endpoints.MapGet("/v1/plans/{code}", GetPlanAsync).Reads<PlanBody>("Plans", "Reads a plan and its versions");
        endpoints.MapPost("/v1/plans/{code}/versions", AddVersionAsync).Writes<PlanDefinition, PlanVersionBody>("Plans", "Adds the plan's next version");
        endpoints.MapGet("/v1/plans/{code}/versions/{version:int}", GetVersionAsync).Reads<PlanVersionBody>("Plans", "Reads one version of a plan");
        endpoints.MapPost("/v1/subscriptions", ApiDocs.Handler(CreateSubscriptionAsync)).Writes<SubscriptionRequest, SubscriptionBody>("Subscriptions", "Subscribes a customer to a plan version");
        endpoints.MapGet("/v1/subscriptions", ApiDocs.Handler(ListSubscriptionsAsync)).Reads<PageBody<SubscriptionBody>>("Subscriptions", "Lists subscriptions (filter: customer)");
        endpoints.MapGet("/v1/subscriptions/{id}", GetSubscriptionAsync).Reads<SubscriptionBody>("Subscriptions", "Reads a subscription and its plan phases");
        endpoints.MapPost("/v1/subscriptions/{id}/cancel", CancelSubscriptionAsync).Writes<CancelRequest, SubscriptionBody>("Subscriptions", "Cancels at period end or on a day", 200);
        endpoints.MapPost("/v1/subscriptions/{id}/change-plan", ChangePlanAsync).Writes<ChangePlanRequest, SubscriptionBody>("Subscriptions", "Moves to another plan version from a day, prorated", 200);
    }

    // Settings

    private async Task GetSettingsAsync(HttpContext http)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Read) is not { } caller)
            return;
        await using var connection = await database.DataSource.OpenConnectionAsync(http.RequestAborted);
        await ApiHttp.WriteAsync(http, new ApiResult(200, ToBody(await CatalogStore.GetSettingsAsync(connection, caller.TenantId, http.RequestAborted))));
    }

    private async Task SetSettingsAsync(HttpContext http)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Admin) is not { } caller
            || await ApiHttp.ReadAsync<SettingsRequest>(http) is not ({ } body, { } request))
            return;
        var errors = new List<(string, string)>();
        var rounding = CatalogStore.ParseRounding(request.RoundingMode ?? "half_even");
        if (rounding is null)
            errors.Add(("roundingMode", $"roundingMode '{request.RoundingMode}' is unknown: half_even, half_up, up or down."));
        if (request.GracePeriodDays is < 0 or > 60)
            errors.Add(("gracePeriodDays", $"gracePeriodDays {request.GracePeriodDays} must be from 0 to 60."));
        if (errors.Count > 0)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.Invalid(errors));
            return;
        }
        await post.ExecuteAsync(http, caller.TenantId, body, async (connection, ct) => new PostOutcome(new ApiResult(200,
            ToBody(await CatalogStore.SetSettingsAsync(connection, caller.TenantId, new BillingSettingsRow(rounding!.Value, request.GracePeriodDays ?? 0), ct)))));
    }

    private static SettingsBody ToBody(BillingSettingsRow row) => new(CatalogStore.FormatRounding(row.Rounding), row.GracePeriodDays);

    // Customers

    private async Task CreateCustomerAsync(HttpContext http)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Admin) is not { } caller
            || await ApiHttp.ReadAsync<CustomerRequest>(http) is not ({ } body, { } request))
            return;
        var errors = new List<(string, string)>();
        if (string.IsNullOrEmpty(request.Id))
            errors.Add(("id", "id is required: the customer id that the customer's usage events carry."));
        else if (Encoding.UTF8.GetByteCount(request.Id) > MaxCustomerIdBytes || request.Id.Any(char.IsControl))
            errors.Add(("id", $"id must be at most {MaxCustomerIdBytes} bytes of UTF-8 without control characters, like the customer of an event."));
        CheckName(request.Name, "name", errors);
        if (request.Email is { } email && (email.Length > MaxEmailLength || email.IndexOf('@', StringComparison.Ordinal) is <= 0 || email.EndsWith('@')))
            errors.Add(("email", $"email '{PlanDefinition.Truncate(email)}' is not an email address of at most {MaxEmailLength} characters."));
        if (!Currency.TryGet(request.Currency, out _))
            errors.Add(("currency", $"currency {(request.Currency is null ? "is required" : $"'{request.Currency}' is not an ISO 4217 code")} (for example USD)."));
        string timezone = request.BillingTimezone ?? "UTC";
        if (!TimeZoneInfo.TryFindSystemTimeZoneById(timezone, out _))
            errors.Add(("billingTimezone", $"billingTimezone '{PlanDefinition.Truncate(timezone)}' is not an IANA time zone (for example Europe/Berlin)."));
        if (errors.Count > 0)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.Invalid(errors));
            return;
        }
        await post.ExecuteAsync(http, caller.TenantId, body, async (connection, ct) =>
            await CatalogStore.CreateCustomerAsync(connection, caller.TenantId,
                new CustomerRow(request.Id!, request.Name!, request.Email, request.Currency!, timezone, default), ct) is { } created
                ? new PostOutcome(new ApiResult(201, ToBody(created)))
                : new PostOutcome(ApiHttp.Error(409, "already_exists", $"customer '{request.Id}' already exists", "id")));
    }

    private async Task ListCustomersAsync(HttpContext http)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Read) is not { } caller)
            return;
        if (ApiHttp.ParsePaging(http, out int limit, out var cursor) is { } invalid)
        {
            await ApiHttp.WriteAsync(http, invalid);
            return;
        }
        await using var connection = await database.DataSource.OpenConnectionAsync(http.RequestAborted);
        var rows = await CatalogStore.ListCustomersAsync(connection, caller.TenantId, cursor, limit + 1, http.RequestAborted);
        await ApiHttp.WriteAsync(http, new ApiResult(200, ApiHttp.Page(rows, limit, ToBody, c => c.Id)));
    }

    private async Task GetCustomerAsync(HttpContext http, string id)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Read) is not { } caller)
            return;
        await using var connection = await database.DataSource.OpenConnectionAsync(http.RequestAborted);
        await ApiHttp.WriteAsync(http, await CatalogStore.GetCustomerAsync(connection, caller.TenantId, id, http.RequestAborted) is { } row
            ? new ApiResult(200, ToBody(row))
            : ApiHttp.NotFound($"there is no customer '{PlanDefinition.Truncate(id)}'"));
    }

    private static CustomerBody ToBody(CustomerRow c) => new(c.Id, c.Name, c.Email, c.Currency, c.BillingTimezone, ApiHttp.Rfc3339(c.CreatedAt));

    // Plans

    private async Task CreatePlanAsync(HttpContext http)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Admin) is not { } caller
            || await ApiHttp.ReadAsync<PlanRequest>(http) is not ({ } body, { } request))
            return;
        var errors = new List<(string Field, string Message)>();
        PlanDefinition.CheckCode(request.Code, "code", errors);
        CheckName(request.Name, "name", errors);
        if (request.Version is null)
            errors.Add(("version", "version is required: the plan's first version (currency, interval, fees, charges)."));
        var plan = request.Version?.ToPlanVersion(request.Code ?? "", 1, meter => usage.FindMeter(caller.TenantId, meter), errors);
        CheckEntitlementMeters(caller.TenantId, plan, errors);
        if (errors.Count > 0 || plan is null)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.Invalid(Prefixed(errors, request.Version)));
            return;
        }
        await post.ExecuteAsync(http, caller.TenantId, body, async (connection, ct) =>
        {
            if (!await CatalogStore.CreatePlanAsync(connection, caller.TenantId, request.Code!, request.Name!, ct))
                return new PostOutcome(ApiHttp.Error(409, "already_exists", $"plan '{request.Code}' already exists; add a version with POST /v1/plans/{request.Code}/versions", "code"));
            var version = await CatalogStore.AddVersionAsync(connection, caller.TenantId, request.Code!, request.Version!, ct);
            return new PostOutcome(new ApiResult(201, new PlanBody(request.Code!, request.Name!, version.Version, [ToBody(version)])));
        });
    }

    /// <summary>An entitlement limits one of the tenant's meters.</summary>
    private void CheckEntitlementMeters(string tenant, PlanVersion? plan, List<(string Field, string Message)> errors)
    {
        for (int i = 0; i < (plan?.Entitlements.Length ?? 0); i++)
        {
            if (usage.FindMeter(tenant, plan!.Entitlements[i].MeterCode) is null)
                errors.Add(($"entitlements[{i}].meter", $"there is no meter '{PlanDefinition.Truncate(plan.Entitlements[i].MeterCode)}'; create it first (POST /v1/meters)."));
        }
    }

    /// <summary>The plan's fields sit under <c>version</c> in a create request.</summary>
    private static List<(string Field, string Message)> Prefixed(List<(string Field, string Message)> errors, PlanDefinition? version) =>
        errors.Select(e => e.Field is "code" or "name" or "version" || version is null ? e : ("version." + e.Field, e.Message)).ToList();

    private async Task ListPlansAsync(HttpContext http)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Read) is not { } caller)
            return;
        if (ApiHttp.ParsePaging(http, out int limit, out var cursor) is { } invalid)
        {
            await ApiHttp.WriteAsync(http, invalid);
            return;
        }
        await using var connection = await database.DataSource.OpenConnectionAsync(http.RequestAborted);
        var rows = await CatalogStore.ListPlansAsync(connection, caller.TenantId, cursor, limit + 1, http.RequestAborted);
        await ApiHttp.WriteAsync(http, new ApiResult(200, ApiHttp.Page(rows, limit, p => new PlanBody(p.Code, p.Name, p.LatestVersion, null), p => p.Code)));
    }

    private async Task GetPlanAsync(HttpContext http, string code)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Read) is not { } caller)
            return;
        await using var connection = await database.DataSource.OpenConnectionAsync(http.RequestAborted);
        if (await CatalogStore.GetPlanAsync(connection, caller.TenantId, code, http.RequestAborted) is not { } plan)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.NotFound($"there is no plan '{PlanDefinition.Truncate(code)}'"));
            return;
        }
        var versions = await CatalogStore.ListVersionsAsync(connection, caller.TenantId, code, http.RequestAborted);
        await ApiHttp.WriteAsync(http, new ApiResult(200, new PlanBody(plan.Code, plan.Name, plan.LatestVersion, versions.Select(ToBody).ToList())));
    }

    private async Task AddVersionAsync(HttpContext http, string code)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Admin) is not { } caller
            || await ApiHttp.ReadAsync<PlanDefinition>(http) is not ({ } body, { } definition))
            return;
        var errors = new List<(string Field, string Message)>();
        var plan = definition.ToPlanVersion(code, 1, meter => usage.FindMeter(caller.TenantId, meter), errors);
        CheckEntitlementMeters(caller.TenantId, plan, errors);
        if (plan is null || errors.Count > 0)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.Invalid(errors));
            return;
        }
        await post.ExecuteAsync(http, caller.TenantId, body, async (connection, ct) =>
        {
            if (await CatalogStore.GetPlanAsync(connection, caller.TenantId, code, ct) is null)
                return new PostOutcome(ApiHttp.NotFound($"there is no plan '{PlanDefinition.Truncate(code)}'"));
            var version = await CatalogStore.AddVersionAsync(connection, caller.TenantId, code, definition, ct);
            return new PostOutcome(new ApiResult(201, ToBody(version)));
        });
    }

    private async Task GetVersionAsync(HttpContext http, string code, int version)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Read) is not { } caller)
            return;
        await using var connection = await database.DataSource.OpenConnectionAsync(http.RequestAborted);
        await ApiHttp.WriteAsync(http, await CatalogStore.GetVersionAsync(connection, caller.TenantId, code, version, http.RequestAborted) is { } row
            ? new ApiResult(200, ToBody(row))
            : ApiHttp.NotFound($"there is no version {version} of plan '{PlanDefinition.Truncate(code)}'"));
    }

    private static PlanVersionBody ToBody(PlanVersionRow v) =>
        new(v.PlanCode, v.Version, JsonSerializer.Deserialize<JsonElement>(v.Definition), ApiHttp.Rfc3339(v.CreatedAt));

    // Subscriptions

    private async Task CreateSubscriptionAsync(HttpContext http)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Admin) is not { } caller
            || await ApiHttp.ReadAsync<SubscriptionRequest>(http) is not ({ } body, { } request))
            return;
        var errors = new List<(string, string)>();
        if (string.IsNullOrEmpty(request.Customer))
            errors.Add(("customer", "customer is required."));
        if (string.IsNullOrEmpty(request.Plan))
            errors.Add(("plan", "plan is required: a plan code."));
        if (request.PlanVersion is < 1)
            errors.Add(("planVersion", "planVersion starts at 1; leave it out for the plan's latest version."));
        var start = ParseDate(request.StartDate, "startDate", required: true, errors);
        var anchor = ParseDate(request.BillingAnchor, "billingAnchor", required: false, errors);
        if (errors.Count > 0)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.Invalid(errors));
            return;
        }
        await post.ExecuteAsync(http, caller.TenantId, body, async (connection, ct) =>
        {
            if (await CatalogStore.GetCustomerAsync(connection, caller.TenantId, request.Customer!, ct) is not { } customer)
                return new PostOutcome(ApiHttp.Error(404, "not_found", $"there is no customer '{PlanDefinition.Truncate(request.Customer!)}'", "customer"));
            if (await CatalogStore.GetVersionAsync(connection, caller.TenantId, request.Plan!, request.PlanVersion, ct) is not { } version)
                return new PostOutcome(ApiHttp.Error(404, "not_found", $"there is no plan '{PlanDefinition.Truncate(request.Plan!)}'"
                    + (request.PlanVersion is { } n ? $" version {n}" : ""), "plan"));
            if (version.Currency != customer.Currency)
                return new PostOutcome(ApiHttp.BadRequest($"plan '{version.PlanCode}' v{version.Version} bills in {version.Currency} but customer '{customer.Id}' pays in {customer.Currency}.", "plan"));
            string id = "sub_" + Guid.CreateVersion7().ToString("N");
            await CatalogStore.CreateSubscriptionAsync(connection, caller.TenantId, id, customer.Id, version.PlanCode, version.Version, start!.Value,
                anchor ?? start.Value, ct);
            var created = await CatalogStore.GetSubscriptionAsync(connection, caller.TenantId, id, forUpdate: false, ct);
            var plan = version.ToPlanVersion();
            return new PostOutcome(new ApiResult(201, ToBody(created!))) { AfterCommit = c => ApplyLimitsAsync(caller.TenantId, customer.Id, plan, c) };
        });
    }

    private async Task ListSubscriptionsAsync(HttpContext http)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Read) is not { } caller)
            return;
        if (ApiHttp.ParsePaging(http, out int limit, out var cursor, "customer") is { } invalid)
        {
            await ApiHttp.WriteAsync(http, invalid);
            return;
        }
        string? customer = http.Request.Query["customer"] is { Count: > 0 } c ? c.ToString() : null;
        await using var connection = await database.DataSource.OpenConnectionAsync(http.RequestAborted);
        var rows = await CatalogStore.ListSubscriptionsAsync(connection, caller.TenantId, customer, cursor, limit + 1, http.RequestAborted);
        await ApiHttp.WriteAsync(http, new ApiResult(200, ApiHttp.Page(rows, limit, ToBody, s => s.Id)));
    }

    private async Task GetSubscriptionAsync(HttpContext http, string id)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Read) is not { } caller)
            return;
        await using var connection = await database.DataSource.OpenConnectionAsync(http.RequestAborted);
        await ApiHttp.WriteAsync(http, await CatalogStore.GetSubscriptionAsync(connection, caller.TenantId, id, forUpdate: false, http.RequestAborted) is { } row
            ? new ApiResult(200, ToBody(row))
            : NoSubscription(id));
    }

    private static ApiResult NoSubscription(string id) => ApiHttp.NotFound($"there is no subscription '{PlanDefinition.Truncate(id)}'");

    /// <summary><c>at</c>: <c>period_end</c> (default: service runs to the end of the period that holds <c>date</c>,
    /// today by default) or <c>now</c> (service ends on <c>date</c>; the final invoice credits unused in-advance fees).</summary>
    private async Task CancelSubscriptionAsync(HttpContext http, string id)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Admin) is not { } caller
            || await ApiHttp.ReadAsync<CancelRequest>(http) is not ({ } body, { } request))
            return;
        var errors = new List<(string, string)>();
        if (request.At is not (null or "period_end" or "now"))
            errors.Add(("at", $"at '{request.At}' is unknown: period_end or now."));
        var date = ParseDate(request.Date, "date", required: false, errors) ?? DateOnly.FromDateTime(time.GetUtcNow().UtcDateTime);
        if (errors.Count > 0)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.Invalid(errors));
            return;
        }
        await post.ExecuteAsync(http, caller.TenantId, body, async (connection, ct) =>
        {
            if (await CatalogStore.GetSubscriptionAsync(connection, caller.TenantId, id, forUpdate: true, ct) is not { } subscription)
                return new PostOutcome(NoSubscription(id));
            if (subscription.EndDate is { } ended)
                return new PostOutcome(ApiHttp.Error(409, "conflict", $"subscription '{id}' already ends on {ended:yyyy-MM-dd}."));
            if (date < subscription.StartDate)
                return new PostOutcome(ApiHttp.BadRequest($"date {date:yyyy-MM-dd} is before the subscription's start {subscription.StartDate:yyyy-MM-dd}.", "date"));
            var interval = (await BillingPlans.PhasePlanAsync(connection, caller.TenantId, subscription.Phases[^1], ct)).Interval;
            bool atPeriodEnd = request.At is null or "period_end";
            var end = atPeriodEnd ? interval.PeriodContaining(date, subscription.BillingAnchor).End : date;
            if (await BillingPlans.LastInvoicedDateAsync(connection, caller.TenantId, id, ct) is { } invoiced && end < invoiced)
                return new PostOutcome(ApiHttp.BadRequest($"date {date:yyyy-MM-dd} is before {invoiced:yyyy-MM-dd}, which is already invoiced.", "date"));
            await CatalogStore.SetEndAsync(connection, caller.TenantId, id, end, atPeriodEnd, ct);
            return new PostOutcome(new ApiResult(200, ToBody((await CatalogStore.GetSubscriptionAsync(connection, caller.TenantId, id, forUpdate: false, ct))!)));
        });
    }

    /// <summary>Moves the subscription to another plan version from <c>effectiveDate</c> (the new plan serves that day).
    /// In-advance fees are prorated: the unused part of the old fee is credited and the new fee charged for the rest of
    /// the period, on an invoice dated the change; usage is billed at the period's end under the plan of each day.</summary>
    private async Task ChangePlanAsync(HttpContext http, string id)
    {
        if (await ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Admin) is not { } caller
            || await ApiHttp.ReadAsync<ChangePlanRequest>(http) is not ({ } body, { } request))
            return;
        var errors = new List<(string, string)>();
        if (string.IsNullOrEmpty(request.Plan))
            errors.Add(("plan", "plan is required: a plan code."));
        if (request.PlanVersion is < 1)
            errors.Add(("planVersion", "planVersion starts at 1; leave it out for the plan's latest version."));
        var on = ParseDate(request.EffectiveDate, "effectiveDate", required: true, errors);
        if (errors.Count > 0)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.Invalid(errors));
            return;
        }
        await post.ExecuteAsync(http, caller.TenantId, body, async (connection, ct) =>
        {
            if (await CatalogStore.GetSubscriptionAsync(connection, caller.TenantId, id, forUpdate: true, ct) is not { } subscription)
                return new PostOutcome(NoSubscription(id));
            if (await CatalogStore.GetVersionAsync(connection, caller.TenantId, request.Plan!, request.PlanVersion, ct) is not { } target)
                return new PostOutcome(ApiHttp.Error(404, "not_found", $"there is no plan '{PlanDefinition.Truncate(request.Plan!)}'"
                    + (request.PlanVersion is { } n ? $" version {n}" : ""), "plan"));
            var open = subscription.Phases[^1];
            var current = await BillingPlans.PhasePlanAsync(connection, caller.TenantId, open, ct);
            var next = target.ToPlanVersion();
            string? problem = null;
            if (next.CurrencyCode != current.CurrencyCode)
                problem = $"plan '{target.PlanCode}' v{target.Version} bills in {next.CurrencyCode}, the subscription in {current.CurrencyCode}; a plan change keeps the currency.";
            else if (next.Interval != current.Interval)
                problem = $"plan '{target.PlanCode}' v{target.Version} has another billing interval; a plan change keeps the interval (cancel and subscribe instead).";
            else if (on!.Value <= open.StartsOn)
                problem = $"effectiveDate {on:yyyy-MM-dd} must be after the current plan's start {open.StartsOn:yyyy-MM-dd}.";
            else if (subscription.EndDate is { } end && on.Value >= end)
                problem = $"effectiveDate {on:yyyy-MM-dd} is not before the subscription's end {end:yyyy-MM-dd}.";
            else if (await BillingPlans.LastInvoicedDateAsync(connection, caller.TenantId, id, ct) is { } invoiced && on.Value < invoiced)
                problem = $"effectiveDate {on:yyyy-MM-dd} is before {invoiced:yyyy-MM-dd}, which is already invoiced.";
            if (problem is not null)
                return new PostOutcome(ApiHttp.BadRequest(problem, problem.StartsWith("effectiveDate", StringComparison.Ordinal) ? "effectiveDate" : "plan"));
            await CatalogStore.ChangePlanAsync(connection, caller.TenantId, subscription, target.PlanCode, target.Version, on!.Value, ct);
            return new PostOutcome(new ApiResult(200, ToBody((await CatalogStore.GetSubscriptionAsync(connection, caller.TenantId, id, forUpdate: false, ct))!)))
            {
                AfterCommit = c => ApplyLimitsAsync(caller.TenantId, subscription.CustomerId, next, c),
            };
        });
    }

    /// <summary>The plan's entitlements become the customer's limits in the aggregator's entitlement checks. They follow the
    /// latest subscription or plan change made through the API (a customer with several subscriptions gets those of the
    /// last one); limits are per calendar month in the aggregator.</summary>
    private Task ApplyLimitsAsync(string tenant, string customer, PlanVersion plan, CancellationToken cancellationToken) =>
        usage.ApplyLimitsAsync(tenant, customer, plan.Entitlements.ToDictionary(e => e.MeterCode, e => e.Limit), cancellationToken);

    private static SubscriptionBody ToBody(SubscriptionRow s) => new(s.Id, s.CustomerId, s.Phases[^1].PlanCode, s.Phases[^1].PlanVersion,
        ApiHttp.Date(s.StartDate), ApiHttp.Date(s.BillingAnchor), s.EndDate is { } e ? ApiHttp.Date(e) : null, s.CancelAtPeriodEnd,
        s.EndDate is null ? "active" : "ending", ApiHttp.Rfc3339(s.CreatedAt),
        s.Phases.Select(p => new PhaseBody(p.PlanCode, p.PlanVersion, ApiHttp.Date(p.StartsOn), p.EndsOn is { } e ? ApiHttp.Date(e) : null)).ToList());

    // Validation

    private static void CheckName(string? name, string field, List<(string, string)> errors)
    {
        if (string.IsNullOrWhiteSpace(name))
            errors.Add((field, $"{field} is required and not blank."));
        else if (name.Length > MaxNameLength)
            errors.Add((field, $"{field} is {name.Length} characters; at most {MaxNameLength}."));
    }

    /// <summary>A calendar day, <c>yyyy-MM-dd</c> (billing days are UTC days).</summary>
    internal static DateOnly? ParseDate(string? text, string field, bool required, List<(string, string)> errors)
    {
        if (text is null)
        {
            if (required)
                errors.Add((field, $"{field} is required: a day as yyyy-MM-dd."));
            return null;
        }
        if (DateOnly.TryParseExact(text, "yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.None, out var day)
            && day.Year is >= 2000 and <= 2200)
            return day;
        errors.Add((field, $"{field} '{PlanDefinition.Truncate(text)}' is not a day as yyyy-MM-dd between 2000 and 2200."));
        return null;
    }

    private sealed class SettingsRequest
    {
        public string? RoundingMode { get; set; }
        public int? GracePeriodDays { get; set; }
    }

    private sealed class CustomerRequest
    {
        public string? Id { get; set; }
        public string? Name { get; set; }
        public string? Email { get; set; }
        public string? Currency { get; set; }
        public string? BillingTimezone { get; set; }
    }

    private sealed class PlanRequest
    {
        public string? Code { get; set; }
        public string? Name { get; set; }
        public PlanDefinition? Version { get; set; }
    }

    private sealed class SubscriptionRequest
    {
        public string? Customer { get; set; }
        public string? Plan { get; set; }
        public int? PlanVersion { get; set; }
        public string? StartDate { get; set; }
        public string? BillingAnchor { get; set; }
    }

    private sealed class CancelRequest
    {
        public string? At { get; set; }
        public string? Date { get; set; }
    }

    private sealed class ChangePlanRequest
    {
        public string? Plan { get; set; }
        public int? PlanVersion { get; set; }
        public string? EffectiveDate { get; set; }
    }

    private sealed record SettingsBody(string RoundingMode, int GracePeriodDays);

    private sealed record CustomerBody(string Id, string Name, string? Email, string Currency, string BillingTimezone, string CreatedAt);

    private sealed record PlanBody(string Code, string Name, int LatestVersion, IReadOnlyList<PlanVersionBody>? Versions);

    private sealed record PlanVersionBody(string Plan, int Version, JsonElement Definition, string CreatedAt);

    private sealed record SubscriptionBody(string Id, string Customer, string Plan, int PlanVersion, string StartDate, string BillingAnchor,
        string? EndDate, bool CancelAtPeriodEnd, string Status, string CreatedAt, IReadOnlyList<PhaseBody> Phases);

    private sealed record PhaseBody(string Plan, int PlanVersion, string StartsOn, string? EndsOn);
}
