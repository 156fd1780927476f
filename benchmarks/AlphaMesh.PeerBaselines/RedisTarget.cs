using System.Globalization;
using StackExchange.Redis;

namespace AlphaMesh.PeerBaselines;

/// <summary>
/// The "Redis dedupe key + counters" approach: per event, <c>SET d:{tenant}:{id} 1 NX EX {retention}</c> and, when
/// that set the key, <c>HINCRBY</c> of the customer's monthly count and sum, in one Lua script (EVALSHA) so the
/// dedupe key and the counters change atomically. Redis has no decimal type (INCRBYFLOAT is a binary double), so the
/// sum is kept exactly as an integer of hundredths. Pipelined: each lane keeps <c>window</c> calls in flight on
/// its own StackExchange.Redis connection. <see cref="RedisCall.PerEvent"/> makes one script call per event;
/// <see cref="RedisCall.PerBatch"/> passes <c>batch</c> events to one call, which saves Redis most of its
/// per-command work.
/// </summary>
internal sealed class RedisTarget(string endpoint, RedisCall call, int connections, int batch) : PeerTarget
{
    private const string Tenant = "default";

    /// <summary>The dedupe key lives as long as AlphaMesh remembers an id (AlphaMesh:Aggregator:DedupeRetention, 35 days).</summary>
    private const int RetentionSeconds = 35 * 24 * 3600;

    private const string PerEventScript = """
        if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
          redis.call('HINCRBY', KEYS[2], 'count', 1)
          redis.call('HINCRBY', KEYS[2], 'sum', ARGV[2])
          return 1
        end
        return 0
        """;

    // KEYS: dedupe key and usage key of each event in turn; ARGV: the retention, then each event's amount.
    private const string PerBatchScript = """
        local counted = 0
        for i = 1, #KEYS, 2 do
          if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then
            redis.call('HINCRBY', KEYS[i + 1], 'count', 1)
            redis.call('HINCRBY', KEYS[i + 1], 'sum', ARGV[(i + 1) / 2 + 1])
            counted = counted + 1
          end
        end
        return counted
        """;

    private static readonly RedisValue[] s_fields = ["count", "sum"];

    private readonly List<ConnectionMultiplexer> _connections = [];
    private byte[] _sha = [];
    private string _settings = "";
    private long _counted;

    public override string Name => call == RedisCall.PerEvent
        ? "Redis SET NX EX + HINCRBY, Lua per event, pipelined"
        : $"Redis SET NX EX + HINCRBY, Lua per {batch} events, pipelined";

    public override string Durability => $"a reply follows the AOF write of its command; {_settings}";

    public override string Method => (call == RedisCall.PerEvent
            ? $"{connections} lane(s) (a connection each), one EVALSHA per event, up to {Window} calls in flight per lane"
            : $"{connections} lane(s) (a connection each), one EVALSHA per {batch} events, up to {Window} calls in flight per lane")
        + $"; dedupe key d:{{tenant}}:{{id}} with TTL {RetentionSeconds / 86400} days, counters in hash u:{{tenant}}:{{customer}}:{{yyyyMM}} (count, sum in hundredths); "
        + "usage: HMGET of every known customer's hash for the months of the range, pipelined";

    private int Window => call == RedisCall.PerEvent ? 1000 : 16;

