using AlphaMesh.Usage.V1;
using Grpc.Core;

namespace AlphaMesh.Client.Internal;

/// <summary>
/// <c>UsageIngest/Stream</c> described with our own request type: the request marshaller copies the batch's
/// already-encoded <c>IngestRequest</c> bytes, so no generated message exists per event. Replies are parsed
/// with the generated <see cref="IngestReply"/> (one per batch).
/// </summary>
internal static class IngestStreamMethod
{
    public static readonly Method<EventBatch, IngestReply> Instance = new(
        MethodType.DuplexStreaming,
        UsageIngest.Descriptor.FullName,
        "Stream",
        Marshallers.Create<EventBatch>(SerializeBatch, static _ => throw new NotSupportedException("Batches are never received.")),
        Marshallers.Create<IngestReply>(
            static (reply, context) => context.Complete(Google.Protobuf.MessageExtensions.ToByteArray(reply)),
            static context => IngestReply.Parser.ParseFrom(context.PayloadAsReadOnlySequence())));

    private static void SerializeBatch(EventBatch batch, SerializationContext context)
    {
        var payload = batch.Payload;
        context.SetPayloadLength(payload.Length);
        var writer = context.GetBufferWriter();
        payload.CopyTo(writer.GetSpan(payload.Length));
        writer.Advance(payload.Length);
        context.Complete();
    }
}
