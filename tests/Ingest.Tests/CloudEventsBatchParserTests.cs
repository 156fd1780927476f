using System.Globalization;
using System.Text;
using System.Text.Json;
using AlphaMesh.Ingest.Internal;
using static AlphaMesh.Ingest.Tests.TestSupport;

namespace AlphaMesh.Ingest.Tests;

public sealed class CloudEventsBatchParserTests
{
    private static bool Parse(string json, EncodedBatch batch, out string? error, CloudEventsMode mode = CloudEventsMode.Batch, IngestLimits? limits = null)
        => Parse(Encoding.UTF8.GetBytes(json), batch, out error, mode, limits);

    private static bool Parse(byte[] json, EncodedBatch batch, out string? error, CloudEventsMode mode = CloudEventsMode.Batch, IngestLimits? limits = null)
        => CloudEventsBatchParser.TryParse(json, mode, Tenant, Context(limits), batch, out error);

    private const string Time = "2025-06-15T11:59:00Z";
    private static readonly long TimeNanos = Now - (60L * 1_000_000_000);

    private static string Event(int n = 0, string? extra = null)
        => $$"""{"specversion":"1.0","id":"evt-{{n}}","source":"/billing","type":"api_call","subject":"cust-{{n % 5}}","time":"{{Time}}","data":{"tokens":12.5,"model":"gpt"}{{extra}}}""";

    private static DecodedEvent ExpectedEvent(int n = 0)
        => new(PartitionOf($"cust-{n % 5}"), TimeNanos, Now, Encoding.UTF8.GetString(Tenant), $"evt-{n}", "api_call", $"cust-{n % 5}",
            [("tokens", "12.5"), ("model", "gpt")]);

    // ---- Round trip ----------------------------------------------------------------------------------

    private sealed record Model(string Id, string Type, string Subject, long? TimeNanos, string? TimeText, List<(string Key, string RawJson, string Stored)> Data);

    private static readonly string[] Texts = ["plain", "äöü ß", "日本語", "😀🚀", "quote\"back\\slash", "tab\tnew\nline", "</script>", "ctl\u0001"];
    private static readonly string[] Numbers = ["0", "-0", "12.5", "1.50", "2E+3", "-1e-5", "123456789012345678901234567.8", "7"];
    private static readonly int[] OffsetMinutes = [0, 60, -300, 330, 840, -720];

    private static Model RandomModel(Random random, int n)
    {
        string Text() => Texts[random.Next(Texts.Length)] + random.Next(1000);
        long? time = null;
        string? timeText = null;
        if (random.Next(4) != 0)
        {
            long offsetNanos = random.NextInt64(-35L * 24 * 3600 * 1_000_000_000 + 1, 5L * 60 * 1_000_000_000);
            time = Now + offsetNanos;
            long seconds = Math.DivRem(time.Value, 1_000_000_000, out long nanos);
            if (nanos < 0)
            {
                seconds--;
                nanos += 1_000_000_000;
            }
            var offset = TimeSpan.FromMinutes(OffsetMinutes[random.Next(OffsetMinutes.Length)]);
            var local = DateTimeOffset.FromUnixTimeSeconds(seconds).ToOffset(offset);
            string zone = offset == TimeSpan.Zero && random.Next(2) == 0 ? "Z" : local.ToString("zzz", CultureInfo.InvariantCulture);
            // Sometimes fewer fractional digits, then the dropped ones must be zero.
            int digits = random.Next(0, 10);
            long kept = nanos / (long)Math.Pow(10, 9 - digits);
            time = (seconds * 1_000_000_000) + (kept * (long)Math.Pow(10, 9 - digits));
            string fraction = digits == 0 ? "" : "." + kept.ToString(CultureInfo.InvariantCulture).PadLeft(digits, '0');
            timeText = local.ToString("yyyy-MM-dd'T'HH:mm:ss", CultureInfo.InvariantCulture) + fraction + zone;
        }
        var data = new List<(string, string, string)>();
        int entries = random.Next(0, 65);
        for (int i = 0; i < entries; i++)
        {
            string key = Text() + "#" + i;
            switch (random.Next(4))
            {
                case 0:
                    string number = Numbers[random.Next(Numbers.Length)];
                    data.Add((key, number, number));
                    break;
                case 1:
                    bool flag = random.Next(2) == 0;
                    data.Add((key, flag ? "true" : "false", flag ? "true" : "false"));
                    break;
                default:
                    string text = Text();
                    data.Add((key, JsonSerializer.Serialize(text), text));
                    break;
            }
        }
        return new Model(Text() + n, Text(), Text(), time, timeText, data);
    }