    public override async Task SetupAsync(EventSet events, CancellationToken cancellationToken)
    {
        var options = ConfigurationOptions.Parse(endpoint);
        options.AllowAdmin = true; // CONFIG GET and SCRIPT LOAD
        options.SyncTimeout = options.AsyncTimeout = 120_000; // a deep pipeline behind an fsync per write must not time out
        // One connection per lane: Redis reads at most 16 KiB from a client per turn of its event loop, and with
        // appendfsync always each turn ends with an fsync, so one shared socket would cap the commands per fsync.
        for (int l = 0; l < connections; l++)
            _connections.Add(await ConnectionMultiplexer.ConnectAsync(options).ConfigureAwait(false));
        var server = _connections[0].GetServer(_connections[0].GetEndPoints()[0]);
        Version = "Redis " + server.Version;
        var settings = new List<string>();
        foreach (string name in (string[])["appendonly", "appendfsync", "save", "maxmemory"])
        {
            foreach (var pair in await server.ConfigGetAsync(name).ConfigureAwait(false))
                settings.Add($"{pair.Key} {(pair.Value.Length == 0 ? "\"\"" : pair.Value)}");
        }
        _settings = string.Join(", ", settings);
        _sha = await server.ScriptLoadAsync(call == RedisCall.PerEvent ? PerEventScript : PerBatchScript).ConfigureAwait(false);
    }

    public override async Task IngestAsync(EventSet events, int[][] lanes, CancellationToken cancellationToken)
    {
        await RunLanesAsync(lanes, call == RedisCall.PerEvent
            ? (lane, indexes) => PerEventLaneAsync(_connections[lane].GetDatabase(), events, indexes)
            : (lane, indexes) => PerBatchLaneAsync(_connections[lane].GetDatabase(), events, indexes)).ConfigureAwait(false);
        if (_counted != events.Distinct)
            Console.WriteLine($"note: the scripts counted {_counted:N0} events as new for {events.Distinct:N0} distinct ids");
    }

    public override async Task<Dictionary<string, CustomerUsage>> ReadUsageAsync(EventSet events, CancellationToken cancellationToken)
    {
        var db = _connections[0].GetDatabase();
        string[] months = [.. new[] { events.BaseTime, events.BaseTime.AddSeconds(EventSet.TimeSpreadSeconds) }.Select(Month).Distinct()];
        var reads = new List<(string Customer, Task<RedisValue[]> Values)>(events.Customers.Length * months.Length);
        foreach (string customer in events.Customers)
        {
            foreach (string month in months)
                reads.Add((customer, db.HashGetAsync(UsageKey(customer, month), s_fields)));
        }
        var usage = new Dictionary<string, CustomerUsage>(StringComparer.Ordinal);
        foreach (var (customer, read) in reads)
        {
            var values = await read.ConfigureAwait(false);
            if (values[0].IsNull)
                continue;
            var previous = usage.GetValueOrDefault(customer);
            usage[customer] = new CustomerUsage(previous.Count + (long)values[0], previous.Sum + (long)values[1] / 100m);
        }
        return usage;
    }

    public override async ValueTask DisposeAsync()
    {
        foreach (var connection in _connections)
            await connection.DisposeAsync().ConfigureAwait(false);
    }

    private async Task PerEventLaneAsync(IDatabase db, EventSet events, int[] indexes)
    {
        var pending = new Task<RedisResult>[Window];
        int inFlight = 0;
        long counted = 0;
        foreach (int i in indexes)
        {
            var e = events.Events[i];
            pending[inFlight++] = db.ScriptEvaluateAsync(_sha,
                [DedupeKey(e.Id), UsageKey(events.Customers[e.Customer], Month(events.TimeOf(e)))],
                [RetentionSeconds, e.AmountMinor]);
            if (inFlight == pending.Length)
            {
                counted += await SumAsync(pending, inFlight).ConfigureAwait(false);
                inFlight = 0;
            }
        }
        counted += await SumAsync(pending, inFlight).ConfigureAwait(false);
        Interlocked.Add(ref _counted, counted);
    }

    private async Task PerBatchLaneAsync(IDatabase db, EventSet events, int[] indexes)
    {
        var pending = new Task<RedisResult>[Window];
        int inFlight = 0;
        long counted = 0;
        for (int start = 0; start < indexes.Length; start += batch)
        {
            int n = Math.Min(batch, indexes.Length - start);
            var keys = new RedisKey[2 * n];
            var values = new RedisValue[n + 1];
            values[0] = RetentionSeconds;
            for (int k = 0; k < n; k++)
            {
                var e = events.Events[indexes[start + k]];
                keys[2 * k] = DedupeKey(e.Id);
                keys[2 * k + 1] = UsageKey(events.Customers[e.Customer], Month(events.TimeOf(e)));
                values[k + 1] = e.AmountMinor;
            }
            pending[inFlight++] = db.ScriptEvaluateAsync(_sha, keys, values);
            if (inFlight == pending.Length)
            {
                counted += await SumAsync(pending, inFlight).ConfigureAwait(false);
                inFlight = 0;
            }
        }
        counted += await SumAsync(pending, inFlight).ConfigureAwait(false);
        Interlocked.Add(ref _counted, counted);
    }

    private static async Task<long> SumAsync(Task<RedisResult>[] pending, int count)
    {
        long sum = 0;
        for (int k = 0; k < count; k++)
            sum += (long)await pending[k].ConfigureAwait(false);
        return sum;
    }

    private static string DedupeKey(string id) => $"d:{Tenant}:{id}";

    private static string UsageKey(string customer, string month) => $"u:{Tenant}:{customer}:{month}";

    private static string Month(DateTimeOffset time) => time.UtcDateTime.ToString("yyyyMM", CultureInfo.InvariantCulture);
}

/// <summary>How many events one script call of the Redis baseline carries.</summary>
internal enum RedisCall
{
    /// <summary>One EVALSHA per event.</summary>
    PerEvent,

    /// <summary>One EVALSHA per batch of events.</summary>
    PerBatch,
}
