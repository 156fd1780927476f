namespace AlphaMesh.Ingest.Internal;

internal enum AuthOutcome
{
    Allowed,
    Unauthenticated,
    Forbidden,
}

/// <summary>Checks an <c>authorization: Bearer &lt;key&gt;</c> header value against the key store and a scope.</summary>
internal static class BearerAuthorization
{
    public static AuthOutcome Check(IApiKeyStore keys, string? header, ApiScopes required, out ApiPrincipal? principal, out string reason)
    {
        principal = null;
        if (string.IsNullOrEmpty(header))
        {
            reason = "no API key: send 'authorization: Bearer <key>'";
            return AuthOutcome.Unauthenticated;
        }
        var value = header.AsSpan().Trim();
        if (!value.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            reason = "the authorization header must be 'Bearer <key>'";
            return AuthOutcome.Unauthenticated;
        }
        if (!keys.TryAuthenticate(value["Bearer ".Length..].Trim(), out principal) || principal is null)
        {
            reason = "the API key is not valid";
            return AuthOutcome.Unauthenticated;
        }
        if (!principal.Has(required))
        {
            reason = $"the API key lacks the '{ApiKey.FormatScopes(required)}' scope";
            return AuthOutcome.Forbidden;
        }
        reason = "";
        return AuthOutcome.Allowed;
    }
}