    private static void WriteModel(Utf8JsonWriter writer, Model m, Random random)
    {
        writer.WriteStartObject();
        // Attributes in a random order, data sometimes first, plus extensions to ignore.
        var parts = new List<Action>
        {
            () => writer.WriteString("id", m.Id),
            () => writer.WriteString("type", m.Type),
            () => writer.WriteString("subject", m.Subject),
            () => writer.WriteString("specversion", "1.0"),
            () => writer.WriteString("source", "//svc"),
            () => { writer.WritePropertyName("ext"); writer.WriteRawValue("""{"a":[1,{"b":null}],"c":"d"}"""); },
            () =>
            {
                writer.WriteStartObject("data");
                foreach (var (key, raw, _) in m.Data)
                {
                    writer.WritePropertyName(key);
                    writer.WriteRawValue(raw);
                }
                writer.WriteEndObject();
            },
        };
        if (m.TimeText is not null)
            parts.Add(() => writer.WriteString("time", m.TimeText));
        foreach (var part in parts.OrderBy(_ => random.Next()))
            part();
        writer.WriteEndObject();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void TryParse_RandomValidEvents_RecordsMatchModel(int seed)
    {
        var random = new Random(seed);
        var models = Enumerable.Range(0, 200).Select(i => RandomModel(random, i)).ToList();
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartArray();
            foreach (var m in models)
                WriteModel(writer, m, random);
            writer.WriteEndArray();
        }
        var batch = EncodedBatch.Rent(Partitions);
        Assert.True(Parse(buffer.WrittenSpan.ToArray(), batch, out var error), error);
        Assert.Equal(200, batch.EventCount);
        Assert.True(batch.Rejections.IsEmpty, batch.Rejections.IsEmpty ? "" : batch.Rejections[0].Message);
        var expected = models.Select(m => new DecodedEvent(PartitionOf(m.Subject), m.TimeNanos ?? Now, Now, Encoding.UTF8.GetString(Tenant),
            m.Id, m.Type, m.Subject, [.. m.Data.Select(d => (d.Key, d.Stored))]));
        Assert.Equal(GroupByPartition(expected), Decode(batch));
        batch.Return();
    }

    [Theory]
    [InlineData("2025-06-15T12:00:00Z", 0)]
    [InlineData("2025-06-15t12:00:00z", 0)]
    [InlineData("2025-06-15T14:00:00+02:00", 0)]
    [InlineData("2025-06-15T06:30:00-05:30", 0)]
    [InlineData("2025-06-15T12:00:00-00:00", 0)]
    [InlineData("2025-06-15T11:59:59.123456789Z", -876_543_211)]
    [InlineData("2025-06-15T11:59:59.5Z", -500_000_000)]
    [InlineData("2025-06-16T00:59:59.000000001+13:00", -999_999_999)]
    public void TryParse_Rfc3339Time_NormalisedToUtcNanos(string time, long nanosFromNow)
    {
        var batch = EncodedBatch.Rent(Partitions);
        Assert.True(Parse($$"""{"id":"a","type":"t","subject":"c","time":"{{time}}"}""", batch, out var error, CloudEventsMode.Single), error);
        Assert.True(batch.Rejections.IsEmpty, batch.Rejections.IsEmpty ? "" : batch.Rejections[0].Message);
        Assert.Equal(Now + nanosFromNow, Assert.Single(Decode(batch)).EventTimeUnixNanos);
        batch.Return();
    }

