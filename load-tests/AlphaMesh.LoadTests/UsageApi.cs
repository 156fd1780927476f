using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace AlphaMesh.LoadTests;

/// <summary>One tenant of the run and its key (ingest, read and admin scopes).</summary>
internal sealed record LoadTenant(string Id, string Key);

/// <summary>
/// The server's HTTP API as the harness uses it: the tenants API (tenants and their keys), meters, and usage
/// queries. The usage query waits until the aggregators have applied every event committed when it arrived, so
/// its duration after the last reply is how far aggregation trailed ingest.
/// </summary>
internal sealed class UsageApi(Uri rest) : IDisposable
{
    private readonly HttpClient _http = new(new SocketsHttpHandler()) { BaseAddress = rest, Timeout = TimeSpan.FromMinutes(5) };

    /// <summary>
    /// The run's tenants. One tenant: the admin key's own (named <paramref name="ownTenant"/> in the report; the
    /// key's scope is what the server goes by). More: tenants <c>{prefix}-1</c>..<c>-N</c> created with the
    /// operator's admin key through <c>POST /v1/tenants</c>, each with a new key from <c>POST /v1/tenants/{id}/api-keys</c>.
    /// </summary>
    public async Task<IReadOnlyList<LoadTenant>> PrepareTenantsAsync(string adminKey, string ownTenant, int count, string prefix)
    {
        if (count == 1)
            return [new LoadTenant(ownTenant, adminKey)];
        var tenants = new List<LoadTenant>();
        for (int i = 1; i <= count; i++)
        {
            string id = $"{prefix}-{i}";
            using var created = await SendAsync(HttpMethod.Post, "/v1/tenants", adminKey, new { id, name = $"load test tenant {i}" }).ConfigureAwait(false);
            using var key = await SendAsync(HttpMethod.Post, $"/v1/tenants/{id}/api-keys", adminKey,
                new { name = "load harness", scopes = new[] { "ingest", "read", "admin" } }).ConfigureAwait(false);
            tenants.Add(new LoadTenant(id, key.RootElement.GetProperty("key").GetString()!));
        }
        return tenants;
    }

    /// <summary>Creates <see cref="LoadMeters.All"/> for a tenant (the same definition again is fine: 200).</summary>
    public async Task CreateMetersAsync(LoadTenant tenant)
    {
        foreach (var (key, aggregation, value, groupBy) in LoadMeters.All)
        {
            using var _ = await SendAsync(HttpMethod.Post, "/v1/meters", tenant.Key,
                new { key, eventType = LoadMeters.EventType, aggregation, valueProperty = value, groupBy, windowSize = "MINUTE" }).ConfigureAwait(false);
        }
    }

    /// <summary>Every series of the run's meters for the tenants, summed over calendar months that cover
    /// [<paramref name="from"/>, <paramref name="to"/>].</summary>
    public async Task<(Dictionary<SeriesKey, decimal> Series, TimeSpan Took)> ReadUsageAsync(IEnumerable<LoadTenant> tenants, DateTimeOffset from, DateTimeOffset to)
    {
        var watch = Stopwatch.StartNew();
        var series = new Dictionary<SeriesKey, decimal>();
        string range = $"from={Uri.EscapeDataString(Rfc3339(from))}&to={Uri.EscapeDataString(Rfc3339(to))}";
        foreach (var tenant in tenants)
        {
            foreach (var (meter, _, _, groupBy) in LoadMeters.All)
            {
                string url = $"/v1/meters/{meter}/usage?windowSize=MONTH&{range}{(groupBy.Length > 0 ? "&groupBy=" + string.Join(',', groupBy) : "")}";
                using var request = new HttpRequestMessage(HttpMethod.Get, url);
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", tenant.Key);
                using var response = await _http.SendAsync(request).ConfigureAwait(false);
                string body = await response.Content.ReadAsStringAsync().ConfigureAwait(false);
                if (!response.IsSuccessStatusCode)
                    throw new InvalidOperationException($"GET {url} for tenant {tenant.Id}: {(int)response.StatusCode} {body}");
                UsageRows.AddTo(series, body, tenant.Id, meter);
            }
        }
        return (series, watch.Elapsed);
    }

    public void Dispose() => _http.Dispose();

    private async Task<JsonDocument> SendAsync(HttpMethod method, string url, string key, object? body)
    {
        using var request = new HttpRequestMessage(method, url);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (body is not null)
            request.Content = JsonContent.Create(body);
        using var response = await _http.SendAsync(request).ConfigureAwait(false);
        string text = await response.Content.ReadAsStringAsync().ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"{method} {url}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text);
    }

    private static string Rfc3339(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
}
