using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Metadata;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>OpenAPI metadata of the billing endpoints (their handlers read the body themselves, so the document learns
/// the request and answer shapes from here).</summary>
internal static class ApiDocs
{
    /// <summary>
    /// A handler that takes only the <see cref="HttpContext"/>, typed as a <see cref="Delegate"/>: mapped as a plain
    /// <see cref="RequestDelegate"/> it would be left out of the OpenAPI document, which lists only route handlers.
    /// </summary>
    public static Delegate Handler(Func<HttpContext, Task> handler) => handler;

    private static readonly int[] ReadProblems = [400, 401, 403, 404];
    private static readonly int[] WriteProblems = [400, 401, 403, 404, 409, 413];

    public static IEndpointConventionBuilder Reads<TResponse>(this IEndpointConventionBuilder endpoint, string tag, string summary) =>
        Problems(endpoint.WithTags(tag).WithSummary(summary).WithMetadata(new ProducesResponseTypeMetadata(200, typeof(TResponse), ["application/json"])), ReadProblems);

    public static IEndpointConventionBuilder Writes<TRequest, TResponse>(this IEndpointConventionBuilder endpoint, string tag, string summary, int status = 201) =>
        Problems(endpoint.WithTags(tag).WithSummary(summary)
            .WithMetadata(new AcceptsMetadata(["application/json"], typeof(TRequest)))
            .WithMetadata(new ProducesResponseTypeMetadata(status, typeof(TResponse), ["application/json"])), WriteProblems);

    private static IEndpointConventionBuilder Problems(IEndpointConventionBuilder endpoint, int[] statuses)
    {
        foreach (int status in statuses)
            endpoint.WithMetadata(new ProducesResponseTypeMetadata(status, typeof(ProblemBody), ["application/problem+json"]));
        return endpoint;
    }
}
