using AlphaMesh.Client;
using AlphaMesh.Client.Internal;
using AlphaMesh.Usage.V1;
using BenchmarkDotNet.Attributes;

namespace AlphaMesh.Benchmarks;

/// <summary>
/// What the client SDK does per event to tell the caller each event's outcome, on top of the encoding
/// (<see cref="ClientEncodeBenchmarks"/>): a task per event, as <c>UsageClient.TrackAsync</c> makes, completed from
/// the batch's reply (<see cref="TaskPerEvent"/>), against a tag per event reported once per batch to
/// <c>UsageClientOptions.OnTaggedEventsFinished</c> (<see cref="TaggedEvents"/>). Both append the same events with
/// generated ids and times, complete a reply for the whole batch, and visit every event's outcome once.
/// </summary>
[BenchmarkCategory(Categories.Client)]
public class ClientTrackBenchmarks
{
    private readonly IngestReply _reply = new() { BatchId = "0195f3a2-batch-000042", Accepted = Batch.Events };
    private readonly Task[] _tasks = new Task[Batch.Events];
    private readonly UsageTaggedEventsHandler _handler;
    private Batch.Event[] _events = [];
    private long _acknowledged;

    public ClientTrackBenchmarks() => _handler = Book;

    [GlobalSetup]
    public void Setup() => _events = Batch.Create(DateTimeOffset.UtcNow);

    [Benchmark(Baseline = true, OperationsPerInvoke = Batch.Events)]
    public long TaskPerEvent()
    {
        var batch = new EventBatch("0195f3a2-batch-000042", 128 * 1024);
        for (int i = 0; i < _events.Length; i++)
        {
            var e = _events[i];
            batch.Append(null, e.Type, e.Customer, null, e.Data);
            var tracker = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            batch.TrackLast(tracker);
            _tasks[i] = tracker.Task;
        }
        batch.Acknowledge(_reply);
        foreach (var task in _tasks)
        {
            if (task.IsCompletedSuccessfully)
                _acknowledged++;
        }
        batch.ReturnBuffer();
        batch.Complete();
        return _acknowledged;
    }

    [Benchmark(OperationsPerInvoke = Batch.Events)]
    public long TaggedEvents()
    {
        var batch = new EventBatch("0195f3a2-batch-000042", 128 * 1024);
        for (int i = 0; i < _events.Length; i++)
        {
            var e = _events[i];
            batch.Append(null, e.Type, e.Customer, null, e.Data);
            batch.TagLast(i);
        }
        batch.ReportTags(_handler, _reply, null);
        batch.ReturnBuffer();
        batch.Complete();
        return _acknowledged;
    }

    private void Book(UsageTaggedEvents outcome)
    {
        foreach (long tag in outcome.Tags)
        {
            if (tag >= 0)
                _acknowledged++;
        }
    }
}
