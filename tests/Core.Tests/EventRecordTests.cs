using System.Text;

namespace AlphaMesh.Core.Tests;

public sealed class EventRecordTests
{
    [Fact]
    public void TryRead_WrittenRecord_ReturnsEveryField()
    {
        var buffer = new byte[512];
        int length = EventRecord.WriteHead(buffer, 123_456_789, 987_654_321, "t1"u8, "evt-1"u8, "api_call"u8, "cust-9"u8);
        length += EventRecord.WriteDataEntry(buffer.AsSpan(length), "tokens"u8, "0.1"u8);
        length += EventRecord.WriteDataEntry(buffer.AsSpan(length), "model"u8, "gpt"u8);
        EventRecord.SetDataCount(buffer, 2);

        Assert.True(EventRecord.TryRead(buffer.AsSpan(0, length), out var view));
        Assert.Equal(123_456_789, view.EventTimeUnixNanos);
        Assert.Equal(987_654_321, view.IngestTimeUnixNanos);
        Assert.Equal("t1", Encoding.UTF8.GetString(view.Tenant));
        Assert.Equal("evt-1", Encoding.UTF8.GetString(view.Id));
        Assert.Equal("api_call", Encoding.UTF8.GetString(view.Type));
        Assert.Equal("cust-9", Encoding.UTF8.GetString(view.Customer));
        var entries = new List<(string, string)>();
        foreach (var entry in view.Data)
            entries.Add((Encoding.UTF8.GetString(entry.Key), Encoding.UTF8.GetString(entry.Value)));
        Assert.Equal([("tokens", "0.1"), ("model", "gpt")], entries);
    }
}
