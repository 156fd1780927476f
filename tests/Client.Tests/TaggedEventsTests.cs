using System.Globalization;
using Grpc.Core;

namespace AlphaMesh.Client.Tests;

/// <summary>
/// Tagged events (<see cref="UsageClient.TryEnqueueTagged"/>, <see cref="UsageClient.EnqueueTaggedAsync"/>,
/// <see cref="UsageClientOptions.OnTaggedEventsFinished"/>) with the real client over real loopback gRPC against
/// <see cref="RecordingIngestServer"/>: every tag is reported exactly once, as what the server did with its event.
/// </summary>
public sealed class TaggedEventsTests : IAsyncLifetime
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(30);
    private RecordingIngestServer _server = null!;

    public async Task InitializeAsync() => _server = await RecordingIngestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task EnqueueTaggedAsync_RandomMixWithRejectionsAndUntaggedEvents_EachTagReportedOnceAsTheServerDecided()
    {
        const int Events = 5000;
        int seed = Environment.TickCount;
        var random = new Random(seed);
        _server.RejectType = "bad.type";
        var reports = new Reports();
        var acknowledgedIds = new HashSet<string>();
        var rejectedIds = new HashSet<string>();
        var taskOutcomes = new List<(string Id, Task Task)>();
        await using (var client = CreateClient(reports, o => o.MaxBatchEvents = random.Next(1, 300)))
        {
            for (int i = 0; i < Events; i++)
            {
                string id = "evt-" + i.ToString(CultureInfo.InvariantCulture);
                bool reject = random.Next(10) == 0;
                string type = reject ? "bad.type" : "api.call";
                (reject ? rejectedIds : acknowledgedIds).Add(id);
                switch (random.Next(4))
                {
                    case 0: // untagged: counted by the server, never reported
                        await client.EnqueueAsync(type, "customer-1", [], id: id);
                        break;
                    case 1: // a task per event, in the same batches as tagged ones
                        taskOutcomes.Add((id, client.TrackAsync(type, "customer-1", [], id: id)));
                        break;
                    case 2:
                        Assert.True(client.TryEnqueueTagged(i, type, "customer-1", [], id: id));
                        reports.Expect(i, reject);
                        break;
                    default:
                        await client.EnqueueTaggedAsync(i, type, "customer-1", [], id: id);
                        reports.Expect(i, reject);
                        break;
                }
            }
            await client.FlushAsync().WaitAsync(Generous);

            // FlushAsync completes only after every batch it covers was reported.
            reports.AssertEveryExpectedTagReportedOnce(seed);
            Assert.Equal(rejectedIds.Count, client.Counters.EventsRejected);
            Assert.Equal(acknowledgedIds.Count, client.Counters.EventsAcknowledged);
        }
        foreach (var (id, task) in taskOutcomes)
        {
            await (rejectedIds.Contains(id)
                ? Assert.ThrowsAsync<UsageRejectedException>(() => task)
                : task);
        }
        Assert.Equal(acknowledgedIds.Order(), _server.EventsById.Keys.Order());
    }

    [Theory]
    [InlineData(StreamFault.AbortWithUnavailable)]
    [InlineData(StreamFault.ResetStream)]
    [InlineData(StreamFault.RestartServer)]
    public async Task EnqueueTaggedAsync_StreamFailsMidwayAndBatchesAreResent_EachTagReportedAcknowledgedOnce(StreamFault fault)
    {
        const int Events = 3000;
        _server.Arm(fault, atRequest: 5);
        var reports = new Reports();
        await using var client = CreateClient(reports, o => o.MaxBatchEvents = 50);

        for (int i = 0; i < Events; i++)
        {
            await client.EnqueueTaggedAsync(i, "api.call", "customer-" + (i % 7), [], id: "evt-" + i.ToString(CultureInfo.InvariantCulture));
            reports.Expect(i, rejected: false);
            if (fault == StreamFault.RestartServer && i == Events / 2)
            {
                await WaitUntilAsync(() => _server.RequestCount >= 1);
                await _server.RestartAsync();
                _server.ReleaseReplies();
            }
        }
        await client.FlushAsync().WaitAsync(Generous);

        reports.AssertEveryExpectedTagReportedOnce(seed: 0);
        Assert.Equal(Events, _server.EventsById.Count);
        Assert.True(client.Counters.BatchesResent > 0, "the fault should have caused resends");
    }

    [Fact]
    public async Task EnqueueTaggedAsync_Unauthenticated_EveryTagReportedFailedOnce()
    {
        _server.RefuseAuthentication = true;
        var reports = new Reports();
        await using var client = CreateClient(reports, o => o.MaxBatchEvents = 10);

        for (int i = 0; i < 25; i++)
        {
            await client.EnqueueTaggedAsync(i, "api.call", "customer-1", []);
            reports.Expect(i, rejected: false);
        }
        await client.FlushAsync().WaitAsync(Generous);

        reports.AssertEveryExpectedTagFailedOnce(StatusCode.Unauthenticated);
        Assert.Equal(25, client.Counters.EventsFailed);
        Assert.Equal(0, client.Counters.EventsAcknowledged);
    }

    [Fact]
    public async Task DisposeAsync_ServerUnreachable_TagsReportedFailedWithDeadlineExceeded()
    {
        await _server.DisposeAsync();
        var reports = new Reports();
        var client = CreateClient(reports, o => o.DisposeTimeout = TimeSpan.FromMilliseconds(500));
        for (int i = 0; i < 3; i++)
        {
            Assert.True(client.TryEnqueueTagged(i, "api.call", "customer-1", []));
            reports.Expect(i, rejected: false);
        }

        await client.DisposeAsync().AsTask().WaitAsync(Generous);

        reports.AssertEveryExpectedTagFailedOnce(StatusCode.DeadlineExceeded);
        Assert.Equal(3, client.Counters.EventsFailed);
        _server = await RecordingIngestServer.StartAsync(); // for DisposeAsync of the test
    }

    [Fact]
    public async Task OnTaggedEventsFinished_BufferWasFull_RoomIsFreeWhenTheBatchIsReported()
    {
        UsageClient? client = null;
        var enqueuedFromHandler = new List<bool>();
        client = CreateClient(null, o =>
        {
            o.MaxBufferedEvents = 10;
            o.MaxBatchEvents = 10;
            o.OnTaggedEventsFinished = outcome =>
            {
                if (outcome.Tags[0] == 0)
                {
                    bool enqueued = client!.TryEnqueueTagged(100, "api.call", "customer-1", []);
                    lock (enqueuedFromHandler)
                    {
                        enqueuedFromHandler.Add(enqueued);
                    }
                }
            };
        });
        await using (client)
        {
            _server.HoldReplies();
            for (int i = 0; i < 10; i++)
            {
                Assert.True(client.TryEnqueueTagged(i, "api.call", "customer-1", []));
            }
            Assert.False(client.TryEnqueueTagged(10, "api.call", "customer-1", []));

            _server.ReleaseReplies();
            await client.FlushAsync().WaitAsync(Generous); // the first batch's report came before
        }
        lock (enqueuedFromHandler)
        {
            Assert.Equal([true], enqueuedFromHandler);
        }
    }

    [Fact]
    public async Task OnTaggedEventsFinished_HandlerThrows_LaterBatchesStillReported()
    {
        var reported = new List<long>();
        await using var client = CreateClient(null, o =>
        {
            o.MaxBatchEvents = 1;
            o.OnTaggedEventsFinished = outcome =>
            {
                lock (reported)
                {
                    reported.Add(outcome.Tags[0]);
                }
                if (outcome.Tags[0] == 0)
                {
                    throw new InvalidOperationException("test");
                }
            };
        });

        await client.EnqueueTaggedAsync(0, "api.call", "customer-1", []);
        await client.EnqueueTaggedAsync(1, "api.call", "customer-1", []);
        await client.FlushAsync().WaitAsync(Generous);

        lock (reported)
        {
            Assert.Equal([0L, 1L], reported);
        }
        Assert.Equal(2, client.Counters.EventsAcknowledged);
    }

    [Fact]
    public async Task TryEnqueueTagged_NoHandler_ThrowsNamingTheOption()
    {
        await using var client = new UsageClient(new UsageClientOptions { Endpoint = _server.Endpoint });

        var error = Assert.Throws<InvalidOperationException>(() => client.TryEnqueueTagged(1, "api.call", "customer-1", []));
        Assert.Contains(nameof(UsageClientOptions.OnTaggedEventsFinished), error.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await client.EnqueueTaggedAsync(1, "api.call", "customer-1", []));
        Assert.Equal(0, client.Counters.EventsEnqueued);
    }

    private UsageClient CreateClient(Reports? reports, Action<UsageClientOptions>? configure = null)
    {
        var options = new UsageClientOptions
        {
            Endpoint = _server.Endpoint,
            ApiKey = "test-key",
            RetryMinBackoff = TimeSpan.FromMilliseconds(10),
            RetryMaxBackoff = TimeSpan.FromMilliseconds(200),
            OnTaggedEventsFinished = reports is null ? null : reports.Record,
        };
        configure?.Invoke(options);
        return new UsageClient(options);
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Generous;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "The condition was not met in time.");
            await Task.Delay(10);
        }
    }

    /// <summary>The oracle: what each tag should come to, and every report the client made, checked for overlap and order.</summary>
    private sealed class Reports
    {
        private readonly Dictionary<long, bool> _expected = []; // tag -> rejected
        private readonly List<(long Tag, string Outcome)> _reported = [];
        private readonly List<string> _problems = [];
        private int _inside;

        public void Expect(long tag, bool rejected) => _expected.Add(tag, rejected);

        /// <summary>The handler. It notes problems instead of asserting: the client logs and ignores a handler's exception.</summary>
        public void Record(UsageTaggedEvents outcome)
        {
            if (Interlocked.Increment(ref _inside) != 1)
            {
                Problem("two reports ran at once");
            }
            if (outcome.Tags.IsEmpty)
            {
                Problem("a report without tags");
            }
            lock (_reported)
            {
                int next = 0;
                for (int i = 0; i < outcome.Tags.Length; i++)
                {
                    string result;
                    if (outcome.Failure is { } failure)
                    {
                        result = "failed:" + failure.StatusCode;
                    }
                    else if (next < outcome.Rejections.Length && outcome.Rejections[next].Position == i)
                    {
                        if (outcome.Rejections[next].Tag != outcome.Tags[i])
                        {
                            Problem($"rejection at position {i} names tag {outcome.Rejections[next].Tag}, not {outcome.Tags[i]}");
                        }
                        result = "rejected:" + outcome.Rejections[next].Code;
                        next++;
                    }
                    else
                    {
                        result = "acknowledged";
                    }
                    _reported.Add((outcome.Tags[i], result));
                }
                if (next != outcome.Rejections.Length)
                {
                    Problem("a rejection whose position is not among the tags, or out of order");
                }
                int acknowledged = outcome.Failure is null ? outcome.Tags.Length - next : 0;
                if (outcome.AcknowledgedCount != acknowledged)
                {
                    Problem($"AcknowledgedCount {outcome.AcknowledgedCount}, counted {acknowledged}");
                }
            }
            Interlocked.Decrement(ref _inside);
        }

        public void AssertEveryExpectedTagReportedOnce(int seed)
        {
            var reported = Snapshot();
            lock (_reported)
            {
                Assert.Empty(_problems);
            }
            Assert.Equal(_expected.Keys.Order(), reported.Select(r => r.Tag)); // once each, in enqueue order
            foreach (var (tag, outcome) in reported)
            {
                string expected = _expected[tag] ? "rejected:INVALID_ARGUMENT" : "acknowledged";
                Assert.True(expected == outcome, $"tag {tag}: expected {expected}, reported {outcome} (seed {seed})");
            }
        }

        public void AssertEveryExpectedTagFailedOnce(StatusCode status)
        {
            var reported = Snapshot();
            lock (_reported)
            {
                Assert.Empty(_problems);
            }
            Assert.Equal(_expected.Keys.Order(), reported.Select(r => r.Tag));
            Assert.All(reported, r => Assert.Equal("failed:" + status, r.Outcome));
        }

        private void Problem(string problem)
        {
            lock (_reported)
            {
                _problems.Add(problem);
            }
        }

        private (long Tag, string Outcome)[] Snapshot()
        {
            lock (_reported)
            {
                return [.. _reported];
            }
        }
    }
}
