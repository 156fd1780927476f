using AlphaMesh.Core;
using AlphaMesh.Usage.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;

namespace AlphaMesh.Server.Tests.Support;

internal static class Requests
{
    public static UsageEvent Event(string id, string customer = "cust-1", string type = "api_call", DateTimeOffset? time = null, params (string Key, string Value)[] data)
    {
        var e = new UsageEvent { Id = id, Type = type, Customer = customer, Time = Timestamp.FromDateTimeOffset(time ?? DateTimeOffset.UtcNow) };
        foreach (var (key, value) in data)
            e.Data[key] = value;
        return e;
    }

    public static IngestRequest Batch(string batchId, int count, string idPrefix = "evt", int customers = 10)
    {
        var request = new IngestRequest { BatchId = batchId };
        for (int i = 0; i < count; i++)
            request.Events.Add(Event($"{idPrefix}-{i}", customer: $"cust-{i % customers}", data: ("tokens", (i % 7 + 0.5m).ToString(System.Globalization.CultureInfo.InvariantCulture))));
        return request;
    }

    public static GrpcChannel Channel(Uri address) => GrpcChannel.ForAddress(address, new GrpcChannelOptions { MaxReceiveMessageSize = null, MaxSendMessageSize = null });

    public static Metadata Auth(string key) => new() { { "authorization", "Bearer " + key } };

    /// <summary>Every record in every partition of a closed event log.</summary>
    public static async Task<List<LoggedEvent>> ReadLogAsync(string dataDirectory)
    {
        var options = new EventLogOptions { Directory = Path.Combine(dataDirectory, "log") };
        var result = new List<LoggedEvent>();
        await using var log = EventLogFactory.OpenFasterLog(options);
        for (int p = 0; p < log.PartitionCount; p++)
        {
            var partition = log.GetPartition(p);
            using var reader = partition.OpenReader(partition.BeginPosition);
            while (reader.TryReadNext(out var record, out _, out _))
            {
                Assert.True(EventRecord.TryRead(record.Span, out var view), "a log record is not a valid event record");
                result.Add(new LoggedEvent(p, System.Text.Encoding.UTF8.GetString(view.Tenant), System.Text.Encoding.UTF8.GetString(view.Id),
                    System.Text.Encoding.UTF8.GetString(view.Customer), view.EventTimeUnixNanos));
            }
        }
        return result;
    }
}

internal sealed record LoggedEvent(int Partition, string Tenant, string Id, string Customer, long TimeUnixNanos);
