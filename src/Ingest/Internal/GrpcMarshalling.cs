using System.Buffers;
using Grpc.Core;

namespace AlphaMesh.Ingest.Internal;

/// <summary>The bytes of one received request, in a pooled buffer. The handler parses them once it
/// knows the caller's tenant, then returns the buffer.</summary>
internal sealed class RawRequest
{
    private byte[]? _buffer;

    public RawRequest(byte[] buffer, int length)
    {
        _buffer = buffer;
        Length = length;
    }

    public int Length { get; }

    public ReadOnlySpan<byte> Span => _buffer.AsSpan(0, Length);

    public void Return()
    {
        var buffer = Interlocked.Exchange(ref _buffer, null);
        if (buffer is not null)
            ArrayPool<byte>.Shared.Return(buffer);
    }
}

/// <summary>A unary reply: the serializer writes it, then gives its batch back to the pool, because a
/// unary response is serialized after the handler has returned.</summary>
internal sealed class UnaryReply(EncodedBatch batch, Action<EncodedBatch> release)
{
    public void WriteTo(IBufferWriter<byte> output)
    {
        try
        {
            IngestReplyWriter.WriteProtobuf(batch, output);
        }
        finally
        {
            release(batch);
        }
    }
}

/// <summary>
/// The UsageIngest methods with marshallers that skip the generated message types: requests are kept
/// as raw bytes for <see cref="ProtobufBatchParser"/>, replies are written from the
/// <see cref="EncodedBatch"/>. The method names and wire format are those of usage.proto.
/// </summary>
internal static class UsageIngestMethods
{
    public const string ServiceName = "alphamesh.usage.v1.UsageIngest";

    private static readonly Marshaller<RawRequest> RequestMarshaller = Marshallers.Create<RawRequest>(
        serializer: static (_, _) => throw new NotSupportedException("The server does not send requests."),
        deserializer: static context =>
        {
            var payload = context.PayloadAsReadOnlySequence();
            int length = checked((int)payload.Length);
            var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(length, 1));
            payload.CopyTo(buffer);
            return new RawRequest(buffer, length);
        });

    private static readonly Marshaller<EncodedBatch> StreamReplyMarshaller = Marshallers.Create<EncodedBatch>(
        serializer: static (batch, context) =>
        {
            IngestReplyWriter.WriteProtobuf(batch, context.GetBufferWriter());
            context.Complete();
        },
        deserializer: static _ => throw new NotSupportedException("The server does not read replies."));

    private static readonly Marshaller<UnaryReply> UnaryReplyMarshaller = Marshallers.Create<UnaryReply>(
        serializer: static (reply, context) =>
        {
            reply.WriteTo(context.GetBufferWriter());
            context.Complete();
        },
        deserializer: static _ => throw new NotSupportedException("The server does not read replies."));

    public static readonly Method<RawRequest, EncodedBatch> Stream =
        new(MethodType.DuplexStreaming, ServiceName, "Stream", RequestMarshaller, StreamReplyMarshaller);

    public static readonly Method<RawRequest, UnaryReply> Ingest =
        new(MethodType.Unary, ServiceName, "Ingest", RequestMarshaller, UnaryReplyMarshaller);
}
