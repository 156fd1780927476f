using System.Buffers;
using System.Text;
using System.Text.Json;
using AlphaMesh.Core;

namespace AlphaMesh.Ingest.Internal;

/// <summary>Writes the reply to a parsed request: an <c>alphamesh.usage.v1.IngestReply</c> for gRPC, or
/// its JSON form for HTTP. Written by hand for the same reason the request is parsed by hand.</summary>
internal static class IngestReplyWriter
{
    // Tags of usage.proto: (field number << 3) | wire type.
    private const byte ReplyBatchIdTag = (1 << 3) | 2;
    private const byte ReplyAcceptedTag = (2 << 3) | 0;
    private const byte ReplyRejectedTag = (3 << 3) | 2;
    private const byte RejectionIndexTag = (1 << 3) | 0;
    private const byte RejectionCodeTag = (2 << 3) | 2;
    private const byte RejectionMessageTag = (3 << 3) | 2;

    // A tag byte plus the longest varint.
    private const int MaxScalarFieldBytes = 1 + 10;

    private static readonly JsonEncodedText BatchIdName = JsonEncodedText.Encode("batchId");
    private static readonly JsonEncodedText AcceptedName = JsonEncodedText.Encode("accepted");
    private static readonly JsonEncodedText RejectedName = JsonEncodedText.Encode("rejected");
    private static readonly JsonEncodedText IndexName = JsonEncodedText.Encode("index");
    private static readonly JsonEncodedText CodeName = JsonEncodedText.Encode("code");
    private static readonly JsonEncodedText MessageName = JsonEncodedText.Encode("message");

    /// <summary>Writes an <c>IngestReply</c>. Fields with default values are omitted, as proto3 does.</summary>
    public static void WriteProtobuf(EncodedBatch batch, IBufferWriter<byte> output)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(output);
        if (batch.BatchId.Length > 0)
        {
            int length = Encoding.UTF8.GetByteCount(batch.BatchId);
            var span = output.GetSpan(1 + 5 + length);
            int written = WriteString(span, ReplyBatchIdTag, batch.BatchId, length);
            output.Advance(written);
        }
        if (batch.AcceptedCount != 0)
        {
            var span = output.GetSpan(MaxScalarFieldBytes);
            output.Advance(WriteInt32(span, ReplyAcceptedTag, batch.AcceptedCount));
        }
        foreach (ref readonly var rejection in batch.Rejections)
        {
            int codeLength = Encoding.UTF8.GetByteCount(rejection.Code);
            int messageLength = Encoding.UTF8.GetByteCount(rejection.Message);
            int size = (rejection.Index != 0 ? 1 + Varint.SizeOf((ulong)(long)rejection.Index) : 0)
                + (codeLength != 0 ? 1 + Varint.SizeOf((uint)codeLength) + codeLength : 0)
                + (messageLength != 0 ? 1 + Varint.SizeOf((uint)messageLength) + messageLength : 0);
            var span = output.GetSpan(1 + 5 + size);
            span[0] = ReplyRejectedTag;
            int written = 1 + Varint.Write(span.Slice(1), (uint)size);
            if (rejection.Index != 0)
                written += WriteInt32(span.Slice(written), RejectionIndexTag, rejection.Index);
            if (codeLength != 0)
                written += WriteString(span.Slice(written), RejectionCodeTag, rejection.Code, codeLength);
            if (messageLength != 0)
                written += WriteString(span.Slice(written), RejectionMessageTag, rejection.Message, messageLength);
            output.Advance(written);
        }
    }

    /// <summary>Writes <c>{"batchId":"..","accepted":N,"rejected":[{"index":i,"code":"..","message":".."}]}</c>.</summary>
    public static void WriteJson(EncodedBatch batch, Utf8JsonWriter writer)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStartObject();
        writer.WriteString(BatchIdName, batch.BatchId);
        writer.WriteNumber(AcceptedName, batch.AcceptedCount);
        writer.WriteStartArray(RejectedName);
        foreach (ref readonly var rejection in batch.Rejections)
        {
            writer.WriteStartObject();
            writer.WriteNumber(IndexName, rejection.Index);
            writer.WriteString(CodeName, rejection.Code);
            writer.WriteString(MessageName, rejection.Message);
            writer.WriteEndObject();
        }
        writer.WriteEndArray();
        writer.WriteEndObject();
    }

    private static int WriteInt32(Span<byte> destination, byte tag, int value)
    {
        destination[0] = tag;
        // int32 is sign-extended to 64 bits on the wire.
        return 1 + Varint.Write(destination.Slice(1), (ulong)(long)value);
    }

    private static int WriteString(Span<byte> destination, byte tag, string value, int length)
    {
        destination[0] = tag;
        int written = 1 + Varint.Write(destination.Slice(1), (uint)length);
        return written + Encoding.UTF8.GetBytes(value, destination.Slice(written));
    }
}
