using System.Buffers;
using System.Globalization;
using System.IO.Pipelines;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace AlphaMesh.Ingest.Internal;

/// <summary><c>POST /v1/events</c>: CloudEvents JSON, one event or a batch; the same validation and
/// reply as gRPC, in JSON.</summary>
internal sealed class HttpIngestEndpoint(IngestPipeline pipeline, IApiKeyStore keys, ILogger<HttpIngestEndpoint> logger)
{
    public async Task HandleAsync(HttpContext http)
    {
        var outcome = BearerAuthorization.Check(keys, http.Request.Headers.Authorization, ApiScopes.Ingest, out var principal, out var reason);
        if (outcome != AuthOutcome.Allowed)
        {
            IngestLog.AuthenticationFailed(logger, "HTTP", reason);
            if (outcome == AuthOutcome.Unauthenticated)
                http.Response.Headers.WWWAuthenticate = "Bearer";
            await WriteErrorAsync(http, outcome == AuthOutcome.Forbidden ? 403 : 401,
                outcome == AuthOutcome.Forbidden ? "permission_denied" : "unauthenticated", reason).ConfigureAwait(false);
            return;
        }

        if (!TryGetFormat(http.Request.ContentType, out var format))
        {
            await WriteErrorAsync(http, StatusCodes.Status415UnsupportedMediaType, "unsupported_media_type",
                "send application/cloudevents+json (one event), application/cloudevents-batch+json or application/json (an array)").ConfigureAwait(false);
            return;
        }

        var limit = pipeline.Limits.MaxRequestBytes;
        if (http.Request.ContentLength > limit)
        {
            await WriteErrorAsync(http, 400, "invalid_argument", $"the request is {http.Request.ContentLength} bytes; the limit is {limit}").ConfigureAwait(false);
            return;
        }

        var (body, length) = await ReadBodyAsync(http.Request.BodyReader, limit, http.RequestAborted).ConfigureAwait(false);
        if (body is null)
        {
            await WriteErrorAsync(http, 400, "invalid_argument", $"the request is over the limit of {limit} bytes").ConfigureAwait(false);
            return;
        }

        IngestWork? work;
        string? error;
        RequestFailure failure;
        try
        {
            failure = pipeline.TryParse(body.AsSpan(0, length), format, principal!, out work, out error);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(body);
        }

        if (failure != RequestFailure.None)
        {
            IngestLog.RequestRefused(logger, "HTTP", principal!.TenantId, error!);
            if (failure == RequestFailure.Overloaded)
            {
                var retryMs = (long)pipeline.RetryAfter.TotalMilliseconds;
                http.Response.Headers.RetryAfter = Math.Max(1, (retryMs + 999) / 1000).ToString(CultureInfo.InvariantCulture);
                http.Response.Headers["Retry-After-Ms"] = retryMs.ToString(CultureInfo.InvariantCulture);
                await WriteErrorAsync(http, 429, "resource_exhausted", error!).ConfigureAwait(false);
            }
            else
            {
                await WriteErrorAsync(http, 400, "invalid_argument", "malformed request: " + error).ConfigureAwait(false);
            }
            return;
        }

        try
        {
            work!.Batch.BatchId = http.Request.Headers["AlphaMesh-Batch-Id"].ToString();
            await pipeline.AppendAsync(work, http.RequestAborted).ConfigureAwait(false);
            await pipeline.WaitDurableAsync(work, http.RequestAborted).ConfigureAwait(false);
            http.Response.StatusCode = 200;
            http.Response.ContentType = "application/json";
            await using (var writer = new Utf8JsonWriter(http.Response.BodyWriter))
                IngestReplyWriter.WriteJson(work.Batch, writer);
            await http.Response.BodyWriter.FlushAsync(http.RequestAborted).ConfigureAwait(false);
        }
        finally
        {
            pipeline.Complete(work!);
        }
    }

    private static bool TryGetFormat(string? contentType, out RequestFormat format)
    {
        var mediaType = (contentType ?? "").Split(';', 2)[0].Trim();
        format = mediaType.ToLowerInvariant() switch
        {
            "application/cloudevents+json" => RequestFormat.CloudEventsSingle,
            "application/cloudevents-batch+json" => RequestFormat.CloudEventsBatch,
            "application/json" or "" => RequestFormat.CloudEventsAuto,
            _ => (RequestFormat)(-1),
        };
        return format >= 0;
    }

    /// <summary>Reads the whole body into a pooled buffer; null when it is longer than the limit.</summary>
    private static async Task<(byte[]? Buffer, int Length)> ReadBodyAsync(PipeReader reader, int limit, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (buffer.Length > limit)
            {
                reader.AdvanceTo(buffer.Start, buffer.End);
                return (null, 0);
            }
            if (result.IsCompleted)
            {
                int length = (int)buffer.Length;
                var copy = ArrayPool<byte>.Shared.Rent(Math.Max(length, 1));
                buffer.CopyTo(copy);
                reader.AdvanceTo(buffer.End);
                return (copy, length);
            }
            // Examined everything, consumed nothing: wait for the rest of the body.
            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static async Task WriteErrorAsync(HttpContext http, int status, string code, string message)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(http.Response.Body, new ErrorBody(new ErrorDetail(code, message)),
            IngestJsonContext.Default.ErrorBody, http.RequestAborted).ConfigureAwait(false);
    }
}

internal sealed record ErrorDetail(string Code, string Message);

internal sealed record ErrorBody(ErrorDetail Error);

[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.CamelCase)]
[System.Text.Json.Serialization.JsonSerializable(typeof(ErrorBody))]
internal sealed partial class IngestJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
