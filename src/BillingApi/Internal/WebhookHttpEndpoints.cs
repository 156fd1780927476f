using System.Text.Json.Serialization;
using AlphaMesh.Ingest;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>
/// <c>/v1/webhook-endpoints</c>: the caller's tenant's webhook endpoints and their delivery records. Every call needs
/// an admin key and sees only its own tenant: another tenant's endpoint is a 404, like one that does not exist.
/// </summary>
internal sealed class WebhookHttpEndpoints(IApiKeyStore keys, WebhookStore store, IdempotentPost post)
{
    /// <summary>Subscribes an endpoint to every type, also types added later.</summary>
    public const string AllTypes = "*";

    private const int MaxUrlLength = 2048;
    private const int MaxDescriptionLength = 500;

    public void Map(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPost("/v1/webhook-endpoints", CreateAsync);
        endpoints.MapGet("/v1/webhook-endpoints", ListAsync);
        endpoints.MapGet("/v1/webhook-endpoints/{id}", GetAsync);
        endpoints.MapDelete("/v1/webhook-endpoints/{id}", DeleteAsync);
        endpoints.MapGet("/v1/webhook-endpoints/{id}/deliveries", ListDeliveriesAsync);
    }

    private async Task CreateAsync(HttpContext http)
    {
        if (await AuthorizeAsync(http) is not { } principal)
            return;
        if (await ApiHttp.ReadAsync<CreateRequest>(http) is not ({ } body, { } request))
            return;
        var errors = new List<(string Field, string Message)>();
        ValidateUrl(request.Url, errors);
        var eventTypes = ParseEventTypes(request.EventTypes, errors);
        if (request.Description is { Length: > MaxDescriptionLength } description)
            errors.Add(("description", $"description is {description.Length} characters; at most {MaxDescriptionLength}."));
        if (errors.Count > 0)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.Invalid(errors));
            return;
        }
        await post.ExecuteAsync(http, principal.TenantId, body, async (connection, ct) =>
        {
            var secret = WebhookSignature.NewSecret();
            var created = await WebhookStore.CreateEndpointAsync(connection, principal.TenantId, request.Url!, request.Description ?? "", eventTypes, secret, ct);
            // The secret is shown once, like an API key: a replay of this POST answers the endpoint without it, so that
            // secrets are not copied into the stored answers.
            return new PostOutcome(new ApiResult(201, ToBody(created, secret)), new ApiResult(201, ToBody(created, null)));
        });
    }

    private async Task ListAsync(HttpContext http)
    {
        if (await AuthorizeAsync(http) is not { } principal)
            return;
        if (ApiHttp.ParsePaging(http, out int limit, out var cursor) is { } invalid)
        {
            await ApiHttp.WriteAsync(http, invalid);
            return;
        }
        if (await ParseGuidCursorAsync(http, cursor) is not (true, var after))
            return;
        var rows = await store.ListEndpointsAsync(principal.TenantId, after, limit + 1, http.RequestAborted);
        await ApiHttp.WriteAsync(http, new ApiResult(200, ApiHttp.Page(rows, limit, e => ToBody(e, null), e => e.Id.ToString())));
    }

    private async Task GetAsync(HttpContext http, string id)
    {
        if (await FindAsync(http, id) is { } endpoint)
            await ApiHttp.WriteAsync(http, new ApiResult(200, ToBody(endpoint, null)));
    }

    private async Task DeleteAsync(HttpContext http, string id)
    {
        if (await AuthorizeAsync(http) is not { } principal)
            return;
        var deleted = Guid.TryParse(id, out var endpointId) ? await store.DeleteEndpointAsync(principal.TenantId, endpointId, http.RequestAborted) : null;
        await ApiHttp.WriteAsync(http, deleted is null ? NotFound(id) : new ApiResult(200, ToBody(deleted, null)));
    }

    private async Task ListDeliveriesAsync(HttpContext http, string id)
    {
        if (await FindAsync(http, id) is not { } endpoint)
            return;
        if (ApiHttp.ParsePaging(http, out int limit, out var cursor) is { } invalid)
        {
            await ApiHttp.WriteAsync(http, invalid);
            return;
        }
        if (await ParseGuidCursorAsync(http, cursor) is not (true, var before))
            return;
        var rows = await store.ListDeliveriesAsync(endpoint.Id, before, limit + 1, http.RequestAborted);
        await ApiHttp.WriteAsync(http, new ApiResult(200, ApiHttp.Page(rows, limit, ToBody, d => d.EventId.ToString())));
    }

    private Task<ApiPrincipal?> AuthorizeAsync(HttpContext http) => ApiHttp.AuthorizeAsync(http, keys, ApiScopes.Admin);

    /// <summary>The Guid a cursor of this API holds; answers the 400 itself when it holds something else.</summary>
    private static async Task<(bool Ok, Guid? After)> ParseGuidCursorAsync(HttpContext http, string? cursor)
    {
        if (cursor is null)
            return (true, null);
        if (Guid.TryParse(cursor, out var id))
            return (true, id);
        await ApiHttp.WriteAsync(http, ApiHttp.BadRequest("cursor is not one this API returned; pass nextCursor from the previous page unchanged.", "cursor"));
        return (false, null);
    }

    /// <summary>Authorizes and finds an endpoint of the caller's tenant; answers 401/403/404 itself and returns null.</summary>
    private async Task<WebhookEndpointRow?> FindAsync(HttpContext http, string id)
    {
        if (await AuthorizeAsync(http) is not { } principal)
            return null;
        var endpoint = Guid.TryParse(id, out var endpointId) ? await store.GetEndpointAsync(principal.TenantId, endpointId, http.RequestAborted) : null;
        if (endpoint is null)
            await ApiHttp.WriteAsync(http, NotFound(id));
        return endpoint;
    }

    private static ApiResult NotFound(string id) => ApiHttp.NotFound($"there is no webhook endpoint '{id}'");

    private static void ValidateUrl(string? url, List<(string, string)> errors)
    {
        if (string.IsNullOrWhiteSpace(url))
            errors.Add(("url", "url is required: the absolute http or https URL that receives the events."));
        else if (url.Length > MaxUrlLength)
            errors.Add(("url", $"url is {url.Length} characters; at most {MaxUrlLength}."));
        else if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.Host.Length == 0)
            errors.Add(("url", $"url '{url}' is not an absolute http or https URL."));
    }

    /// <summary>Left out: every type (<c>["*"]</c>). Otherwise known types, each once, or <c>"*"</c> alone.</summary>
    private static string[] ParseEventTypes(string[]? eventTypes, List<(string, string)> errors)
    {
        if (eventTypes is null)
            return [AllTypes];
        var known = string.Join(", ", WebhookEventTypes.All.Select(t => '"' + t + '"'));
        if (eventTypes.Length == 0)
            errors.Add(("eventTypes", $"eventTypes lists no type: name one or more of {known}, or leave it out (or [\"*\"]) for every type."));
        foreach (var type in eventTypes)
        {
            if (type != AllTypes && !WebhookEventTypes.IsKnown(type))
                errors.Add(("eventTypes", $"eventTypes: '{type}' is not an event type (one of {known}, or \"*\" for every type)."));
        }
        if (eventTypes.Contains(AllTypes) && eventTypes.Length > 1)
            errors.Add(("eventTypes", "eventTypes: \"*\" stands for every type and cannot be listed with other types."));
        return eventTypes.Distinct(StringComparer.Ordinal).ToArray();
    }

    private static EndpointBody ToBody(WebhookEndpointRow endpoint, string? secret) => new(
        endpoint.Id.ToString(), endpoint.TenantId, endpoint.Url, endpoint.Description, endpoint.EventTypes, ApiHttp.Rfc3339(endpoint.CreatedAt), secret);

    private static DeliveryBody ToBody(WebhookDeliveryRow delivery) => new(
        delivery.Id.ToString(), delivery.EventId.ToString(), delivery.EventType, delivery.Status, delivery.AttemptCount, ApiHttp.Rfc3339(delivery.CreatedAt),
        Time(delivery.NextAttemptAt), Time(delivery.CompletedAt),
        delivery.Attempts.Select(a => new AttemptBody(a.Number, ApiHttp.Rfc3339(a.StartedAt), Time(a.FinishedAt), a.HttpStatus, a.Error,
            a.DurationMs is { } ms ? Math.Round(ms, 3) : null)).ToList());

    private static string? Time(DateTime? utc) => utc is { } t ? ApiHttp.Rfc3339(t) : null;

    private sealed class CreateRequest
    {
        public string? Url { get; set; }
        public string[]? EventTypes { get; set; }
        public string? Description { get; set; }
    }

    /// <summary><c>secret</c> is present only in the answer to the POST that created the endpoint.</summary>
    private sealed record EndpointBody(string Id, string Tenant, string Url, string Description, string[] EventTypes, string CreatedAt,
        [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Secret);

    /// <summary>One delivery of an event to the endpoint. <c>status</c>: pending, delivered, failed (retries ran out of
    /// time) or canceled (the endpoint was deleted); <c>nextAttemptAt</c> is set while pending.</summary>
    private sealed record DeliveryBody(string Id, string EventId, string EventType, string Status, int AttemptCount, string CreatedAt,
        string? NextAttemptAt, string? CompletedAt, List<AttemptBody> Attempts);

    /// <summary>One attempt: <c>httpStatus</c> is the receiver's answer (null when none came: then <c>error</c> says why);
    /// <c>finishedAt</c> is null while the attempt runs.</summary>
    private sealed record AttemptBody(int Number, string StartedAt, string? FinishedAt, int? HttpStatus, string? Error, double? DurationMs);
}
