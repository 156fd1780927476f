using System.Text.Json.Serialization;
using AlphaMesh.Ingest;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>
/// <c>/v1/tenants</c> and <c>/v1/tenants/{tenant}/api-keys</c>. Every call needs an admin key. An admin key of the
/// operator tenant (<see cref="BillingOptions.OperatorTenant"/>) creates tenants and manages any tenant's keys; any
/// other admin key sees only its own tenant, and another tenant looks exactly like one that does not exist (404).
/// </summary>
internal sealed class TenantHttpEndpoints(IApiKeyStore keys, PostgresApiKeyStore databaseKeys, TenantStore store, IdempotentPost post,
    IOptions<BillingOptions> options)
{
    private const int MaxTenantIdLength = 64;
    private const int MaxNameLength = 200;

    public void Map(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPost("/v1/tenants", ApiDocs.Handler(CreateTenantAsync)).Writes<CreateTenantRequest, TenantBody>("Tenants", "Creates a tenant (operator only)");
        endpoints.MapGet("/v1/tenants", ApiDocs.Handler(ListTenantsAsync)).Reads<PageBody<TenantBody>>("Tenants", "Lists tenants");
        endpoints.MapGet("/v1/tenants/{tenant}", GetTenantAsync).Reads<TenantBody>("Tenants", "Reads a tenant");
        endpoints.MapPost("/v1/tenants/{tenant}/api-keys", CreateKeyAsync).Writes<CreateKeyRequest, ApiKeyBody>("Tenants", "Issues an API key (shown once)");
        endpoints.MapGet("/v1/tenants/{tenant}/api-keys", ListKeysAsync).Reads<PageBody<ApiKeyBody>>("Tenants", "Lists a tenant's keys (prefix only)");
        endpoints.MapDelete("/v1/tenants/{tenant}/api-keys/{id}", RevokeKeyAsync).Reads<ApiKeyBody>("Tenants", "Revokes a key");
    }

    private bool IsOperator(ApiPrincipal principal) => principal.TenantId == options.Value.OperatorTenant;

    private async Task CreateTenantAsync(HttpContext http)
    {
        if (ApiHttp.Authorize(http, keys, ApiScopes.Admin, out var principal) is { } denied)
        {
            await ApiHttp.WriteAsync(http, denied);
            return;
        }
        if (!IsOperator(principal))
        {
            await ApiHttp.WriteAsync(http, ApiHttp.Error(403, "permission_denied",
                $"only an admin key of the operator tenant '{options.Value.OperatorTenant}' can create tenants"));
            return;
        }
        if (await ApiHttp.ReadAsync<CreateTenantRequest>(http) is not ({ } body, { } request))
            return;
        var errors = new List<(string Field, string Message)>();
        ValidateTenantId(request.Id, errors);
        ValidateName(request.Name, "name", required: true, errors);
        if (errors.Count > 0)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.Invalid(errors));
            return;
        }
        await post.ExecuteAsync(http, principal.TenantId, body, async (connection, ct) =>
            await TenantStore.CreateTenantAsync(connection, request.Id!, request.Name!, ct) is { } tenant
                ? new PostOutcome(new ApiResult(201, ToBody(tenant)))
                : new PostOutcome(ApiHttp.Error(409, "already_exists", $"tenant '{request.Id}' already exists", "id")));
    }

    private async Task ListTenantsAsync(HttpContext http)
    {
        if (ApiHttp.Authorize(http, keys, ApiScopes.Admin, out var principal) is { } denied)
        {
            await ApiHttp.WriteAsync(http, denied);
            return;
        }
        if (ApiHttp.ParsePaging(http, out int limit, out var cursor) is { } invalid)
        {
            await ApiHttp.WriteAsync(http, invalid);
            return;
        }
        var rows = await store.ListTenantsAsync(IsOperator(principal) ? null : principal.TenantId, cursor, limit + 1, http.RequestAborted);
        await ApiHttp.WriteAsync(http, new ApiResult(200, ApiHttp.Page(rows, limit, ToBody, t => t.Id)));
    }

    private async Task GetTenantAsync(HttpContext http, string tenant)
    {
        if (await FindTenantAsync(http, tenant) is { } found)
            await ApiHttp.WriteAsync(http, new ApiResult(200, ToBody(found.Row)));
    }

    private async Task CreateKeyAsync(HttpContext http, string tenant)
    {
        if (await FindTenantAsync(http, tenant) is not ({ } row, { } caller))
            return;
        if (await ApiHttp.ReadAsync<CreateKeyRequest>(http) is not ({ } body, { } request))
            return;
        var errors = new List<(string Field, string Message)>();
        ValidateName(request.Name, "name", required: false, errors);
        var scopes = ParseScopes(request.Scopes, errors);
        if (errors.Count > 0)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.Invalid(errors));
            return;
        }
        // The idempotency record belongs to the caller's tenant: it is the caller who retries.
        await post.ExecuteAsync(http, caller.TenantId, body, async (connection, ct) =>
        {
            var key = ApiKey.Generate();
            var created = await TenantStore.CreateKeyAsync(connection, row.Id, request.Name ?? "", scopes, key, ct);
            // The key is shown once. A replay of this POST answers the same key record without the secret: storing the
            // secret for replays would defeat keeping only its hash.
            return new PostOutcome(new ApiResult(201, ToBody(created, key)), new ApiResult(201, ToBody(created, null)));
        });
        // Take the new key into use on this server now; other servers see it within the refresh interval.
        await databaseKeys.RefreshAsync(CancellationToken.None);
    }

    private async Task ListKeysAsync(HttpContext http, string tenant)
    {
        if (await FindTenantAsync(http, tenant) is not ({ } row, _))
            return;
        if (ApiHttp.ParsePaging(http, out int limit, out var cursor) is { } invalid)
        {
            await ApiHttp.WriteAsync(http, invalid);
            return;
        }
        Guid? after = null;
        if (cursor is not null)
        {
            if (!Guid.TryParse(cursor, out var id))
            {
                await ApiHttp.WriteAsync(http, ApiHttp.BadRequest("cursor is not one this API returned; pass nextCursor from the previous page unchanged.", "cursor"));
                return;
            }
            after = id;
        }
        var rows = await store.ListKeysAsync(row.Id, after, limit + 1, http.RequestAborted);
        await ApiHttp.WriteAsync(http, new ApiResult(200, ApiHttp.Page(rows, limit, k => ToBody(k, null), k => k.Id.ToString())));
    }

    private async Task RevokeKeyAsync(HttpContext http, string tenant, string id)
    {
        if (await FindTenantAsync(http, tenant) is not ({ } row, _))
            return;
        var revoked = Guid.TryParse(id, out var keyId) ? await store.RevokeKeyAsync(row.Id, keyId, http.RequestAborted) : null;
        if (revoked is null)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.NotFound($"tenant '{row.Id}' has no API key '{id}'"));
            return;
        }
        // Stop the key on this server before answering; other servers drop it within the refresh interval.
        await databaseKeys.RefreshAsync(CancellationToken.None);
        await ApiHttp.WriteAsync(http, new ApiResult(200, ToBody(revoked, null)));
    }

    /// <summary>Authorizes an admin call on a tenant and finds it; answers 401/403/404 itself and returns null.
    /// Another tenant than the caller's (unless the caller is the operator) is a 404, as if it did not exist.</summary>
    private async Task<(TenantRow Row, ApiPrincipal Caller)?> FindTenantAsync(HttpContext http, string tenant)
    {
        if (ApiHttp.Authorize(http, keys, ApiScopes.Admin, out var principal) is { } denied)
        {
            await ApiHttp.WriteAsync(http, denied);
            return null;
        }
        var row = IsOperator(principal) || principal.TenantId == tenant ? await store.GetTenantAsync(tenant, http.RequestAborted) : null;
        if (row is null)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.NotFound($"there is no tenant '{tenant}'"));
            return null;
        }
        return (row, principal);
    }

    /// <summary>Tenant ids go into every stored key and the event log, so they are short and plain.</summary>
    private static void ValidateTenantId(string? id, List<(string, string)> errors)
    {
        if (string.IsNullOrEmpty(id))
            errors.Add(("id", "id is required."));
        else if (id.Length > MaxTenantIdLength)
            errors.Add(("id", $"id is {id.Length} characters; at most {MaxTenantIdLength}."));
        else if (!id.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-' or '_') || id[0] is '-' or '_')
            errors.Add(("id", $"id '{id}' may use only a-z, 0-9, '-' and '_', and starts with a letter or digit."));
    }

    private static void ValidateName(string? name, string field, bool required, List<(string, string)> errors)
    {
        if (string.IsNullOrWhiteSpace(name))
        {
            if (required || name is not null)
                errors.Add((field, $"{field} is required and not blank."));
        }
        else if (name.Length > MaxNameLength)
        {
            errors.Add((field, $"{field} is {name.Length} characters; at most {MaxNameLength}."));
        }
    }

    private static ApiScopes ParseScopes(string[]? scopes, List<(string, string)> errors)
    {
        if (scopes is null || scopes.Length == 0)
        {
            errors.Add(("scopes", "scopes is required: a list of one or more of \"ingest\", \"read\", \"admin\"."));
            return ApiScopes.None;
        }
        var result = ApiScopes.None;
        foreach (var scope in scopes)
        {
            result |= scope switch
            {
                "ingest" => ApiScopes.Ingest,
                "read" => ApiScopes.Read,
                "admin" => ApiScopes.Admin,
                _ => ApiScopes.None,
            };
            if (scope is not ("ingest" or "read" or "admin"))
                errors.Add(("scopes", $"scope '{scope}' is not one of \"ingest\", \"read\", \"admin\"."));
        }
        return result;
    }

    private static TenantBody ToBody(TenantRow tenant) => new(tenant.Id, tenant.Name, ApiHttp.Rfc3339(tenant.CreatedAt));

    private static ApiKeyBody ToBody(ApiKeyRow key, string? secret) => new(
        key.Id.ToString(), key.TenantId, key.Name, key.Prefix, ApiKey.FormatScopes(key.Scopes).Split(',', StringSplitOptions.RemoveEmptyEntries),
        ApiHttp.Rfc3339(key.CreatedAt), key.RevokedAt is { } r ? ApiHttp.Rfc3339(r) : null, secret);

    private sealed class CreateTenantRequest
    {
        public string? Id { get; set; }
        public string? Name { get; set; }
    }

    private sealed class CreateKeyRequest
    {
        public string? Name { get; set; }
        public string[]? Scopes { get; set; }
    }

    private sealed record TenantBody(string Id, string Name, string CreatedAt);

    /// <summary><c>key</c> is present only in the answer to the POST that created it.</summary>
    private sealed record ApiKeyBody(string Id, string Tenant, string Name, string Prefix, string[] Scopes, string CreatedAt, string? RevokedAt,
        [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Key);
}
