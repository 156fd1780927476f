using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace AlphaMesh.PeerBaselines;

/// <summary>
/// ClickHouse over its HTTP interface (no .NET client supports the old server Debian ships): large batched
/// <c>INSERT ... FORMAT RowBinary</c> into a MergeTree table, usage as <c>GROUP BY</c>. Nothing removes duplicates
/// (ClickHouse's insert deduplication is per block and only for replicated tables), so with duplicates in the events
/// its usage is not exact: that is what it gives for free.
/// </summary>
internal sealed class ClickHouseTarget(Uri endpoint, int lanes, int batch) : PeerTarget
{
    private const string Tenant = "default";

    private readonly HttpClient _http = new(new SocketsHttpHandler()) { BaseAddress = endpoint, Timeout = TimeSpan.FromMinutes(10) };

    public override string Name => "ClickHouse MergeTree, HTTP RowBinary inserts, no dedupe";

    public override string Durability =>
        "an INSERT is acknowledged when its part is written to the file system, without fsync (this version has no setting for one)";

    public override string Method =>
        $"{lanes} lane(s), one HTTP POST INSERT ... FORMAT RowBinary per {batch:N0} events; table MergeTree PARTITION BY toYYYYMM(time) ORDER BY (tenant, customer, time), amount Decimal64(2); "
        + "no deduplication; usage: SELECT customer, count(), sum(amount) ... GROUP BY customer";

    public override async Task SetupAsync(EventSet events, CancellationToken cancellationToken)
    {
        await QueryAsync("DROP TABLE IF EXISTS peer_events", cancellationToken).ConfigureAwait(false);
        await QueryAsync("""
            CREATE TABLE peer_events (
                tenant String, event_id String, customer String, type String, time DateTime, amount Decimal64(2))
            ENGINE = MergeTree() PARTITION BY toYYYYMM(time) ORDER BY (tenant, customer, time)
            """, cancellationToken).ConfigureAwait(false);
        Version = "ClickHouse " + (await QueryAsync("SELECT version()", cancellationToken).ConfigureAwait(false)).Trim() + " (Debian's package; an old release)";
    }

    public override Task IngestAsync(EventSet events, int[][] lanes, CancellationToken cancellationToken)
        => RunLanesAsync(lanes, async (_, indexes) =>
        {
            var body = new ArrayBufferWriter<byte>(batch * 96);
            for (int start = 0; start < indexes.Length; start += batch)
            {
                int n = Math.Min(batch, indexes.Length - start);
                body.ResetWrittenCount();
                for (int k = 0; k < n; k++)
                    WriteRow(body, events, events.Events[indexes[start + k]]);
                using var content = new ReadOnlyMemoryContent(body.WrittenMemory);
                using var response = await _http.PostAsync("/?query=" + Uri.EscapeDataString("INSERT INTO peer_events FORMAT RowBinary"), content, cancellationToken).ConfigureAwait(false);
                if (!response.IsSuccessStatusCode)
                    throw new InvalidOperationException($"ClickHouse insert: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false)}");
            }
        });

    public override async Task<Dictionary<string, CustomerUsage>> ReadUsageAsync(EventSet events, CancellationToken cancellationToken)
    {
        string from = events.BaseTime.AddDays(-1).UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
        string to = events.BaseTime.AddDays(1).UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
        string text = await QueryAsync(
            $"SELECT customer, count(), sum(amount) FROM peer_events WHERE tenant = '{Tenant}' AND type = '{AlphaMeshTarget.EventType}' " +
            $"AND time >= toDateTime('{from}', 'UTC') AND time < toDateTime('{to}', 'UTC') GROUP BY customer FORMAT TabSeparated", cancellationToken).ConfigureAwait(false);
        var usage = new Dictionary<string, CustomerUsage>(StringComparer.Ordinal);
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var columns = line.Split('\t');
            usage[columns[0]] = new CustomerUsage(long.Parse(columns[1], CultureInfo.InvariantCulture), decimal.Parse(columns[2], NumberStyles.Float, CultureInfo.InvariantCulture));
        }
        return usage;
    }

    public override ValueTask DisposeAsync()
    {
        _http.Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>One row in RowBinary: String as a LEB128 length and UTF-8 bytes, DateTime as UInt32 seconds, Decimal64(2) as Int64 hundredths.</summary>
    private static void WriteRow(ArrayBufferWriter<byte> body, EventSet events, in GeneratedEvent e)
    {
        WriteString(body, Tenant);
        WriteString(body, e.Id);
        WriteString(body, events.Customers[e.Customer]);
        WriteString(body, AlphaMeshTarget.EventType);
        BinaryPrimitives.WriteUInt32LittleEndian(body.GetSpan(4), (uint)events.TimeOf(e).ToUnixTimeSeconds());
        body.Advance(4);
        BinaryPrimitives.WriteInt64LittleEndian(body.GetSpan(8), e.AmountMinor);
        body.Advance(8);
    }

    internal static void WriteString(ArrayBufferWriter<byte> body, string value)
    {
        int length = Encoding.UTF8.GetByteCount(value);
        var span = body.GetSpan(5 + length);
        int written = 0;
        for (uint rest = (uint)length; ; rest >>= 7)
        {
            if (rest < 0x80)
            {
                span[written++] = (byte)rest;
                break;
            }
            span[written++] = (byte)(rest | 0x80);
        }
        written += Encoding.UTF8.GetBytes(value, span[written..]);
        body.Advance(written);
    }

    private async Task<string> QueryAsync(string sql, CancellationToken cancellationToken)
    {
        using var content = new StringContent(sql, Encoding.UTF8);
        using var response = await _http.PostAsync("/", content, cancellationToken).ConfigureAwait(false);
        string body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"ClickHouse: {(int)response.StatusCode} {body.Trim()} (query: {sql})");
        return body;
    }
}
