using System.Text.Json;
using System.Text.Json.Serialization;
using AlphaMesh.Ingest;
using AlphaMesh.Ingest.Internal;
using Microsoft.AspNetCore.Http;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>A finished answer: status and body. Kept whole so that an Idempotency-Key can store and replay it.</summary>
internal readonly record struct ApiResult(int Status, object Body);

/// <summary>An RFC 9457 problem: <c>title</c> says what kind of error, <c>detail</c> what exactly is wrong, <c>code</c>
/// is the stable machine-readable kind and <c>field</c> the field or parameter at fault, when one is.</summary>
internal sealed record ProblemBody(string Type, string Title, int Status, string Detail, string Code,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Field = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<FieldError>? Errors = null);

/// <summary>One of several fields at fault in one request.</summary>
internal sealed record FieldError(string Field, string Message);

/// <summary>A page of a list; <c>nextCursor</c> is null on the last page.</summary>
internal sealed record PageBody<T>(IReadOnlyList<T> Data, string? NextCursor);

/// <summary>JSON in and out, errors as <c>application/problem+json</c> (RFC 9457) with the field at fault, bearer
/// authorization like ingest.</summary>
internal static class ApiHttp
{
    public const int MaxBodyBytes = 64 * 1024;

    /// <summary>Web defaults (camelCase); unknown members are an error, so that a typo in a field name is not silently ignored.</summary>
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };

    public const string ProblemContentType = "application/problem+json";

    public static ApiResult Error(int status, string code, string message, string? field = null)
        => new(status, new ProblemBody("https://alphamesh.dev/problems/" + code.Replace('_', '-'), Title(code), status, message, code, field));

    /// <summary>One short title per kind of problem, the same for every occurrence (RFC 9457 3.1.4).</summary>
    private static string Title(string code) => code switch
    {
        "invalid_argument" => "The request is invalid",
        "unauthenticated" => "Authentication is required",
        "permission_denied" => "The API key may not do this",
        "not_found" => "Not found",
        "already_exists" => "It already exists",
        "idempotency_key_reused" => "The Idempotency-Key was used for another request",
        "request_too_large" => "The body is too large",
        "conflict" => "The request conflicts with the current state",
        _ => code.Replace('_', ' '),
    };

    public static ApiResult BadRequest(string message, string? field = null) => Error(400, "invalid_argument", message, field);

    /// <summary>A 400 for every field at fault: <c>detail</c> joins the messages, <c>field</c> names the first and
    /// <c>errors</c> lists them all.</summary>
    public static ApiResult Invalid(IReadOnlyList<(string Field, string Message)> errors)
    {
        var list = errors.Select(e => new FieldError(e.Field, e.Message)).ToList();
        return new(400, new ProblemBody("https://alphamesh.dev/problems/invalid-argument", Title("invalid_argument"), 400,
            string.Join(" ", list.Select(e => e.Message)), "invalid_argument", list[0].Field, list));
    }

    public static ApiResult NotFound(string message) => Error(404, "not_found", message);

    public static async Task WriteAsync(HttpContext http, ApiResult result)
    {
        http.Response.StatusCode = result.Status;
        http.Response.ContentType = result.Status >= 400 ? ProblemContentType : "application/json";
        await JsonSerializer.SerializeAsync(http.Response.Body, result.Body, result.Body.GetType(), Json, http.RequestAborted);
    }

    /// <summary>The caller's principal with the scope, or the 401/403 to answer.</summary>
    public static ApiResult? Authorize(HttpContext http, IApiKeyStore keys, ApiScopes scope, out ApiPrincipal principal)
    {
        var outcome = BearerAuthorization.Check(keys, http.Request.Headers.Authorization, scope, out var found, out var reason);
        principal = found!;
        if (outcome == AuthOutcome.Allowed)
            return null;
        if (outcome == AuthOutcome.Unauthenticated)
        {
            http.Response.Headers.WWWAuthenticate = "Bearer";
            return Error(401, "unauthenticated", reason);
        }
        return Error(403, "permission_denied", reason);
    }

    /// <summary>The caller when its key has <paramref name="scope"/>; otherwise writes the 401/403 and returns null.</summary>
    public static async Task<ApiPrincipal?> AuthorizeAsync(HttpContext http, IApiKeyStore keys, ApiScopes scope)
    {
        if (Authorize(http, keys, scope, out var principal) is { } denied)
        {
            await WriteAsync(http, denied);
            return null;
        }
        return principal;
    }

    /// <summary>The raw body, at most <see cref="MaxBodyBytes"/>; null when it is larger.</summary>
    public static async Task<byte[]?> ReadBodyAsync(HttpContext http)
    {
        if (http.Request.ContentLength > MaxBodyBytes)
            return null;
        // Read at most one byte past the limit, so that a body without a Content-Length cannot grow unbounded.
        var buffer = new byte[MaxBodyBytes + 1];
        int length = 0;
        int read;
        while (length < buffer.Length && (read = await http.Request.Body.ReadAsync(buffer.AsMemory(length), http.RequestAborted)) > 0)
            length += read;
        return length > MaxBodyBytes ? null : buffer[..length];
    }

    /// <summary>Parses a JSON object body; the error result names what is wrong and where.</summary>
    public static T? Parse<T>(byte[] body, out ApiResult? error) where T : class
    {
        error = null;
        try
        {
            if (JsonSerializer.Deserialize<T>(body, Json) is { } value)
                return value;
            error = BadRequest("the body must be a JSON object");
        }
        catch (JsonException e)
        {
            string? field = e.Path is { Length: > 2 } path && path.StartsWith("$.", StringComparison.Ordinal) ? path[2..] : null;
            error = BadRequest("malformed JSON: " + e.Message, field);
        }
        return null;
    }

    /// <summary>Reads and parses a JSON body; answers 413 or 400 itself and returns no request.</summary>
    public static async Task<(byte[]? Body, T? Request)> ReadAsync<T>(HttpContext http) where T : class
    {
        var body = await ApiHttp.ReadBodyAsync(http);
        if (body is null)
        {
            await ApiHttp.WriteAsync(http, ApiHttp.Error(413, "request_too_large", $"the body is over the limit of {ApiHttp.MaxBodyBytes} bytes"));
            return (null, null);
        }
        var request = ApiHttp.Parse<T>(body, out var error);
        if (error is { } e)
            await ApiHttp.WriteAsync(http, e);
        return (body, request);
    }

    /// <summary>A page of at most <paramref name="limit"/> rows out of <paramref name="rows"/>, which holds one row
    /// more when another page follows.</summary>
    public static PageBody<TBody> Page<TRow, TBody>(List<TRow> rows, int limit, Func<TRow, TBody> toBody, Func<TRow, string> sortKey)
    {
        // One row more than the page was read, to know whether another page follows.
        bool more = rows.Count > limit;
        var page = rows.Take(limit).Select(toBody).ToList();
        return new PageBody<TBody>(page, more ? ApiHttp.EncodeCursor(sortKey(rows[limit - 1])) : null);
    }

    /// <summary>Reads <c>limit</c> (1-100, default 50) and <c>cursor</c>; query parameters other than those and
    /// <paramref name="filters"/> are an error.</summary>
    public static ApiResult? ParsePaging(HttpContext http, out int limit, out string? cursor, params string[] filters)
    {
        limit = 50;
        cursor = null;
        foreach (var (name, value) in http.Request.Query)
        {
            if (name == "limit")
            {
                if (!int.TryParse(value.ToString(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out limit)
                    || limit is < 1 or > 100)
                    return BadRequest($"limit '{value}' must be a whole number from 1 to 100.", "limit");
            }
            else if (name == "cursor")
            {
                cursor = DecodeCursor(value.ToString());
                if (cursor is null)
                    return BadRequest("cursor is not one this API returned; pass nextCursor from the previous page unchanged.", "cursor");
            }
            else if (!filters.Contains(name))
            {
                return BadRequest($"unknown query parameter '{name}' (use {string.Join(", ", filters.Append("limit").Append("cursor"))}).", name);
            }
        }
        return null;
    }

    /// <summary>Cursors are opaque to clients (base64url of the last item's sort key), so the sort key can change later.</summary>
    public static string EncodeCursor(string lastKey)
        => Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(lastKey)).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private static string? DecodeCursor(string cursor)
    {
        if (cursor.Length is 0 or > 400)
            return null;
        var base64 = cursor.Replace('-', '+').Replace('_', '/');
        base64 += new string('=', (4 - base64.Length % 4) % 4);
        try
        {
            return System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(base64));
        }
        catch (FormatException)
        {
            return null;
        }
    }

    private static readonly string[] Rfc3339Formats = ["yyyy-MM-dd'T'HH:mm:ssK", "yyyy-MM-dd'T'HH:mm:ss.FFFFFFFK"];

    /// <summary>
    /// An RFC 3339 time: date, <c>T</c>, time with optional fraction, and a zone (<c>Z</c> or an offset), nothing
    /// looser (no date alone, no time without a zone, no local formats); taken to UTC.
    /// </summary>
    public static bool TryParseRfc3339(string? text, out DateTimeOffset instant)
    {
        instant = default;
        if (text is null || !(text.EndsWith('Z') || text.Length > 6 && text[^6] is '+' or '-' && text[^3] == ':'))
            return false;
        if (!DateTimeOffset.TryParseExact(text, Rfc3339Formats, System.Globalization.CultureInfo.InvariantCulture,
                System.Globalization.DateTimeStyles.None, out instant))
            return false;
        instant = instant.ToUniversalTime();
        return true;
    }

    /// <summary>A calendar day as <c>yyyy-MM-dd</c>.</summary>
    public static string Date(DateOnly day) => day.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>An exact decimal as a JSON string, without trailing zeros beyond what it holds.</summary>
    public static string Decimal(decimal value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>RFC 3339 in UTC with a Z (PostgreSQL keeps microseconds).</summary>
    public static string Rfc3339(DateTime utc)
        => DateTime.SpecifyKind(utc, DateTimeKind.Utc).ToString("yyyy-MM-dd'T'HH:mm:ss.FFFFFF'Z'", System.Globalization.CultureInfo.InvariantCulture);
}
