using System.Globalization;
using System.Text;
using AlphaMesh.Usage.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;

namespace AlphaMesh.Benchmarks;

/// <summary>
/// The realistic 1,000-event request every benchmark uses: UUID ids, a handful of event types, 500 customers,
/// times spread over the last second, and two or three data entries per event (a decimal quantity, a model
/// name, every other event a region). The same events as protobuf <c>IngestRequest</c> bytes and as a
/// CloudEvents JSON batch.
/// </summary>
public static class Batch
{
    public const int Events = 1_000;

    public static readonly string[] Types = ["api_call", "tokens", "storage_gb_hours", "seats"];

    public static readonly string[] Models = ["gpt-4o", "claude-3-5-sonnet", "llama-3.1-70b"];

    public static readonly string[] Regions = ["eu-west-1", "us-east-1", "ap-south-1"];

    public static readonly byte[] Tenant = "tenant-acme-corp"u8.ToArray();

    public sealed record Event(string Id, string Type, string Customer, DateTimeOffset Time, KeyValuePair<string, string>[] Data);

    /// <summary>The events, deterministic apart from their times (relative to <paramref name="now"/>).</summary>
    public static Event[] Create(DateTimeOffset now)
    {
        var random = new Random(42);
        var events = new Event[Events];
        Span<byte> idBytes = stackalloc byte[16];
        for (int i = 0; i < Events; i++)
        {
            random.NextBytes(idBytes);
            var data = new List<KeyValuePair<string, string>>
            {
                new("tokens", (random.Next(1, 100_000) / 100m).ToString(CultureInfo.InvariantCulture)),
                new("model", Models[i % Models.Length]),
            };
            if (i % 2 == 0)
                data.Add(new("region", Regions[i % Regions.Length]));
            events[i] = new Event(new Guid(idBytes).ToString(), Types[i % Types.Length], $"customer-{random.Next(500):D4}",
                now.AddMilliseconds(-random.Next(1_000)), [.. data]);
        }
        return events;
    }

    public static byte[] Protobuf(Event[] events)
    {
        var request = new IngestRequest { BatchId = "0195f3a2-batch-000042" };
        foreach (var e in events)
        {
            var message = new UsageEvent { Id = e.Id, Type = e.Type, Customer = e.Customer, Time = Timestamp.FromDateTimeOffset(e.Time) };
            foreach (var pair in e.Data)
                message.Data.Add(pair.Key, pair.Value);
            request.Events.Add(message);
        }
        return request.ToByteArray();
    }

    public static byte[] CloudEventsJson(Event[] events)
    {
        var json = new StringBuilder("[");
        foreach (var e in events)
        {
            if (json.Length > 1)
                json.Append(',');
            json.Append(CultureInfo.InvariantCulture,
                $$"""{"specversion":"1.0","id":"{{e.Id}}","source":"/billing-gateway","type":"{{e.Type}}","subject":"{{e.Customer}}","time":"{{e.Time.UtcDateTime:yyyy-MM-ddTHH:mm:ss.fffffffZ}}","data":{""");
            for (int d = 0; d < e.Data.Length; d++)
            {
                if (d > 0)
                    json.Append(',');
                // Quantities as JSON numbers (kept as their decimal text), names as strings.
                bool number = e.Data[d].Key == "tokens";
                json.Append('"').Append(e.Data[d].Key).Append("\":").Append(number ? e.Data[d].Value : $"\"{e.Data[d].Value}\"");
            }
            json.Append("}}");
        }
        return Encoding.UTF8.GetBytes(json.Append(']').ToString());
    }
}