    [Fact]
    public void TryParse_EscapedStringsAndNames_StoredUnescaped()
    {
        const string json = """{"\u0069d":"a\u00e9\n\"x\"","type":"t\/u","subject":"\ud83d\ude00","data":{"k\u0065y":"v\\w","n":1.50E+2,"b":false}}""";
        var batch = EncodedBatch.Rent(Partitions);
        Assert.True(Parse(json, batch, out var error, CloudEventsMode.Auto), error);
        var record = Assert.Single(Decode(batch));
        Assert.Equal("aé\n\"x\"", record.Id);
        Assert.Equal("t/u", record.Type);
        Assert.Equal("😀", record.Customer);
        Assert.Equal([("key", "v\\w"), ("n", "1.50E+2"), ("b", "false")], record.Data);
        Assert.Equal(Now, record.EventTimeUnixNanos);
        batch.Return();
    }

    [Fact]
    public void TryParse_NullAttributes_CountAsAbsent()
    {
        const string json = """{"id":"a","type":"t","subject":"c","time":null,"source":null,"specversion":null,"data":null,"x":null}""";
        var batch = EncodedBatch.Rent(Partitions);
        Assert.True(Parse(json, batch, out var error, CloudEventsMode.Single), error);
        var record = Assert.Single(Decode(batch));
        Assert.Equal(Now, record.EventTimeUnixNanos);
        Assert.Empty(record.Data);
        batch.Return();
    }

    [Theory]
    [InlineData("Single", "{}", true)]
    [InlineData("Single", "[]", false)]
    [InlineData("Batch", "[]", true)]
    [InlineData("Batch", "{}", false)]
    [InlineData("Auto", "{}", true)]
    [InlineData("Auto", "[]", true)]
    [InlineData("Auto", " \r\n[ ] \n", true)]
    public void TryParse_TopLevelShape_FollowsMode(string mode, string json, bool ok)
    {
        var batch = EncodedBatch.Rent(Partitions);
        Assert.Equal(ok, Parse(json, batch, out var error, Enum.Parse<CloudEventsMode>(mode)));
        Assert.Equal(ok, error is null);
        batch.Return();
    }

    // ---- Rejections ----------------------------------------------------------------------------------

    private static string Data(string entries) => """{"id":"x","type":"t","subject":"c","data":{""" + entries + "}}";

