using Grpc.Core;
using Microsoft.Extensions.Logging;

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

/// <summary>The gRPC form of <see cref="BearerAuthorization"/>, shared by every AlphaMesh gRPC service: the principal,
/// or an <see cref="RpcException"/> with <c>UNAUTHENTICATED</c> or <c>PERMISSION_DENIED</c> and the reason.</summary>
internal static class GrpcAuthorization
{
    public static ApiPrincipal Authorize(IApiKeyStore keys, ServerCallContext context, ApiScopes required, ILogger logger)
    {
        var outcome = BearerAuthorization.Check(keys, context.RequestHeaders.GetValue("authorization"), required, out var principal, out var reason);
        if (outcome == AuthOutcome.Allowed)
            return principal!;
        IngestLog.AuthenticationFailed(logger, "gRPC", reason);
        throw new RpcException(new Status(outcome == AuthOutcome.Forbidden ? StatusCode.PermissionDenied : StatusCode.Unauthenticated, reason));
    }
}
