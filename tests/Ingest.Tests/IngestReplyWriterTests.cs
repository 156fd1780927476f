using System.Buffers;
using System.Text;
using System.Text.Json;
using AlphaMesh.Ingest.Internal;
using AlphaMesh.Usage.V1;
using static AlphaMesh.Ingest.Tests.TestSupport;

namespace AlphaMesh.Ingest.Tests;

public sealed class IngestReplyWriterTests
{
    /// <summary>A batch with a unicode batch id, accepted events and rejections at indices 0 (a default value on the wire) and later.</summary>
    private static EncodedBatch ParsedBatch(string batchId, int good, bool withRejections)
    {
        var events = new List<string>();
        if (withRejections)
            events.Add("""{"type":"t","subject":"c"}""");
        for (int i = 0; i < good; i++)
            events.Add($$"""{"id":"e{{i}}","type":"t","subject":"c{{i}}"}""");
        if (withRejections)
        {
            events.Add("{\"id\":\"x\",\"type\":\"t\",\"subject\":\"c\",\"data\":{\"k\":\"" + new string('v', 2000) + "\"}}");
            events.Add("""{"id":"x","type":"t","subject":"c","data":{"ключ":null}}""");
        }
        string json = $$"""[{{string.Join(",", events)}}]""";
        var batch = EncodedBatch.Rent(Partitions);
        Assert.True(CloudEventsBatchParser.TryParse(Encoding.UTF8.GetBytes(json), CloudEventsMode.Batch, Tenant, Context(), batch, out var error), error);
        batch.BatchId = batchId;
        return batch;
    }

    public static TheoryData<string, int, bool> Replies => new()
    {
        { "", 0, false },
        { "batch-1", 3, false },
        { "bätch-✓-😀", 200, true },
        { "", 0, true },
        { new string('b', 300), 1, true },
    };

    [Theory]
    [MemberData(nameof(Replies))]
    public void WriteProtobuf_ParsedBatch_GeneratedParserReadsSameReply(string batchId, int good, bool withRejections)
    {
        var batch = ParsedBatch(batchId, good, withRejections);
        var output = new ArrayBufferWriter<byte>(1); // tiny, so that every GetSpan must grow it
        IngestReplyWriter.WriteProtobuf(batch, output);

        var reply = IngestReply.Parser.ParseFrom(output.WrittenSpan);
        Assert.Equal(batchId, reply.BatchId);
        Assert.Equal(good, reply.Accepted);
        Assert.Equal(
            batch.Rejections.ToArray().Select(r => (r.Index, r.Code, r.Message)),
            reply.Rejected.Select(r => (r.Index, r.Code, r.Message)));
        batch.Return();
    }

    [Theory]
    [MemberData(nameof(Replies))]
    public void WriteJson_ParsedBatch_SystemTextJsonReadsSameReply(string batchId, int good, bool withRejections)
    {
        var batch = ParsedBatch(batchId, good, withRejections);
        var output = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(output))
            IngestReplyWriter.WriteJson(batch, writer);

        using var document = JsonDocument.Parse(output.WrittenMemory);
        var root = document.RootElement;
        Assert.Equal(["batchId", "accepted", "rejected"], root.EnumerateObject().Select(p => p.Name));
        Assert.Equal(batchId, root.GetProperty("batchId").GetString());
        Assert.Equal(good, root.GetProperty("accepted").GetInt32());
        Assert.Equal(
            batch.Rejections.ToArray().Select(r => (r.Index, r.Code, r.Message)),
            root.GetProperty("rejected").EnumerateArray().Select(r =>
                (r.GetProperty("index").GetInt32(), r.GetProperty("code").GetString()!, r.GetProperty("message").GetString()!)));
        batch.Return();
    }

    [Fact]
    public void WriteJson_NoRejections_WritesEmptyArray()
    {
        var batch = ParsedBatch("b", 1, false);
        var output = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(output))
            IngestReplyWriter.WriteJson(batch, writer);
        Assert.Equal("""{"batchId":"b","accepted":1,"rejected":[]}""", Encoding.UTF8.GetString(output.WrittenSpan));
        batch.Return();
    }
}