    public static TheoryData<string, string> RejectionCases => new()
    {
        { """{"type":"t","subject":"c"}""", RejectionCodes.MissingId },
        { """{"id":"","type":"t","subject":"c"}""", RejectionCodes.MissingId },
        { """{"id":null,"type":"t","subject":"c"}""", RejectionCodes.MissingId },
        { $$"""{"id":"{{new string('i', 257)}}","type":"t","subject":"c"}""", RejectionCodes.IdTooLong },
        { $$"""{"id":"{{string.Concat(Enumerable.Repeat("\\u00e9", 129))}}","type":"t","subject":"c"}""", RejectionCodes.IdTooLong },
        { """{"id":"x","subject":"c"}""", RejectionCodes.MissingType },
        { $$"""{"id":"x","type":"{{new string('t', 257)}}","subject":"c"}""", RejectionCodes.TypeTooLong },
        { """{"id":"x","type":"t"}""", RejectionCodes.MissingCustomer },
        { """{"id":"x","type":"t","subject":""}""", RejectionCodes.MissingCustomer },
        { $$"""{"id":"x","type":"t","subject":"{{new string('c', 257)}}"}""", RejectionCodes.CustomerTooLong },
        { """{"id":"x","type":"t","subject":"c","time":"2025-05-11T11:59:59.999Z"}""", RejectionCodes.TimeTooOld },
        { """{"id":"x","type":"t","subject":"c","time":"1970-01-01T00:00:00Z"}""", RejectionCodes.TimeTooOld },
        { """{"id":"x","type":"t","subject":"c","time":"0001-01-01T00:00:00+00:00"}""", RejectionCodes.TimeTooOld },
        { """{"id":"x","type":"t","subject":"c","time":"2025-06-15T12:05:00.000000001Z"}""", RejectionCodes.TimeInFuture },
        { """{"id":"x","type":"t","subject":"c","time":"9999-12-31T23:59:59Z"}""", RejectionCodes.TimeInFuture },
        { """{"id":"x","type":"t","subject":"c","time":"yesterday"}""", RejectionCodes.InvalidTime },
        { """{"id":"x","type":"t","subject":"c","time":""}""", RejectionCodes.InvalidTime },
        { """{"id":"x","type":"t","subject":"c","time":"2025-06-15T12:00:00"}""", RejectionCodes.InvalidTime },
        { """{"id":"x","type":"t","subject":"c","time":"2025-06-15 12:00:00Z"}""", RejectionCodes.InvalidTime },
        { """{"id":"x","type":"t","subject":"c","time":"2025-02-29T12:00:00Z"}""", RejectionCodes.InvalidTime },
        { """{"id":"x","type":"t","subject":"c","time":"2025-06-15T12:00:60Z"}""", RejectionCodes.InvalidTime },
        { """{"id":"x","type":"t","subject":"c","time":"2025-06-15T12:00:00.1234567891Z"}""", RejectionCodes.InvalidTime },
        { """{"id":"x","type":"t","subject":"c","time":"2025-06-15T12:00:00.Z"}""", RejectionCodes.InvalidTime },
        { """{"id":"x","type":"t","subject":"c","time":"2025-06-15T12:00:00+24:00"}""", RejectionCodes.InvalidTime },
        { """{"id":"x","type":"t","subject":"c","time":"2025-06-15T12:00:00Z "}""", RejectionCodes.InvalidTime },
        { """{"id":"x","type":"t","subject":"c","time":"0000-01-01T00:00:00Z"}""", RejectionCodes.InvalidTime },
        { Data("\"n\":1e400"), RejectionCodes.InvalidNumber },
        { Data("\"n\":-1E+29"), RejectionCodes.InvalidNumber },
        { Data("\"n\":\"1e400\""), RejectionCodes.InvalidNumber },
        { Data("\"n\":\"NaN\""), RejectionCodes.InvalidNumber },
        { Data("\"n\":\"Infinity\""), RejectionCodes.InvalidNumber },
        { Data("\"n\":\"-inf\""), RejectionCodes.InvalidNumber },
        { Data("\"n\":\"+nAn\""), RejectionCodes.InvalidNumber },
        { Data(string.Join(",", Enumerable.Range(0, 65).Select(i => $"\"k{i}\":{i}"))), RejectionCodes.TooManyDataEntries },
        { Data($"\"{new string('k', 129)}\":1"), RejectionCodes.DataKeyTooLong },
        { Data($"\"k\":\"{new string('v', 1025)}\""), RejectionCodes.DataValueTooLong },
        { Data("\"\":\"v\""), RejectionCodes.EmptyDataKey },
        { """{"id":"\ud800","type":"t","subject":"c"}""", RejectionCodes.InvalidUtf8 },
        { Data("\"k\":\"\\udc00x\""), RejectionCodes.InvalidUtf8 },
        { Data("\"k\":null"), RejectionCodes.InvalidData },
        { Data("\"k\":{\"a\":1}"), RejectionCodes.InvalidData },
        { Data("\"k\":[1,2]"), RejectionCodes.InvalidData },
        { """{"id":"x","type":"t","subject":"c","data":"text"}""", RejectionCodes.InvalidData },
        { """{"id":"x","type":"t","subject":"c","data":[1]}""", RejectionCodes.InvalidData },
        { """{"id":"x","type":"t","subject":"c","data_base64":"AAEC"}""", RejectionCodes.InvalidData },
        { Data("\"k\":1,\"k\":2"), RejectionCodes.DuplicateDataKey },
        { Data("\"k\":1,\"a\":true,\"\\u006b\":\"2\""), RejectionCodes.DuplicateDataKey },
    };

    [Theory]
    [MemberData(nameof(RejectionCases))]
    public void TryParse_InvalidEventAmongValidOnes_RejectsOnlyIt(string badEvent, string code)
    {
        var batch = EncodedBatch.Rent(Partitions);
        Assert.True(Parse($"[{Event(0)},{badEvent},{Event(2)}]", batch, out var error), error);
        Assert.Equal(3, batch.EventCount);
        Assert.Equal(2, batch.AcceptedCount);
        var rejection = Assert.Single(batch.Rejections.ToArray());
        Assert.Equal(1, rejection.Index);
        Assert.Equal(code, rejection.Code);
        Assert.False(string.IsNullOrWhiteSpace(rejection.Message));
        Assert.Equal(GroupByPartition([ExpectedEvent(0), ExpectedEvent(2)]), Decode(batch));
        batch.Return();
    }

