using System.Text;
using AlphaMesh.Client.Internal;
using AlphaMesh.Usage.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;

namespace AlphaMesh.Client.Tests;

/// <summary>
/// The batch encoder against Google.Protobuf as the oracle: what it parses back must be the events appended, and
/// its own serialization of them must be byte for byte the batch (so every length prefix is the shortest varint).
/// </summary>
public sealed class EventBatchTests
{
    /// <summary>UTF-8 lengths where a length prefix needs one more byte (127/128, 16383/16384), and some around them.</summary>
    private static readonly int[] Lengths = [0, 1, 36, 42, 43, 63, 64, 100, 120, 125, 126, 127, 128, 129, 200, 16_380, 16_383, 16_384, 16_390];

    [Fact]
    public void Append_RandomEventsAroundVarintBoundaries_SerializesLikeProtobuf()
    {
        var random = new Random(20261126);
        for (int round = 0; round < 300; round++)
        {
            var batch = new EventBatch("batch-" + round, random.Next(2) == 0 ? 16 : 64 * 1024);
            var expected = new IngestRequest { BatchId = batch.Id };
            int events = random.Next(1, 8);
            for (int e = 0; e < events; e++)
            {
                string id = Text(random, random.Next(1, 70));
                // Type and customer are never empty: the client refuses that, and protobuf would leave an empty field out.
                string type = Text(random, Math.Max(1, Pick(random)));
                string customer = Text(random, Math.Max(1, Pick(random)));
                var time = DateTimeOffset.UnixEpoch.AddTicks(random.NextInt64(-TimeSpan.TicksPerDay * 400, TimeSpan.TicksPerDay * 30_000));
                if (random.Next(8) == 0)
                {
                    time = DateTimeOffset.UnixEpoch.AddSeconds(random.Next(-2, 3)); // seconds or nanos zero
                }
                var data = new List<KeyValuePair<string, string>>();
                int pairs = random.Next(0, 4);
                for (int p = 0; p < pairs; p++)
                {
                    // Values not empty: protobuf leaves an empty value out of a map entry, the client writes it (both parse the same).
                    data.Add(new(p + Text(random, Math.Max(0, Pick(random) - 1)), Text(random, Math.Max(1, Pick(random)))));
                }

                batch.Append(id, type, customer, time, data.ToArray());

                var usage = new UsageEvent { Id = id, Type = type, Customer = customer, Time = Timestamp.FromDateTimeOffset(time) };
                foreach (var pair in data)
                {
                    usage.Data.Add(pair.Key, pair.Value);
                }
                expected.Events.Add(usage);
            }

            byte[] payload = batch.Payload.ToArray();
            Assert.Equal(expected, IngestRequest.Parser.ParseFrom(payload));
            Assert.Equal(expected.ToByteArray(), payload);
            Assert.Equal(events, batch.Count);
            batch.ReturnBuffer();
        }
    }

    [Fact]
    public void Append_GeneratedIdAndTime_ParsesAsUuidV7AndTheTimeOfTheCall()
    {
        var batch = new EventBatch("b", 256);
        var before = DateTimeOffset.UtcNow;
        batch.Append(null, "api_call", "customer-1", null, [new("tokens", "1.5")]);
        var after = DateTimeOffset.UtcNow;

        var usage = Assert.Single(IngestRequest.Parser.ParseFrom(batch.Payload.ToArray()).Events);
        Assert.Equal(7, Guid.ParseExact(usage.Id, "D").Version);
        Assert.InRange(usage.Time.ToDateTimeOffset(), before, after);
        Assert.Equal("1.5", usage.Data["tokens"]);
    }

    [Fact]
    public void Append_NullDataValue_ThrowsAndLeavesTheBatchAsItWas()
    {
        var batch = new EventBatch("b", 256);
        batch.Append("e1", "api_call", "c1", DateTimeOffset.UnixEpoch, []);
        byte[] before = batch.Payload.ToArray();

        var error = Assert.Throws<ArgumentException>(() => batch.Append("e2", "api_call", "c1", null, [new("k", null!)]));

        Assert.Contains("must not be null", error.Message, StringComparison.Ordinal);
        Assert.Equal(before, batch.Payload.ToArray());
        Assert.Equal(1, batch.Count);
    }

    private static int Pick(Random random) => Lengths[random.Next(Lengths.Length)];

    /// <summary>Text of exactly <paramref name="utf8Bytes"/> UTF-8 bytes: ASCII, or a mix with 2-, 3- and 4-byte characters.</summary>
    private static string Text(Random random, int utf8Bytes)
    {
        bool ascii = random.Next(3) != 0;
        var text = new StringBuilder();
        int left = utf8Bytes;
        while (left > 0)
        {
            int codePoint = ascii || left == 1 ? random.Next(0x20, 0x7F)
                : left == 2 ? random.Next(0xA0, 0x800)
                : left == 3 || random.Next(2) == 0 ? random.Next(0x4E00, 0x9FFF)
                : random.Next(0x1F300, 0x1F64F);
            text.Append(char.ConvertFromUtf32(codePoint));
            left -= Encoding.UTF8.GetByteCount(char.ConvertFromUtf32(codePoint));
        }
        Assert.Equal(utf8Bytes, Encoding.UTF8.GetByteCount(text.ToString()));
        return text.ToString();
    }
}
