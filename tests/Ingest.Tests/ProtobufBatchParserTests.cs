using System.Text;
using AlphaMesh.Ingest.Internal;
using AlphaMesh.Usage.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using static AlphaMesh.Ingest.Tests.TestSupport;

namespace AlphaMesh.Ingest.Tests;

public sealed class ProtobufBatchParserTests
{
    private static bool Parse(byte[] request, EncodedBatch batch, out string? error, IngestLimits? limits = null, int partitions = Partitions)
        => ProtobufBatchParser.TryParse(request, Tenant, Context(limits, partitions), batch, out error);

    // ---- Round trip against the generated types -------------------------------------------------

    private static readonly string[] Alphabets = ["abcxyz0189-_", "äöüßéçñ", "日本語中文한국어", "😀🚀🧪𝄞", "Ωπσ∑∫", "\t \"\\/"];

    private static string RandomText(Random random, int maxBytes)
    {
        var text = new StringBuilder();
        int length = random.Next(1, 40);
        for (int i = 0; i < length; i++)
        {
            var alphabet = Alphabets[random.Next(Alphabets.Length)];
            // Pick whole text elements so that surrogate pairs stay together.
            var elements = System.Globalization.StringInfo.GetTextElementEnumerator(alphabet);
            int pick = random.Next(new System.Globalization.StringInfo(alphabet).LengthInTextElements);
            for (int j = 0; j <= pick; j++)
                elements.MoveNext();
            string element = elements.GetTextElement();
            if (Encoding.UTF8.GetByteCount(text.ToString()) + Encoding.UTF8.GetByteCount(element) > maxBytes)
                break;
            text.Append(element);
        }
        return text.Length == 0 ? "x" : text.ToString();
    }

