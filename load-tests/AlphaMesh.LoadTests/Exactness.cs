using System.Globalization;
using System.Text.Json;

namespace AlphaMesh.LoadTests;

/// <summary>One usage series: a meter's value for one customer of one tenant (and one group, for a grouped meter:
/// <c>model=gpt-4o</c>; empty otherwise), summed over the windows of the run.</summary>
internal readonly record struct SeriesKey(string Tenant, string Customer, string Meter, string Group)
{
    public override string ToString() => $"{Tenant}/{Customer}/{Meter}{(Group.Length > 0 ? "/" + Group : "")}";
}

/// <summary>The meters the harness creates for every tenant on <see cref="EventType"/>, and the events' properties.</summary>
internal static class LoadMeters
{
    public const string EventType = "api_call";
    public const string Calls = "load_calls";
    public const string Tokens = "load_tokens";
    public const string TokensByModel = "load_tokens_by_model";
    public const string ModelProperty = "model";

    public static readonly string[] Models = ["gpt-4o", "claude-3-5-sonnet", "llama-3.1-70b"];

    /// <summary>key, aggregation, value property, group-by.</summary>
    public static readonly (string Key, string Aggregation, string? Value, string[] GroupBy)[] All =
    [
        (Calls, "COUNT", null, []),
        (Tokens, "SUM", "tokens", []),
        (TokensByModel, "SUM", "tokens", [ModelProperty]),
    ];
}

/// <summary>
/// The events one stream got a reply for, per customer and model: how many and the exact decimal sum of their
/// <c>tokens</c>. Written by the stream's report of acknowledged events only (the SDK's
/// <see cref="AlphaMesh.Client.UsageClientOptions.OnTaggedEventsFinished"/>, never two calls at once); read after the run.
/// </summary>
internal sealed class Ledger(int customers, int models)
{
    private readonly long[] _counts = new long[customers * models];
    private readonly decimal[] _sums = new decimal[customers * models];

    public int Customers => customers;
    public int Models => models;

    public void Add(int customer, int model, decimal tokens)
    {
        int slot = (customer * models) + model;
        _counts[slot]++;
        _sums[slot] += tokens;
    }

    public long Count(int customer, int model) => _counts[(customer * models) + model];

    public decimal Sum(int customer, int model) => _sums[(customer * models) + model];

    /// <summary>Adds another stream's ledger of the same tenant.</summary>
    public void Merge(Ledger other)
    {
        if (other.Customers != customers || other.Models != models)
            throw new ArgumentException("ledgers of different shapes", nameof(other));
        for (int i = 0; i < _counts.Length; i++)
        {
            _counts[i] += other._counts[i];
            _sums[i] += other._sums[i];
        }
    }

    /// <summary>What the server should answer for this tenant: every series of <see cref="LoadMeters.All"/> that
    /// has at least one event (a meter has no row for a customer without events).</summary>
    public void AddExpectedSeries(string tenant, IReadOnlyList<string> customerNames, IReadOnlyList<string> modelNames, Dictionary<SeriesKey, decimal> into)
    {
        for (int c = 0; c < customers; c++)
        {
            long calls = 0;
            decimal tokens = 0;
            for (int m = 0; m < models; m++)
            {
                long count = Count(c, m);
                if (count == 0)
                    continue;
                calls += count;
                tokens += Sum(c, m);
                into[new SeriesKey(tenant, customerNames[c], LoadMeters.TokensByModel, LoadMeters.ModelProperty + "=" + modelNames[m])] = Sum(c, m);
            }
            if (calls == 0)
                continue;
            into[new SeriesKey(tenant, customerNames[c], LoadMeters.Calls, "")] = calls;
            into[new SeriesKey(tenant, customerNames[c], LoadMeters.Tokens, "")] = tokens;
        }
    }
}

