// TEMPORARY: signatures of the parsers being written on branch ingest-parse; deleted at merge.
using System.Buffers;
using System.Text.Json;
using AlphaMesh.Core;

namespace AlphaMesh.Ingest
{
    public sealed class IngestLimits
    {
        public int MaxEventsPerBatch { get; set; } = 10_000;
        public int MaxRequestBytes { get; set; } = 4 * 1024 * 1024;
        public TimeSpan BackdatingLimit { get; set; } = TimeSpan.FromDays(35);
        public void Validate() { }
    }
}

namespace AlphaMesh.Ingest.Internal
{
    internal readonly record struct IngestContext(IngestLimits Limits, long NowUnixNanos, int PartitionCount);
    internal readonly record struct RejectionEntry(int Index, string Code, string Message);
    internal enum CloudEventsMode { Single, Batch, Auto }
    internal sealed class EncodedBatch
    {
        public static EncodedBatch Rent(int partitionCount) => throw new NotImplementedException();
        public void Return() { }
        public string BatchId { get; set; } = "";
        public int EventCount { get; }
        public int AcceptedCount { get; }
        public ReadOnlySpan<RejectionEntry> Rejections => default;
        public bool HasRecords(int partition) => false;
        public IRecordBatch GetPartitionBatch(int partition) => throw new NotImplementedException();
    }
    internal static class ProtobufBatchParser
    {
        public static bool TryParse(ReadOnlySpan<byte> request, ReadOnlySpan<byte> tenantUtf8, in IngestContext context, EncodedBatch batch, out string? error) => throw new NotImplementedException();
    }
    internal static class CloudEventsBatchParser
    {
        public static bool TryParse(ReadOnlySpan<byte> json, CloudEventsMode mode, ReadOnlySpan<byte> tenantUtf8, in IngestContext context, EncodedBatch batch, out string? error) => throw new NotImplementedException();
    }
    internal static class IngestReplyWriter
    {
        public static void WriteProtobuf(EncodedBatch batch, IBufferWriter<byte> output) { }
        public static void WriteJson(EncodedBatch batch, Utf8JsonWriter writer) { }
    }
}