    private static UsageEvent RandomEvent(Random random, int n)
    {
        var e = new UsageEvent
        {
            Id = RandomText(random, 256) + n, // unique ids are not required; they make failures easier to read
            Type = RandomText(random, 200),
            Customer = RandomText(random, 256),
        };
        if (random.Next(4) != 0)
        {
            // Anywhere within the accepted window [now - 35 days, now + 5 minutes].
            long offset = random.NextInt64(-35L * 24 * 3600 * 1_000_000_000 + 1, 5L * 60 * 1_000_000_000);
            long t = Now + offset;
            e.Time = new Timestamp { Seconds = Math.DivRem(t, 1_000_000_000, out long nanos), Nanos = (int)nanos };
            if (e.Time.Nanos < 0)
            {
                e.Time.Seconds--;
                e.Time.Nanos += 1_000_000_000;
            }
        }
        int entries = random.Next(0, 65);
        for (int i = 0; i < entries; i++)
        {
            string key = RandomText(random, 120) + i;
            string value = random.Next(3) switch
            {
                0 => (random.NextDouble() * 1e6).ToString("F4", System.Globalization.CultureInfo.InvariantCulture),
                1 => random.Next(-1000, 1000).ToString(System.Globalization.CultureInfo.InvariantCulture),
                _ => random.Next(10) == 0 ? "" : RandomText(random, 1024),
            };
            e.Data[key] = value;
        }
        return e;
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 1)]
    [InlineData(3, 8)]
    [InlineData(4, 16)]
    [InlineData(5, 3)]
    public void TryParse_RandomValidEvents_RecordsMatchGeneratedMessages(int seed, int partitions)
    {
        var random = new Random(seed);
        var request = new IngestRequest { BatchId = "batch-" + RandomText(random, 50) };
        for (int i = 0; i < 200; i++)
            request.Events.Add(RandomEvent(random, i));
        var batch = EncodedBatch.Rent(partitions);
        try
        {
            Assert.True(Parse(request.ToByteArray(), batch, out var error, partitions: partitions), error);
            Assert.Null(error);
            Assert.Equal(request.BatchId, batch.BatchId);
            Assert.Equal(200, batch.EventCount);
            Assert.Equal(200, batch.AcceptedCount);
            Assert.True(batch.Rejections.IsEmpty);
            var expected = GroupByPartition(request.Events.Select(e => Expected(e, partitions)));
            Assert.Equal(expected, Decode(batch));
        }
        finally
        {
            batch.Return();
        }
    }

    [Fact]
    public void TryParse_EmptyRequest_AcceptsNothing()
    {
        var batch = EncodedBatch.Rent(Partitions);
        Assert.True(Parse([], batch, out var error), error);
        Assert.Equal(0, batch.EventCount);
        Assert.Equal("", batch.BatchId);
        batch.Return();
    }

    [Fact]
    public void TryParse_EventWithoutTime_UsesReceiveTime()
    {
        var e = ValidEvent();
        e.Time = null;
        var batch = EncodedBatch.Rent(Partitions);
        Assert.True(Parse(Request(e), batch, out var error), error);
        var record = Assert.Single(Decode(batch));
        Assert.Equal(Now, record.EventTimeUnixNanos);
        Assert.Equal(Now, record.IngestTimeUnixNanos);
        batch.Return();
    }

    // ---- Protobuf rules: order, unknown fields, last one wins, map entries --------------------------

    [Fact]
    public void TryParse_FieldsInAnyOrderWithUnknownFields_SkipsUnknownAndLastWins()
    {
        long seconds = (Now / 1_000_000_000) - 10;
        var time = new WireBuilder().VarintField(2, 7).Fixed32(9, 1).VarintField(1, (ulong)seconds);
        var entry = new WireBuilder().String(2, "v-old").VarintField(3, 5).String(1, "k").String(2, "v");
        var group = new WireBuilder().Tag(20, 3).VarintField(1, 1).Tag(21, 3).Tag(21, 4).Tag(20, 4).ToArray();
        var e = new WireBuilder()
            .Message(5, entry)
            .String(3, "old-customer")
            .Fixed64(15, 42)
            .Raw(group)
            .Message(4, time)
            .String(1, "first-id")
            .String(2, "api_call")
            .String(1, "evt-1")
            .String(3, "cust-1")
            .VarintField(16, 300)
            .ToArray();
        var request = new WireBuilder().Bytes(2, e).String(1, "old").Fixed32(7, 0).Raw(group).String(1, "batch-9").VarintField(99, 1).ToArray();

        var batch = EncodedBatch.Rent(Partitions);
        Assert.True(Parse(request, batch, out var error), error);
        Assert.Equal("batch-9", batch.BatchId);
        var record = Assert.Single(Decode(batch));
        Assert.Equal("evt-1", record.Id);
        Assert.Equal("cust-1", record.Customer);
        Assert.Equal(PartitionOf("cust-1"), record.Partition);
        Assert.Equal((seconds * 1_000_000_000) + 7, record.EventTimeUnixNanos);
        Assert.Equal([("k", "v")], record.Data);
        batch.Return();
    }

    [Fact]
    public void TryParse_TimeSentTwice_MergesLikeProtobuf()
    {
        long seconds = (Now / 1_000_000_000) - 10;
        var e = WireBuilder.Event()
            .Message(4, new WireBuilder().VarintField(1, (ulong)seconds).VarintField(2, 5))
            .Message(4, new WireBuilder().VarintField(2, 9))
            .ToArray();
        var batch = EncodedBatch.Rent(Partitions);
        Assert.True(Parse(RawRequest(e), batch, out var error), error);
        Assert.Equal((seconds * 1_000_000_000) + 9, Assert.Single(Decode(batch)).EventTimeUnixNanos);
        batch.Return();
    }

    [Fact]
    public void TryParse_MapEntryWithoutValue_StoresEmptyValue()
    {
        var e = WireBuilder.Event().Message(5, new WireBuilder().String(1, "flag")).ToArray();
        var batch = EncodedBatch.Rent(Partitions);
        Assert.True(Parse(RawRequest(e), batch, out var error), error);
        Assert.Equal([("flag", "")], Assert.Single(Decode(batch)).Data);
        batch.Return();
    }

    // ---- Rejections ---------------------------------------------------------------------------------

    private static readonly byte[] InvalidUtf8 = [0x61, 0xC3, 0x28];

    private static readonly Dictionary<string, Func<byte[]>> RejectedEvents = new()
    {
        ["no id"] = () => Modify(e => e.Id = ""),
        ["long id"] = () => Modify(e => e.Id = new string('a', 257)),
        ["long unicode id"] = () => Modify(e => e.Id = string.Concat(Enumerable.Repeat("é", 129))),
        ["no type"] = () => Modify(e => e.Type = ""),
        ["long type"] = () => Modify(e => e.Type = new string('t', 257)),
        ["no customer"] = () => Modify(e => e.Customer = ""),
        ["long customer"] = () => Modify(e => e.Customer = new string('c', 257)),
        ["old time"] = () => Modify(e => e.Time = Timestamp.FromDateTime(new DateTime(2025, 5, 10, 0, 0, 0, DateTimeKind.Utc))),
        ["epoch time"] = () => Modify(e => e.Time = new Timestamp()),
        ["year 1 time"] = () => Modify(e => e.Time = new Timestamp { Seconds = -62_135_596_800 }),
        ["future time"] = () => Modify(e => e.Time = Timestamp.FromDateTime(new DateTime(2025, 6, 15, 12, 5, 1, DateTimeKind.Utc))),
        ["year 9999 time"] = () => Modify(e => e.Time = new Timestamp { Seconds = 253_402_300_799 }),
        ["negative nanos"] = () => Modify(e => e.Time = new Timestamp { Seconds = Now / 1_000_000_000, Nanos = -1 }),
        ["nanos too large"] = () => Modify(e => e.Time = new Timestamp { Seconds = Now / 1_000_000_000, Nanos = 1_000_000_000 }),
        ["seconds beyond 9999"] = () => Modify(e => e.Time = new Timestamp { Seconds = 253_402_300_800 }),
        ["seconds before 0001"] = () => Modify(e => e.Time = new Timestamp { Seconds = long.MinValue }),
        ["1e400"] = () => Modify(e => e.Data["n"] = "1e400"),
        ["NaN"] = () => Modify(e => e.Data["n"] = "NaN"),
        ["-inf"] = () => Modify(e => e.Data["n"] = "-inf"),
        ["+Infinity"] = () => Modify(e => e.Data["n"] = "+Infinity"),
        ["decimal overflow"] = () => Modify(e => e.Data["n"] = "79228162514264337593543950336"),
        ["65 entries"] = () => Modify(e => { for (int i = 0; i < 63; i++) e.Data["k" + i] = "v"; }),
        ["long key"] = () => Modify(e => e.Data[new string('k', 129)] = "v"),
        ["long value"] = () => Modify(e => e.Data["k"] = new string('v', 1025)),
        ["empty key"] = () => Modify(e => e.Data[""] = "v"),
        ["entry without key"] = () => WireBuilder.Event().Message(5, new WireBuilder().String(2, "v")).ToArray(),
        ["invalid utf8 id"] = () => new WireBuilder().Bytes(1, InvalidUtf8).String(2, "t").String(3, "c").ToArray(),
        ["invalid utf8 type"] = () => new WireBuilder().String(1, "i").Bytes(2, InvalidUtf8).String(3, "c").ToArray(),
        ["invalid utf8 customer"] = () => new WireBuilder().String(1, "i").String(2, "t").Bytes(3, InvalidUtf8).ToArray(),
        ["invalid utf8 key"] = () => WireBuilder.Event().Message(5, new WireBuilder().Bytes(1, InvalidUtf8).String(2, "v")).ToArray(),
        ["invalid utf8 value"] = () => WireBuilder.Event().Message(5, new WireBuilder().String(1, "k").Bytes(2, InvalidUtf8)).ToArray(),
        ["duplicate key"] = () => WireBuilder.Event().Message(5, WireBuilder.Entry("a", "1")).Message(5, WireBuilder.Entry("b", "2"))
            .Message(5, WireBuilder.Entry("a", "3")).ToArray(),
    };

    private static byte[] Modify(Action<UsageEvent> change)
    {
        var e = ValidEvent(1);
        change(e);
        return e.ToByteArray();
    }

    public static TheoryData<string, string> RejectionCases => new()
    {
        { "no id", RejectionCodes.MissingId },
        { "long id", RejectionCodes.IdTooLong },
        { "long unicode id", RejectionCodes.IdTooLong },
        { "no type", RejectionCodes.MissingType },
        { "long type", RejectionCodes.TypeTooLong },
        { "no customer", RejectionCodes.MissingCustomer },
        { "long customer", RejectionCodes.CustomerTooLong },
        { "old time", RejectionCodes.TimeTooOld },
        { "epoch time", RejectionCodes.TimeTooOld },
        { "year 1 time", RejectionCodes.TimeTooOld },
        { "future time", RejectionCodes.TimeInFuture },
        { "year 9999 time", RejectionCodes.TimeInFuture },
        { "negative nanos", RejectionCodes.InvalidTime },
        { "nanos too large", RejectionCodes.InvalidTime },
        { "seconds beyond 9999", RejectionCodes.InvalidTime },
        { "seconds before 0001", RejectionCodes.InvalidTime },
        { "1e400", RejectionCodes.InvalidNumber },
        { "NaN", RejectionCodes.InvalidNumber },
        { "-inf", RejectionCodes.InvalidNumber },
        { "+Infinity", RejectionCodes.InvalidNumber },
        { "decimal overflow", RejectionCodes.InvalidNumber },
        { "65 entries", RejectionCodes.TooManyDataEntries },
        { "long key", RejectionCodes.DataKeyTooLong },
        { "long value", RejectionCodes.DataValueTooLong },
        { "empty key", RejectionCodes.EmptyDataKey },
        { "entry without key", RejectionCodes.EmptyDataKey },
        { "invalid utf8 id", RejectionCodes.InvalidUtf8 },
        { "invalid utf8 type", RejectionCodes.InvalidUtf8 },
        { "invalid utf8 customer", RejectionCodes.InvalidUtf8 },
        { "invalid utf8 key", RejectionCodes.InvalidUtf8 },
        { "invalid utf8 value", RejectionCodes.InvalidUtf8 },
        { "duplicate key", RejectionCodes.DuplicateDataKey },
    };

    [Theory]
    [MemberData(nameof(RejectionCases))]
    public void TryParse_InvalidEventAmongValidOnes_RejectsOnlyIt(string scenario, string code)
    {
        var good = ValidEvent(0);
        var request = RawRequest(good.ToByteArray(), RejectedEvents[scenario](), ValidEvent(2).ToByteArray());
        var batch = EncodedBatch.Rent(Partitions);
        Assert.True(Parse(request, batch, out var error), error);
        Assert.Equal(3, batch.EventCount);
        Assert.Equal(2, batch.AcceptedCount);
        var rejection = Assert.Single(batch.Rejections.ToArray());
        Assert.Equal(1, rejection.Index);
        Assert.Equal(code, rejection.Code);
        Assert.False(string.IsNullOrWhiteSpace(rejection.Message));
        Assert.Equal(GroupByPartition([Expected(good), Expected(ValidEvent(2))]), Decode(batch));
        batch.Return();
    }

    [Theory]
    [InlineData("long id", "id is 257 bytes; the limit is 256")]
    [InlineData("long unicode id", "id is 258 bytes; the limit is 256")]
    [InlineData("long customer", "customer is 257 bytes; the limit is 256")]
    [InlineData("65 entries", "data has 65 entries; the limit is 64")]
    [InlineData("long value", "value is 1025 bytes; the limit is 1024")]
    [InlineData("long key", "bytes; the limit is 128")]
    [InlineData("old time", "backdating limit of 35.00:00:00")]
    [InlineData("nanos too large", "nanos 1000000000")]
    [InlineData("1e400", "'1e400'")]
    [InlineData("duplicate key", "'a' appears more than once")]
    public void TryParse_InvalidEvent_MessageNamesProblemAndLimit(string scenario, string expected)
    {
        var batch = EncodedBatch.Rent(Partitions);
        Assert.True(Parse(RawRequest(RejectedEvents[scenario]()), batch, out var error), error);
        Assert.Contains(expected, Assert.Single(batch.Rejections.ToArray()).Message, StringComparison.Ordinal);
        batch.Return();
    }

    [Fact]
    public void TryParse_RandomDataKeys_RejectsExactlyTheEventsWithARepeatedKeyNamingIt()
    {
        // Up to 8 entries the duplicate check compares pairs, beyond that it hashes: both against a set per event.
        Assert.Equal(8, EventEncoder.PairwiseDuplicateCheckEntries);
        var random = new Random(3);
        var events = new List<byte[]>();
        var expected = new List<(int Index, string Key)>();
        for (int i = 0; i < 2000; i++)
        {
            var e = WireBuilder.Event(id: "dup-" + i);
            int count = random.Next(0, 20);
            var seen = new HashSet<string>();
            string? firstRepeat = null;
            for (int k = 0; k < count; k++)
            {
                // A small alphabet of keys, some of them prefixes of others, so that repeats are common.
                string key = random.Next(4) switch { 0 => "k", 1 => "k" + random.Next(30), 2 => "key" + random.Next(30), _ => "kk" + random.Next(30) };
                if (!seen.Add(key))
                    firstRepeat ??= key;
                e.Message(5, WireBuilder.Entry(key, "v"));
            }
            events.Add(e.ToArray());
            if (firstRepeat is not null)
                expected.Add((i, firstRepeat));
        }
        var batch = EncodedBatch.Rent(Partitions);

        Assert.True(Parse(RawRequest([.. events]), batch, out var error), error);

        var rejections = batch.Rejections.ToArray();
        Assert.Equal(expected.Select(x => x.Index), rejections.Select(r => r.Index));
        Assert.All(rejections, r => Assert.Equal(RejectionCodes.DuplicateDataKey, r.Code));
        Assert.All(rejections.Zip(expected), pair => Assert.Contains($"'{pair.Second.Key}' appears more than once", pair.First.Message, StringComparison.Ordinal));
        Assert.True(expected.Count is > 200 and < 1800, $"{expected.Count} of 2000 events repeat a key");
        batch.Return();
    }

    [Fact]
    public void TryParse_ManyBadEventsAmongGoodOnes_IndicesAndCountsRight()
    {
        var events = new List<byte[]>();
        var expected = new List<DecodedEvent>();
        var expectedRejections = new List<(int, string)>();
        var cases = RejectionCases.Select(row => ((string)row[0], (string)row[1])).ToArray();
        for (int i = 0; i < 300; i++)
        {
            if (i % 3 == 1)
            {
                var (scenario, code) = cases[i % cases.Length];
                events.Add(RejectedEvents[scenario]());
                expectedRejections.Add((i, code));
            }
            else
            {
                var e = ValidEvent(i);
                events.Add(e.ToByteArray());
                expected.Add(Expected(e));
            }
        }
        var batch = EncodedBatch.Rent(Partitions);
        Assert.True(Parse(RawRequest([.. events]), batch, out var error), error);
        Assert.Equal(300, batch.EventCount);
        Assert.Equal(200, batch.AcceptedCount);
        Assert.Equal(expectedRejections, batch.Rejections.ToArray().Select(r => (r.Index, r.Code)));
        Assert.Equal(GroupByPartition(expected), Decode(batch));
        batch.Return();
    }

    // ---- Malformed requests ------------------------------------------------------------------------

    public static TheoryData<string, byte[]> MalformedRequests => new()
    {
        { "events as varint", new WireBuilder().VarintField(2, 1).ToArray() },
        { "batch_id as fixed32", new WireBuilder().Fixed32(1, 1).ToArray() },
        { "id as varint", RawRequest(new WireBuilder().VarintField(1, 5).ToArray()) },
        { "customer as fixed64", RawRequest(new WireBuilder().Fixed64(3, 5).ToArray()) },
        { "time as varint", RawRequest(WireBuilder.Event().VarintField(4, 5).ToArray()) },
        { "data as fixed32", RawRequest(WireBuilder.Event().Fixed32(5, 5).ToArray()) },
        { "seconds as string", RawRequest(WireBuilder.Event().Message(4, new WireBuilder().String(1, "x")).ToArray()) },
        { "nanos as fixed32", RawRequest(WireBuilder.Event().Message(4, new WireBuilder().Fixed32(2, 1)).ToArray()) },
        { "key as varint", RawRequest(WireBuilder.Event().Message(5, new WireBuilder().VarintField(1, 1)).ToArray()) },
        { "wire type 6", new WireBuilder().Tag(9, 6).ToArray() },
        { "wire type 7 in event", RawRequest(WireBuilder.Event().Tag(9, 7).ToArray()) },
        { "field number 0", new WireBuilder().Tag(0, 0).Varint(1).ToArray() },
        { "end group without start", new WireBuilder().Tag(9, 4).ToArray() },
        { "unterminated group", new WireBuilder().Tag(9, 3).VarintField(1, 1).ToArray() },
        { "mismatched end group", new WireBuilder().Tag(9, 3).Tag(10, 4).ToArray() },
        { "length beyond end", new WireBuilder().Tag(2, 2).Varint(100).Raw(1, 2, 3).ToArray() },
        { "varint of 11 bytes", new WireBuilder().Tag(9, 0).Raw(0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01).ToArray() },
        { "truncated tag", new byte[] { 0x80 } },
        { "tag beyond 32 bits", new WireBuilder().Varint(1UL << 40).ToArray() },
        { "deep groups", new WireBuilder().Raw([.. Enumerable.Repeat((byte)((9 << 3) | 3), 100)]).ToArray() },
        { "batch_id not utf8", new WireBuilder().Bytes(1, [0xFF]).ToArray() },
    };

    [Theory]
    [MemberData(nameof(MalformedRequests))]
    public void TryParse_MalformedRequest_FalseWithReasonAndEmptyBatch(string scenario, byte[] request)
    {
        var batch = EncodedBatch.Rent(Partitions);
        Assert.False(Parse(request, batch, out var error), scenario);
        Assert.False(string.IsNullOrWhiteSpace(error));
        AssertEmpty(batch);
        batch.Return();
    }

    [Fact]
    public void TryParse_WrongWireType_ReasonNamesFieldAndEvent()
    {
        var request = RawRequest(ValidEvent().ToByteArray(), new WireBuilder().VarintField(1, 5).ToArray());
        var batch = EncodedBatch.Rent(Partitions);
        Assert.False(Parse(request, batch, out var error));
        Assert.Contains("event 1", error, StringComparison.Ordinal);
        Assert.Contains("field id (1) has wire type 0", error, StringComparison.Ordinal);
        batch.Return();
    }

    [Fact]
    public void TryParse_EveryTruncation_FalseExactlyWhenGeneratedParserFails()
    {
        var random = new Random(7);
        var request = new IngestRequest { BatchId = "batch-✓" };
        for (int i = 0; i < 6; i++)
            request.Events.Add(RandomEvent(random, i));
        foreach (var e in request.Events)
        {
            while (e.Data.Count > 3)
                e.Data.Remove(e.Data.Keys.First());
        }
        var bytes = request.ToByteArray();
        var batch = EncodedBatch.Rent(Partitions);
        for (int length = 0; length < bytes.Length; length++)
        {
            var prefix = bytes.AsSpan(0, length).ToArray();
            bool generated = TryParseGenerated(prefix);
            bool parsed = Parse(prefix, batch, out var error);
            Assert.True(generated == parsed, $"length {length}: generated parser {generated}, ours {parsed} ({error})");
            if (!parsed)
                AssertEmpty(batch);
        }
        batch.Return();
    }

    private static bool TryParseGenerated(byte[] bytes)
    {
        try
        {
            IngestRequest.Parser.ParseFrom(bytes);
            return true;
        }
        catch (InvalidProtocolBufferException)
        {
            return false;
        }
    }

    [Fact]
    public void TryParse_RandomBytes_NeverThrowsAndLeavesNothingOnFalse()
    {
        var batch = EncodedBatch.Rent(Partitions);
        var limits = new IngestLimits { MaxEventsPerBatch = 50 };
        for (int seed = 0; seed < 5000; seed++)
        {
            var random = new Random(seed);
            var bytes = new byte[random.Next(0, 300)];
            random.NextBytes(bytes);
            // Bias towards plausible structure: small field numbers with valid wire types.
            if (seed % 2 == 0)
            {
                for (int i = 0; i < bytes.Length; i += random.Next(1, 8))
                    bytes[i] = (byte)((random.Next(1, 6) << 3) | random.Next(0, 6));
            }
            AssertControlled(bytes, batch, limits);
        }
        batch.Return();
    }

    [Fact]
    public void TryParse_MutatedValidRequests_NeverThrowsAndLeavesNothingOnFalse()
    {
        var random = new Random(11);
        var request = new IngestRequest { BatchId = "b" };
        for (int i = 0; i < 5; i++)
            request.Events.Add(RandomEvent(random, i));
        var valid = request.ToByteArray();
        var batch = EncodedBatch.Rent(Partitions);
        for (int seed = 0; seed < 3000; seed++)
        {
            var bytes = (byte[])valid.Clone();
            var mutation = new Random(seed);
            int changes = mutation.Next(1, 6);
            for (int i = 0; i < changes; i++)
                bytes[mutation.Next(bytes.Length)] = (byte)mutation.Next(256);
            AssertControlled(bytes, batch, new IngestLimits());
        }
        batch.Return();
    }

    private static void AssertControlled(byte[] bytes, EncodedBatch batch, IngestLimits limits)
    {
        if (Parse(bytes, batch, out var error, limits))
        {
            Assert.Null(error);
            Assert.Equal(batch.EventCount, batch.AcceptedCount + batch.Rejections.Length);
            Decode(batch); // every record must read back
        }
        else
        {
            Assert.NotNull(error);
            AssertEmpty(batch);
        }
    }

    // ---- Limits -------------------------------------------------------------------------------------

    [Fact]
    public void TryParse_OneEventOverMaxEventsPerBatch_FalseWithReason()
    {
        var limits = new IngestLimits();
        var events = Enumerable.Range(0, limits.MaxEventsPerBatch + 1).Select(ValidEvent).ToArray();
        var batch = EncodedBatch.Rent(Partitions);
        Assert.False(Parse(Request(events), batch, out var error, limits));
        Assert.Contains("more than 10000 events", error, StringComparison.Ordinal);
        AssertEmpty(batch);
        Assert.True(Parse(Request(events[..^1]), batch, out error, limits), error);
        Assert.Equal(10_000, batch.AcceptedCount);
        batch.Return();
    }

    [Fact]
    public void TryParse_RequestOverMaxRequestBytes_FalseWithReason()
    {
        var request = Request(ValidEvent(), ValidEvent(1));
        var batch = EncodedBatch.Rent(Partitions);
        Assert.False(Parse(request, batch, out var error, new IngestLimits { MaxRequestBytes = request.Length - 1 }));
        Assert.Contains($"the limit is {request.Length - 1}", error, StringComparison.Ordinal);
        AssertEmpty(batch);
        batch.Return();
    }

    [Fact]
    public void TryParse_BatchFromPreviousRequest_StartsEmpty()
    {
        var batch = EncodedBatch.Rent(Partitions);
        Assert.True(Parse(Request(ValidEvent(0), ValidEvent(1)), batch, out _));
        Assert.True(Parse(Request(ValidEvent(2)), batch, out var error), error);
        Assert.Equal("evt-2", Assert.Single(Decode(batch)).Id);
        batch.Return();
    }
}