/// <summary>The outcome of comparing the ledger with the server's usage (definitions in the README).</summary>
/// <param name="Series">Series compared: those in the ledger or on the server (after the baseline).</param>
/// <param name="Events">Events in the ledger (acknowledged to the harness).</param>
/// <param name="Lost">Acknowledged events the server's COUNT meter does not count: the sum over (tenant, customer) of
/// ledger count minus server count, where positive.</param>
/// <param name="Doubled">Events the COUNT meter counts beyond the ledger: the sum of server count minus ledger count,
/// where positive.</param>
/// <param name="Mismatched">Series, of any meter, whose server value is not exactly the ledger's (decimal equality),
/// including series present on one side only.</param>
/// <param name="Examples">The first mismatched series, described.</param>
internal sealed record ExactnessResult(int Series, long Events, long Lost, long Doubled, int Mismatched, IReadOnlyList<string> Examples)
{
    public bool Exact => Lost == 0 && Doubled == 0 && Mismatched == 0;

    public string Summary => string.Create(CultureInfo.InvariantCulture,
        $"lost {Lost}, doubled {Doubled}, mismatched {Mismatched} ({Series:N0} series, {Events:N0} events acknowledged)");

    /// <summary>Compares expected series (from the ledger) with actual ones (from the server).</summary>
    public static ExactnessResult Compare(IReadOnlyDictionary<SeriesKey, decimal> expected, IReadOnlyDictionary<SeriesKey, decimal> actual, int maxExamples = 20)
    {
        decimal lost = 0, doubled = 0, events = 0;
        int mismatched = 0, series = 0;
        var examples = new List<string>();
        foreach (var key in expected.Keys.Concat(actual.Keys.Where(k => !expected.ContainsKey(k))).OrderBy(k => k.ToString(), StringComparer.Ordinal))
        {
            series++;
            bool inLedger = expected.TryGetValue(key, out decimal e);
            bool onServer = actual.TryGetValue(key, out decimal a);
            if (key.Meter == LoadMeters.Calls)
            {
                events += e;
                lost += Math.Max(0, e - a);
                doubled += Math.Max(0, a - e);
            }
            if (inLedger && onServer && e == a)
                continue;
            mismatched++;
            if (examples.Count < maxExamples)
            {
                examples.Add($"{key}: ledger {(inLedger ? e.ToString(CultureInfo.InvariantCulture) : "none")}, " +
                    $"server {(onServer ? a.ToString(CultureInfo.InvariantCulture) : "none")}");
            }
        }
        return new ExactnessResult(series, (long)events, (long)lost, (long)doubled, mismatched, examples);
    }

    /// <summary>What a server that already had usage (earlier runs against a running server) added since
    /// <paramref name="before"/>: after minus before, per series; a series unchanged is left out, one that
    /// disappeared stays as a negative value (a mismatch).</summary>
    public static Dictionary<SeriesKey, decimal> Subtract(IReadOnlyDictionary<SeriesKey, decimal> after, IReadOnlyDictionary<SeriesKey, decimal> before)
    {
        var result = new Dictionary<SeriesKey, decimal>();
        foreach (var (key, value) in after)
        {
            bool had = before.TryGetValue(key, out decimal old);
            if (!had || value != old)
                result[key] = value - old;
        }
        foreach (var (key, old) in before)
        {
            if (!after.ContainsKey(key))
                result[key] = -old;
        }
        return result;
    }
}

/// <summary>Reads the server's usage answer (<c>GET /v1/meters/{key}/usage</c>) into series.</summary>
internal static class UsageRows
{
    /// <summary>Adds every row of <paramref name="json"/> to its series (rows of one series in several windows add up).</summary>
    public static void AddTo(Dictionary<SeriesKey, decimal> into, string json, string tenant, string meter)
    {
        using var document = JsonDocument.Parse(json);
        foreach (var row in document.RootElement.GetProperty("data").EnumerateArray())
        {
            string customer = row.GetProperty("customer").GetString() ?? throw new FormatException("a usage row without customer");
            string group = row.TryGetProperty("groupBy", out var groupBy) && groupBy.ValueKind == JsonValueKind.Object
                ? string.Join(',', groupBy.EnumerateObject().OrderBy(p => p.Name, StringComparer.Ordinal).Select(p => $"{p.Name}={p.Value.GetString()}"))
                : "";
            // Values are exact decimals as JSON strings.
            decimal value = decimal.Parse(row.GetProperty("value").GetString() ?? "", NumberStyles.Number, CultureInfo.InvariantCulture);
            var key = new SeriesKey(tenant, customer, meter, group);
            into[key] = into.GetValueOrDefault(key) + value;
        }
    }
}
