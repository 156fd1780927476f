using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace AlphaMesh.LoadTests;

/// <summary>
/// The server's meters and usage over HTTP: creates the run's meters (idempotent, so reruns against the same
/// server are fine) and, after the run, reads the COUNT meter's usage of every customer. The usage query waits
/// until the aggregators have applied every event committed when it arrived, so its duration is how far
/// aggregation trailed ingest when the load stopped.
/// </summary>
internal sealed class UsageCheck(Uri rest, string key) : IDisposable
{
    public const string EventType = "api_call";
    public const string CountMeter = "load_calls";

    private static readonly (string Key, string Aggregation, string? Value, string[] GroupBy)[] s_meters =
    [
        (CountMeter, "COUNT", null, []),
        ("load_tokens_by_model", "SUM", "tokens", ["model"]),
        ("load_tokens", "SUM", "tokens", []),
    ];

    private readonly HttpClient _http = new(new SocketsHttpHandler()) { BaseAddress = rest, Timeout = TimeSpan.FromMinutes(5) };

    public async Task CreateMetersAsync(int count, TextWriter output)
    {
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        foreach (var (meterKey, aggregation, value, groupBy) in s_meters.Take(count))
        {
            using var response = await _http.PostAsJsonAsync("/v1/meters", new { key = meterKey, eventType = EventType, aggregation, valueProperty = value, groupBy, windowSize = "MINUTE" })
                .ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
                throw new InvalidOperationException($"creating meter {meterKey}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync().ConfigureAwait(false)}");
        }
        output.WriteLine($"meters on {EventType}: {string.Join(", ", s_meters.Take(count).Select(m => $"{m.Key} ({m.Aggregation}{(m.GroupBy.Length > 0 ? " by " + string.Join(',', m.GroupBy) : "")})"))}");
    }

    /// <summary>The COUNT meter's total over all customers, and how long the query took.</summary>
    public async Task<(decimal Total, int Rows, TimeSpan Took)> CountAllAsync(DateTimeOffset from, DateTimeOffset to)
    {
        var watch = Stopwatch.StartNew();
        string url = string.Create(CultureInfo.InvariantCulture,
            $"/v1/meters/{CountMeter}/usage?windowSize=MONTH&from={Uri.EscapeDataString(from.ToString("O", CultureInfo.InvariantCulture))}&to={Uri.EscapeDataString(to.ToString("O", CultureInfo.InvariantCulture))}");
        using var response = await _http.GetAsync(url).ConfigureAwait(false);
        string body = await response.Content.ReadAsStringAsync().ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"usage query: {(int)response.StatusCode} {body}");
        decimal total = 0;
        int rows = 0;
        using var json = JsonDocument.Parse(body);
        foreach (var row in json.RootElement.GetProperty("data").EnumerateArray())
        {
            total += decimal.Parse(row.GetProperty("value").GetString()!, NumberStyles.Float, CultureInfo.InvariantCulture);
            rows++;
        }
        return (total, rows, watch.Elapsed);
    }

    public void Dispose() => _http.Dispose();
}
