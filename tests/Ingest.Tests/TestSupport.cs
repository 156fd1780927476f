using System.Text;
using AlphaMesh.Core;
using AlphaMesh.Ingest.Internal;
using AlphaMesh.Usage.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;

namespace AlphaMesh.Ingest.Tests;

/// <summary>One record read back from a batch, as plain values to compare.</summary>
internal sealed record DecodedEvent(
    int Partition, long EventTimeUnixNanos, long IngestTimeUnixNanos, string Tenant, string Id, string Type, string Customer,
    (string Key, string Value)[] Data)
{
    public bool Equals(DecodedEvent? other)
        => other is not null && Partition == other.Partition && EventTimeUnixNanos == other.EventTimeUnixNanos
            && IngestTimeUnixNanos == other.IngestTimeUnixNanos && Tenant == other.Tenant && Id == other.Id
            && Type == other.Type && Customer == other.Customer && Data.SequenceEqual(other.Data);

    public override int GetHashCode() => HashCode.Combine(Partition, Id);
}

internal static class TestSupport
{
    /// <summary>The server's receive time in the tests: 2025-06-15T12:00:00Z.</summary>
    public static readonly long Now = new DateTimeOffset(2025, 6, 15, 12, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds() * 1_000_000;

    public const int Partitions = 8;

    public static readonly byte[] Tenant = "tenant-ü-1"u8.ToArray();

    public static IngestContext Context(IngestLimits? limits = null, int partitions = Partitions)
        => new(limits ?? new IngestLimits(), Now, partitions);

    public static int PartitionOf(string customer, int partitions = Partitions)
        => Partitioning.PartitionOf(Tenant, Encoding.UTF8.GetBytes(customer), partitions);

    /// <summary>Every record of the batch, partition by partition, each partition in request order.</summary>
    public static List<DecodedEvent> Decode(EncodedBatch batch)
    {
        var events = new List<DecodedEvent>();
        int total = 0;
        for (int p = 0; p < batch.PartitionCount; p++)
        {
            var records = batch.GetPartitionBatch(p);
            Assert.Equal(records.Count > 0, batch.HasRecords(p));
            total += records.Count;
            for (int i = 0; i < records.Count; i++)
            {
                Assert.True(EventRecord.TryRead(records.GetRecord(i), out var view));
                var data = new List<(string, string)>();
                foreach (var entry in view.Data)
                    data.Add((Encoding.UTF8.GetString(entry.Key), Encoding.UTF8.GetString(entry.Value)));
                events.Add(new DecodedEvent(p, view.EventTimeUnixNanos, view.IngestTimeUnixNanos, Encoding.UTF8.GetString(view.Tenant),
                    Encoding.UTF8.GetString(view.Id), Encoding.UTF8.GetString(view.Type), Encoding.UTF8.GetString(view.Customer), [.. data]));
            }
        }
        Assert.Equal(batch.AcceptedCount, total);
        return events;
    }

    /// <summary>The expected records of events, grouped like <see cref="Decode"/>.</summary>
    public static List<DecodedEvent> GroupByPartition(IEnumerable<DecodedEvent> events)
        => [.. events.Select((e, i) => (e, i)).OrderBy(x => x.e.Partition).ThenBy(x => x.i).Select(x => x.e)];

    /// <summary>What a valid generated event must become: the oracle of the round trips.</summary>
    public static DecodedEvent Expected(UsageEvent e, int partitions = Partitions)
        => new(PartitionOf(e.Customer, partitions),
            e.Time is null ? Now : (e.Time.Seconds * 1_000_000_000) + e.Time.Nanos,
            Now, Encoding.UTF8.GetString(Tenant), e.Id, e.Type, e.Customer,
            [.. e.Data.Select(kv => (kv.Key, kv.Value))]);

    /// <summary>Asserts that a refused request left nothing behind.</summary>
    public static void AssertEmpty(EncodedBatch batch)
    {
        Assert.Equal(0, batch.EventCount);
        Assert.Equal(0, batch.AcceptedCount);
        Assert.True(batch.Rejections.IsEmpty);
        Assert.Equal("", batch.BatchId);
        for (int p = 0; p < batch.PartitionCount; p++)
        {
            Assert.False(batch.HasRecords(p));
            Assert.Equal(0, batch.GetPartitionBatch(p).Count);
        }
    }

    public static UsageEvent ValidEvent(int n = 0) => new()
    {
        Id = $"evt-{n}",
        Type = "api_call",
        Customer = $"cust-{n % 5}",
        Time = Timestamp.FromDateTimeOffset(DateTimeOffset.FromUnixTimeMilliseconds((Now / 1_000_000) - 60_000)),
        Data = { ["tokens"] = "12.5", ["model"] = "gpt" },
    };

    public static byte[] Request(params UsageEvent[] events)
    {
        var request = new IngestRequest { BatchId = "batch-1" };
        request.Events.AddRange(events);
        return request.ToByteArray();
    }

    /// <summary>A request of events given as already-encoded UsageEvent messages (for events the generated types cannot express).</summary>
    public static byte[] RawRequest(params byte[][] events)
    {
        var w = new WireBuilder().String(1, "batch-1");
        foreach (var e in events)
            w.Bytes(2, e);
        return w.ToArray();
    }
}

/// <summary>Writes protobuf wire format by hand, including what no generated type would write.</summary>
internal sealed class WireBuilder
{
    private readonly List<byte> _bytes = [];

    public WireBuilder Tag(int field, int wireType) => Varint(((ulong)field << 3) | (uint)wireType);

    public WireBuilder Varint(ulong value)
    {
        while (value >= 0x80)
        {
            _bytes.Add((byte)(value | 0x80));
            value >>= 7;
        }
        _bytes.Add((byte)value);
        return this;
    }

    public WireBuilder VarintField(int field, ulong value) => Tag(field, 0).Varint(value);

    public WireBuilder Bytes(int field, byte[] value)
    {
        Tag(field, 2).Varint((ulong)value.Length);
        _bytes.AddRange(value);
        return this;
    }

    public WireBuilder String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

    public WireBuilder Message(int field, WireBuilder inner) => Bytes(field, inner.ToArray());

    public WireBuilder Fixed32(int field, uint value)
    {
        Tag(field, 5);
        _bytes.AddRange(BitConverter.GetBytes(value));
        return this;
    }

    public WireBuilder Fixed64(int field, ulong value)
    {
        Tag(field, 1);
        _bytes.AddRange(BitConverter.GetBytes(value));
        return this;
    }

    public WireBuilder Raw(params byte[] bytes)
    {
        _bytes.AddRange(bytes);
        return this;
    }

    public byte[] ToArray() => [.. _bytes];

    /// <summary>A valid event (without data), to add fields to.</summary>
    public static WireBuilder Event(string id = "evt", string type = "api_call", string customer = "cust")
        => new WireBuilder().String(1, id).String(2, type).String(3, customer);

    public static WireBuilder Entry(string key, string value) => new WireBuilder().String(1, key).String(2, value);
}