    [Theory]
    [InlineData("""{"id":"x","type":"t"}""", "subject is missing or empty")]
    [InlineData("""{"id":"x","type":"t","subject":"c","time":"nope"}""", "time 'nope' is not an RFC 3339 timestamp")]
    [InlineData("""{"id":"x","type":"t","subject":"c","time":"2100-01-01T00:00:00Z"}""", "clock skew of 00:05:00")]
    [InlineData("""{"id":"x","type":"t","subject":"c","data":{"k":null}}""", "data 'k' is null")]
    [InlineData("""{"id":"x","type":"t","subject":"c","data":{"k":"v","":"w"}}""", "data entry 1 has an empty key")]
    public void TryParse_InvalidEvent_MessageNamesProblem(string json, string expected)
    {
        var batch = EncodedBatch.Rent(Partitions);
        Assert.True(Parse(json, batch, out var error, CloudEventsMode.Single), error);
        Assert.Contains(expected, Assert.Single(batch.Rejections.ToArray()).Message, StringComparison.Ordinal);
        batch.Return();
    }

    [Fact]
    public void TryParse_FirstProblemOfEvent_IsTheOneReported()
    {
        var batch = EncodedBatch.Rent(Partitions);
        Assert.True(Parse("""{"type":"","time":"bad","data":{"":null}}""", batch, out var error, CloudEventsMode.Single), error);
        Assert.Equal(RejectionCodes.MissingId, Assert.Single(batch.Rejections.ToArray()).Code);
        batch.Return();
    }

    // ---- Malformed requests ------------------------------------------------------------------------

    public static TheoryData<string, string> MalformedRequests => new()
    {
        { "empty", "" },
        { "whitespace", "  \n" },
        { "not json", "hello" },
        { "unclosed array", "[" },
        { "unclosed object", "[{\"id\":\"a\"" },
        { "missing value", "[{\"id\":}]" },
        { "trailing comma", "[{\"id\":\"a\",}]" },
        { "trailing content", "[{}] x" },
        { "two values", "[] []" },
        { "comment", "/* c */ []" },
        { "single quotes", "[{'id':'a'}]" },
        { "string top level", "\"event\"" },
        { "number top level", "42" },
        { "element not object", "[{}, 5]" },
        { "element null", "[null]" },
        { "id number", "[{\"id\":5}]" },
        { "id object", "[{\"id\":{}}]" },
        { "type bool", "[{\"id\":\"a\",\"type\":true}]" },
        { "subject array", "[{\"id\":\"a\",\"subject\":[]}]" },
        { "time number", "[{\"id\":\"a\",\"time\":1718450000}]" },
        { "source number", "[{\"source\":1}]" },
        { "specversion 0.3", "[{\"specversion\":\"0.3\"}]" },
        { "specversion number", "[{\"specversion\":1.0}]" },
        { "deep nesting", "[{\"x\":" + new string('[', 100) + new string(']', 100) + "}]" },
        { "invalid escape", "[{\"id\":\"\\q\"}]" },
        { "control char", "[{\"id\":\"a\u0001\"}]" },
    };

    [Theory]
    [MemberData(nameof(MalformedRequests))]
    public void TryParse_MalformedRequest_FalseWithReasonAndEmptyBatch(string scenario, string json)
    {
        var batch = EncodedBatch.Rent(Partitions);
        // A good event first, so that "empty" really means emptied.
        string body = json.StartsWith('[') ? "[" + Event(9) + "," + json[1..] : json;
        if (body.EndsWith(",]", StringComparison.Ordinal))
            body = body[..^2] + "]";
        Assert.False(Parse(body, batch, out var error, CloudEventsMode.Auto), scenario);
        Assert.False(string.IsNullOrWhiteSpace(error));
        AssertEmpty(batch);
        batch.Return();
    }

    [Fact]
    public void TryParse_NonStringId_ReasonSaysWhere()
    {
        var batch = EncodedBatch.Rent(Partitions);
        Assert.False(Parse($"[{Event(0)},{Event(1)},{Event(2)},{{\"id\":3}}]", batch, out var error));
        Assert.Equal("event 3: 'id' must be a string, found a number", error);
        AssertEmpty(batch);
        batch.Return();
    }

