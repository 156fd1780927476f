using System.Buffers.Binary;
using System.Text;

namespace AlphaMesh.Core.Tests;

/// <summary>Randomized and malformed-input tests of <see cref="EventRecord"/>, against an oracle written from the
/// format table alone (it shares no code with the codec).</summary>
public sealed class EventRecordCodecTests
{
    private sealed record Event(long EventTime, long IngestTime, string Tenant, string Id, string Type, string Customer, List<(string Key, string Value)> Data);

    private static readonly long[] ExtremeTimes = [0, 1, -1, long.MinValue, long.MaxValue, long.MinValue + 1, long.MaxValue - 1];

    public static TheoryData<int> Seeds()
    {
        var seeds = new TheoryData<int>();
        for (int seed = 0; seed < 40; seed++)
            seeds.Add(seed);
        return seeds;
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void WriteThenTryRead_RandomEvents_MatchesOracle(int seed)
    {
        var random = new Random(seed);
        for (int n = 0; n < 25; n++)
        {
            var expected = RandomEvent(random);
            byte[] oracle = OracleEncode(expected);

            byte[] written = Encode(expected);

            Assert.Equal(oracle, written);
            Assert.True(EventRecord.TryRead(written, out var view));
            var actual = Decode(view);
            Assert.Equal(expected with { Data = null! }, actual with { Data = null! });
            Assert.Equal(expected.Data, actual.Data);
        }
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void TryRead_EveryTruncation_ReturnsFalse(int seed)
    {
        var record = OracleEncode(RandomEvent(new Random(seed)));

        for (int length = 0; length < record.Length; length++)
            Assert.False(EventRecord.TryRead(record.AsSpan(0, length), out _), $"accepted a record cut to {length} of {record.Length} bytes");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    [InlineData(255)]
    public void TryRead_UnknownVersion_ReturnsFalse(byte version)
    {
        var record = OracleEncode(RandomEvent(new Random(7)));
        record[0] = version;

        Assert.False(EventRecord.TryRead(record, out _));
    }

    [Theory]
    // A length varint that never ends, or is longer than a 32-bit length can be.
    [InlineData(new byte[] { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80 })]
    [InlineData(new byte[] { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02 })] // 2 << 63: overflows to 0
    [InlineData(new byte[] { 0x80, 0x80, 0x80, 0x80, 0x80, 0x00 })] // six bytes for 0
    [InlineData(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0x1F })] // more than 32 bits
    // A length past the end of the record.
    [InlineData(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0x0F })]
    [InlineData(new byte[] { 0x7F })]
    public void TryRead_BadTenantLength_ReturnsFalse(byte[] lengthVarint)
    {
        Assert.True(EventRecord.TryRead([.. OracleHeader(1, 2, 0), 0, 0, 0, 0], out _)); // the same with a good length
        var record = new List<byte>(OracleHeader(1, 2, 0));
        record.AddRange(lengthVarint);
        record.AddRange(new byte[3]); // empty id, type and customer: the record is well formed but for the tenant length

        Assert.False(EventRecord.TryRead(record.ToArray(), out _));
    }

    [Fact]
    public void TryRead_MoreDataThanCounted_ReturnsFalse()
    {
        var evt = new Event(1, 2, "t", "i", "ty", "c", [("k", "v"), ("k2", "v2")]);
        var record = OracleEncode(evt);
        BinaryPrimitives.WriteUInt16LittleEndian(record.AsSpan(18), 1);

        Assert.False(EventRecord.TryRead(record, out _));
    }

    [Fact]
    public void TryRead_FewerDataThanCounted_ReturnsFalse()
    {
        var record = OracleEncode(new Event(1, 2, "t", "i", "ty", "c", [("k", "v")]));
        BinaryPrimitives.WriteUInt16LittleEndian(record.AsSpan(18), ushort.MaxValue);

        Assert.False(EventRecord.TryRead(record, out _));
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void TryRead_RandomBytes_NeverThrows(int seed)
    {
        var random = new Random(seed);
        for (int n = 0; n < 200; n++)
        {
            var bytes = new byte[random.Next(0, 120)];
            random.NextBytes(bytes);
            if (bytes.Length > 0 && random.Next(2) == 0)
                bytes[0] = EventRecord.CurrentVersion;
            _ = EventRecord.TryRead(bytes, out _);
        }
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void TryRead_OneByteFlipped_NeverThrowsAndReadsOnlyWhatIsThere(int seed)
    {
        var random = new Random(seed);
        var record = OracleEncode(RandomEvent(random));
        for (int n = 0; n < 100; n++)
        {
            var copy = (byte[])record.Clone();
            copy[random.Next(copy.Length)] ^= (byte)(1 << random.Next(8));
            if (EventRecord.TryRead(copy, out var view))
                Assert.Equal(copy, OracleEncodeRaw(view)); // whatever it accepts is a well-formed record
        }
    }

    private static byte[] Encode(Event e)
    {
        var buffer = new byte[EventRecord.MaxEncodedSize(Utf8(e.Tenant), Utf8(e.Id), Utf8(e.Type), Utf8(e.Customer),
            e.Data.Sum(d => Utf8(d.Key) + Utf8(d.Value)), e.Data.Count)];
        int length = EventRecord.WriteHead(buffer, e.EventTime, e.IngestTime, Encoding.UTF8.GetBytes(e.Tenant),
            Encoding.UTF8.GetBytes(e.Id), Encoding.UTF8.GetBytes(e.Type), Encoding.UTF8.GetBytes(e.Customer));
        foreach (var (key, value) in e.Data)
            length += EventRecord.WriteDataEntry(buffer.AsSpan(length), Encoding.UTF8.GetBytes(key), Encoding.UTF8.GetBytes(value));
        EventRecord.SetDataCount(buffer, e.Data.Count);
        return buffer.AsSpan(0, length).ToArray();
    }

    private static int Utf8(string s) => Encoding.UTF8.GetByteCount(s);

    private static Event Decode(EventRecordView view)
    {
        var data = new List<(string, string)>();
        foreach (var entry in view.Data)
            data.Add((Encoding.UTF8.GetString(entry.Key), Encoding.UTF8.GetString(entry.Value)));
        return new Event(view.EventTimeUnixNanos, view.IngestTimeUnixNanos, Encoding.UTF8.GetString(view.Tenant),
            Encoding.UTF8.GetString(view.Id), Encoding.UTF8.GetString(view.Type), Encoding.UTF8.GetString(view.Customer), data);
    }

    // The oracle: the format table, byte by byte.
    private static byte[] OracleEncode(Event e)
    {
        var bytes = new List<byte>(OracleHeader(e.EventTime, e.IngestTime, e.Data.Count));
        foreach (var s in new[] { e.Tenant, e.Id, e.Type, e.Customer })
            OracleField(bytes, s);
        foreach (var (key, value) in e.Data)
        {
            OracleField(bytes, key);
            OracleField(bytes, value);
        }
        return [.. bytes];
    }

    /// <summary>Re-encodes the raw bytes of a decoded view (the strings may be invalid UTF-8 after a bit flip).</summary>
    private static byte[] OracleEncodeRaw(EventRecordView view)
    {
        var bytes = new List<byte>(OracleHeader(view.EventTimeUnixNanos, view.IngestTimeUnixNanos, view.DataCount));
        OracleField(bytes, view.Tenant.ToArray());
        OracleField(bytes, view.Id.ToArray());
        OracleField(bytes, view.Type.ToArray());
        OracleField(bytes, view.Customer.ToArray());
        foreach (var entry in view.Data)
        {
            OracleField(bytes, entry.Key.ToArray());
            OracleField(bytes, entry.Value.ToArray());
        }
        return [.. bytes];
    }

    private static byte[] OracleHeader(long eventTime, long ingestTime, int count)
    {
        var header = new byte[20];
        header[0] = 1;
        header[1] = 0;
        for (int i = 0; i < 8; i++)
        {
            header[2 + i] = (byte)((ulong)eventTime >> (8 * i));
            header[10 + i] = (byte)((ulong)ingestTime >> (8 * i));
        }
        header[18] = (byte)count;
        header[19] = (byte)(count >> 8);
        return header;
    }

    private static void OracleField(List<byte> bytes, string value) => OracleField(bytes, Encoding.UTF8.GetBytes(value));

    private static void OracleField(List<byte> bytes, byte[] utf8)
    {
        ulong length = (ulong)utf8.Length;
        do
        {
            byte b = (byte)(length & 0x7F);
            length >>= 7;
            bytes.Add(length == 0 ? b : (byte)(b | 0x80));
        }
        while (length != 0);
        bytes.AddRange(utf8);
    }

    private static Event RandomEvent(Random random)
    {
        var data = new List<(string, string)>();
        int count = random.Next(0, 65);
        for (int i = 0; i < count; i++)
            data.Add((RandomString(random, 20), RandomString(random, 40)));
        return new Event(RandomTime(random), RandomTime(random), RandomString(random, 30), RandomString(random, 200),
            RandomString(random, 20), RandomString(random, 60), data);
    }

    private static long RandomTime(Random random)
        => random.Next(3) == 0 ? ExtremeTimes[random.Next(ExtremeTimes.Length)] : random.NextInt64(long.MinValue, long.MaxValue);

    /// <summary>ASCII, Latin, Greek, CJK and emoji (surrogate pairs): 1- to 4-byte UTF-8. Long enough sometimes
    /// to need a two-byte length.</summary>
    private static string RandomString(Random random, int maxLength)
    {
        int length = random.Next(10) == 0 ? random.Next(100, 400) : random.Next(0, maxLength + 1);
        var builder = new StringBuilder(length);
        for (int i = 0; i < length; i++)
        {
            switch (random.Next(5))
            {
                case 0: builder.Append((char)random.Next(0x20, 0x7F)); break;
                case 1: builder.Append((char)random.Next(0xC0, 0x250)); break;
                case 2: builder.Append((char)random.Next(0x391, 0x3C9)); break;
                case 3: builder.Append((char)random.Next(0x4E00, 0x9FFF)); break;
                default: builder.Append(char.ConvertFromUtf32(random.Next(0x1F300, 0x1F64F))); break;
            }
        }
        return builder.ToString();
    }
}
