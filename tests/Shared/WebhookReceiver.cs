using System.Collections.Concurrent;
using AlphaMesh.Server.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace AlphaMesh.Tests.Shared;

/// <summary>One request a <see cref="WebhookReceiver"/> got. <paramref name="Attempt"/> counts the requests with the same
/// path and AlphaMesh-Event-Id so far, this one included (1 for the first); <paramref name="Status"/> is what it answered, -1 when
/// the sender hung up first.</summary>
public sealed record ReceivedWebhook(string Path, byte[] Body, string? Signature, string? EventId, string? ContentType, int Attempt, int Status)
{
    public string Text => System.Text.Encoding.UTF8.GetString(Body);
}

/// <summary>A real HTTP server (Kestrel on 127.0.0.1) that records every POST it gets and answers what
/// <see cref="Respond"/> says (200 by default).</summary>
public sealed class WebhookReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentQueue<ReceivedWebhook> _received = new();
    private readonly ConcurrentDictionary<(string, string?), int> _attempts = new();

    private WebhookReceiver(WebApplication app, int port)
    {
        _app = app;
        BaseAddress = new Uri($"http://127.0.0.1:{port}");
    }

    public Uri BaseAddress { get; }

    /// <summary>The status to answer a request with; may wait (it gets the request's abort token).</summary>
    public Func<ReceivedWebhook, CancellationToken, Task<int>> Respond { get; set; } = (_, _) => Task.FromResult(200);

    /// <summary>Every request so far, in arrival order.</summary>
    public IReadOnlyList<ReceivedWebhook> Received => [.. _received];

    public string Url(string path = "/hook") => new Uri(BaseAddress, path).ToString();

    public static async Task<WebhookReceiver> StartAsync()
    {
        int port = Ports.GetFree();
        var builder = WebApplication.CreateSlimBuilder();
        // No appsettings.json: a test directory can hold the server's, whose Kestrel endpoints would replace this one.
        builder.Configuration.Sources.Clear();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(System.Net.IPAddress.Loopback, port));
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var receiver = new WebhookReceiver(app, port);
        app.MapPost("/{**path}", receiver.HandleAsync);
        await app.StartAsync();
        return receiver;
    }

    private async Task HandleAsync(HttpContext http)
    {
        using var buffer = new MemoryStream();
        await http.Request.Body.CopyToAsync(buffer, http.RequestAborted);
        string path = http.Request.Path.Value ?? "";
        string? eventId = http.Request.Headers["AlphaMesh-Event-Id"].FirstOrDefault();
        int attempt = _attempts.AddOrUpdate((path, eventId), 1, (_, n) => n + 1);
        var request = new ReceivedWebhook(path, buffer.ToArray(), http.Request.Headers["AlphaMesh-Signature"].FirstOrDefault(), eventId,
            http.Request.ContentType, attempt, 0);
        int status = -1;
        try
        {
            status = await Respond(request, http.RequestAborted);
            http.Response.StatusCode = status;
        }
        finally
        {
            // Recorded also when the sender gave up waiting (the abort token cancelled Respond): Status -1.
            _received.Enqueue(request with { Status = status });
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