    [Fact]
    public void TryParse_InvalidUtf8Bytes_ControlledOutcome()
    {
        var json = Encoding.UTF8.GetBytes("""{"id":"a?","type":"t","subject":"c"}""");
        json[8] = 0xFF;
        var batch = EncodedBatch.Rent(Partitions);
        // Either a malformed request or an invalid_utf8 rejection; never an accepted record with bad bytes.
        if (Parse(json, batch, out var error, CloudEventsMode.Single))
            Assert.Equal(RejectionCodes.InvalidUtf8, Assert.Single(batch.Rejections.ToArray()).Code);
        else
            AssertEmpty(batch);
        batch.Return();
    }

    [Fact]
    public void TryParse_EveryTruncation_NeverThrowsAndLeavesNothingOnFalse()
    {
        var json = Encoding.UTF8.GetBytes($"[{Event(0)},{Event(1, ",\"ext\":{\"a\":[1,2,{\"b\":\"\\u00e9\"}]}")}]");
        var batch = EncodedBatch.Rent(Partitions);
        for (int length = 0; length < json.Length; length++)
        {
            // A proper prefix of a JSON array is never complete JSON.
            Assert.False(Parse(json[..length], batch, out var error, CloudEventsMode.Auto), $"length {length}");
            Assert.NotNull(error);
            AssertEmpty(batch);
        }
        Assert.True(Parse(json, batch, out var last, CloudEventsMode.Auto), last);
        batch.Return();
    }

    [Fact]
    public void TryParse_MutatedDocuments_NeverThrowsAndLeavesNothingOnFalse()
    {
        var valid = Encoding.UTF8.GetBytes($"[{Event(0)},{Event(1, ",\"ext\":[1,{\"b\":null}]")},{Data("\"a\":\"\\u00e9\",\"b\":true,\"c\":-1.5e3")}]");
        const string alphabet = "{}[],:\"\\ -0123456789.eE+tfnu\u00e9\u0001x";
        var batch = EncodedBatch.Rent(Partitions);
        for (int seed = 0; seed < 5000; seed++)
        {
            var random = new Random(seed);
            var bytes = new List<byte>(valid);
            int changes = random.Next(1, 5);
            for (int i = 0; i < changes && bytes.Count > 0; i++)
            {
                int at = random.Next(bytes.Count);
                byte b = random.Next(4) == 0 ? (byte)random.Next(256) : (byte)alphabet[random.Next(alphabet.Length)];
                switch (random.Next(3))
                {
                    case 0: bytes[at] = b; break;
                    case 1: bytes.Insert(at, b); break;
                    default: bytes.RemoveAt(at); break;
                }
            }
            var mode = (CloudEventsMode)(seed % 3);
            if (Parse([.. bytes], batch, out var error, mode))
            {
                Assert.Null(error);
                Assert.Equal(batch.EventCount, batch.AcceptedCount + batch.Rejections.Length);
                Decode(batch);
            }
            else
            {
                Assert.NotNull(error);
                AssertEmpty(batch);
            }
        }
        batch.Return();
    }

    // ---- Limits -------------------------------------------------------------------------------------

    [Fact]
    public void TryParse_OneEventOverMaxEventsPerBatch_FalseWithReason()
    {
        var limits = new IngestLimits();
        var events = Enumerable.Range(0, limits.MaxEventsPerBatch + 1).Select(i => Event(i)).ToArray();
        var batch = EncodedBatch.Rent(Partitions);
        Assert.False(Parse("[" + string.Join(",", events) + "]", batch, out var error, limits: limits));
        Assert.Contains("more than 10000 events", error, StringComparison.Ordinal);
        AssertEmpty(batch);
        Assert.True(Parse("[" + string.Join(",", events[..^1]) + "]", batch, out error, limits: limits), error);
        Assert.Equal(10_000, batch.AcceptedCount);
        batch.Return();
    }

    [Fact]
    public void TryParse_RequestOverMaxRequestBytes_FalseWithReason()
    {
        string json = Event(0);
        var batch = EncodedBatch.Rent(Partitions);
        Assert.False(Parse(json, batch, out var error, CloudEventsMode.Single, new IngestLimits { MaxRequestBytes = 10 }));
        Assert.Contains("the limit is 10", error, StringComparison.Ordinal);
        AssertEmpty(batch);
        batch.Return();
    }
}
