using System.Globalization;
using System.Text;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace AlphaMesh.Client.Tests;

/// <summary>
/// The real client over real loopback gRPC against <see cref="RecordingIngestServer"/>. Nothing here asserts a
/// timing: tests wait for conditions with generous timeouts.
/// </summary>
public sealed class UsageClientTests : IAsyncLifetime
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(30);
    private RecordingIngestServer _server = null!;

    public async Task InitializeAsync() => _server = await RecordingIngestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task EnqueueAsync_RandomUnicodeEvents_ServerDecodesExactly()
    {
        var random = new Random(20240611);
        var oracle = new List<TrackedEvent>();
        for (int i = 0; i < 600; i++)
        {
            var data = new Dictionary<string, string>();
            int pairs = random.Next(0, 6);
            for (int p = 0; p < pairs; p++)
            {
                data[RandomText(random, 1, 20) + "#" + p] = RandomText(random, 0, random.Next(10) == 0 ? 400 : 30);
            }
            if (i == 7)
            {
                data["huge"] = RandomText(random, 20_000, 20_001); // multi-byte lengths and buffer growth
            }
            var time = new DateTimeOffset(random.NextInt64(DateTimeOffset.UnixEpoch.Ticks - TimeSpan.TicksPerDay * 400, DateTimeOffset.UnixEpoch.Ticks + TimeSpan.TicksPerDay * 30_000), TimeSpan.Zero)
                .ToOffset(TimeSpan.FromHours(random.Next(-12, 13)));
            oracle.Add(new TrackedEvent($"id-{i}-{RandomText(random, 0, 12)}", RandomText(random, 1, 60), RandomText(random, 1, 50), time, data));
        }

        await using (var client = CreateClient(o => o.MaxBatchEvents = 97))
        {
            foreach (var e in oracle)
            {
                if (oracle.IndexOf(e) % 2 == 0)
                {
                    await client.EnqueueAsync(e.Type, e.Customer, e.Data.ToArray(), e.Time, e.Id);
                }
                else
                {
                    await client.EnqueueAsync(e.Type, e.Customer, e.Data, e.Time, e.Id);
                }
            }
            await client.FlushAsync();
            Assert.Equal(oracle.Count, client.Counters.EventsAcknowledged);
        }

        var received = _server.EventsById;
        Assert.Equal(oracle.Count, received.Count);
        foreach (var expected in oracle)
        {
            var actual = received[expected.Id];
            Assert.Equal(expected.Type, actual.Type);
            Assert.Equal(expected.Customer, actual.Customer);
            Assert.Equal(Timestamp.FromDateTimeOffset(expected.Time), actual.Time);
            Assert.Equal(expected.Data.OrderBy(p => p.Key, StringComparer.Ordinal), actual.Data.OrderBy(p => p.Key, StringComparer.Ordinal));
        }
    }

    [Fact]
    public async Task EnqueueAsync_MaxBatchEventsReached_SendsFullBatches()
    {
        await using var client = CreateClient(o =>
        {
            o.MaxBatchEvents = 10;
            o.MaxBatchDelay = TimeSpan.FromHours(1);
        });
        for (int i = 0; i < 25; i++)
        {
            await client.EnqueueAsync("api.call", "customer-1", [new("n", i.ToString(CultureInfo.InvariantCulture))]);
        }

        await WaitUntilAsync(() => _server.RequestCount == 2);
        Assert.All(_server.Requests, r => Assert.Equal(10, r.Events.Count));

        await client.FlushAsync();
        var requests = _server.Requests;
        Assert.Equal([10, 10, 5], requests.Select(r => r.Events.Count));
        Assert.Equal(3, requests.Select(r => r.BatchId).Distinct().Count());
    }

    [Fact]
    public async Task EnqueueAsync_FewerEventsThanMaxBatchEvents_SentAfterMaxBatchDelay()
    {
        await using var client = CreateClient(o => o.MaxBatchDelay = TimeSpan.FromMilliseconds(50));
        for (int i = 0; i < 3; i++)
        {
            await client.EnqueueAsync("api.call", "customer-1");
        }

        // No flush: only the delay can send the batch.
        await WaitUntilAsync(() => _server.RequestCount == 1);
        Assert.Equal(3, _server.Requests[0].Events.Count);
    }

    [Fact]
    public async Task TrackAsync_ReplyHeld_CompletesOnlyAfterAcknowledgement()
    {
        _server.HoldReplies();
        await using var client = CreateClient();

        var tracked = client.TrackAsync("api.call", "customer-1");
        _ = client.FlushAsync(); // sends the batch now; its completion is what the tracked task shows
        await WaitUntilAsync(() => _server.RequestCount == 1);
        Assert.False(tracked.IsCompleted);

        _server.ReleaseReplies();
        await tracked.WaitAsync(Generous);
        Assert.Equal(1, client.Counters.EventsAcknowledged);
    }

    [Fact]
    public async Task OnBatchAcknowledged_ReplyHeldThenReleased_ReportsEachBatchOnceAfterItsReply()
    {
        var reports = new System.Collections.Concurrent.ConcurrentQueue<(int Count, TimeSpan Latency)>();
        _server.HoldReplies();
        await using var client = CreateClient(o =>
        {
            o.MaxBatchEvents = 10;
            o.MaxBatchDelay = TimeSpan.FromHours(1);
            o.OnBatchAcknowledged = (count, latency) => reports.Enqueue((count, latency));
        });
        for (int i = 0; i < 25; i++)
        {
            await client.EnqueueAsync("api.call", "customer-1");
        }
        var flushed = client.FlushAsync();
        // The test server reads the next request only after replying to the previous one.
        await WaitUntilAsync(() => _server.RequestCount == 1);
        Assert.Empty(reports); // written, but no reply yet

        _server.ReleaseReplies();
        await flushed.WaitAsync(Generous);
        Assert.Equal([10, 10, 5], reports.Select(r => r.Count));
        Assert.All(reports, r => Assert.True(r.Latency > TimeSpan.Zero));
    }

    [Fact]
    public async Task OnBatchAcknowledged_CallbackThrows_BatchStillAcknowledged()
    {
        await using var client = CreateClient(o => o.OnBatchAcknowledged = (_, _) => throw new InvalidOperationException("test"));
        await client.TrackAsync("api.call", "customer-1").WaitAsync(Generous);
        Assert.Equal(1, client.Counters.EventsAcknowledged);
    }

    [Fact]
    public async Task TrackAsync_ServerRejectsEvent_FaultsOnlyThatEvent()
    {
        _server.RejectType = "bad.type";
        await using var client = CreateClient();

        var first = client.TrackAsync("api.call", "customer-1");
        var rejected = client.TrackAsync("bad.type", "customer-1");
        var last = client.TrackAsync("api.call", "customer-1");

        await first.WaitAsync(Generous);
        await last.WaitAsync(Generous);
        var error = await Assert.ThrowsAsync<UsageRejectedException>(() => rejected.WaitAsync(Generous));
        Assert.Equal("INVALID_ARGUMENT", error.Code);
        Assert.Equal(1, error.Index);
        Assert.Equal(1, client.Counters.EventsRejected);
        Assert.Equal(2, client.Counters.EventsAcknowledged);
    }

    [Theory]
    [InlineData(StreamFault.AbortWithUnavailable)]
    [InlineData(StreamFault.ResetStream)]
    [InlineData(StreamFault.RestartServer)]
    public async Task EnqueueAsync_StreamFailsMidway_EveryEventArrivesAndDuplicatesAreIdenticalResends(StreamFault fault)
    {
        const int Events = 3000;
        _server.Arm(fault, atRequest: 5);
        await using var client = CreateClient(o => o.MaxBatchEvents = 50);

        var ids = new List<string>();
        for (int i = 0; i < Events; i++)
        {
            string id = "evt-" + i.ToString(CultureInfo.InvariantCulture);
            ids.Add(id);
            await client.EnqueueAsync("api.call", "customer-" + (i % 7), [new("i", id)], id: id);
            if (fault == StreamFault.RestartServer && i == Events / 2)
            {
                await WaitUntilAsync(() => _server.RequestCount >= 1); // a held reply blocks the server's stream after its first request
                await _server.RestartAsync(); // the new server replies: HoldReplies applied to the old stream only
                _server.ReleaseReplies();
            }
        }
        await client.FlushAsync().WaitAsync(Generous);

        var received = _server.EventsById;
        Assert.All(ids, id => Assert.True(received.ContainsKey(id), $"{id} was lost"));
        Assert.Equal(Events, received.Count);

        // A duplicate only ever comes as a resend of a whole batch, byte for byte the same.
        var requests = _server.Requests;
        foreach (var sameBatch in requests.GroupBy(r => r.BatchId))
        {
            Assert.All(sameBatch, r => Assert.Equal(sameBatch.First(), r));
        }
        var batchOfEvent = new Dictionary<string, string>();
        foreach (var request in requests)
        {
            foreach (var usage in request.Events)
            {
                Assert.Equal(request.BatchId, batchOfEvent.TryAdd(usage.Id, request.BatchId) ? request.BatchId : batchOfEvent[usage.Id]);
            }
        }
        Assert.True(requests.Length > requests.Select(r => r.BatchId).Distinct().Count(), "the fault should have caused resends");
        var counters = client.Counters;
        Assert.True(counters.BatchesResent > 0);
        Assert.True(counters.Reconnects > 0);
        Assert.Equal(Events, counters.EventsEnqueued);
    }

    [Fact]
    public async Task TrackAsync_ManyProducerThreads_EveryEventAcknowledgedOnce()
    {
        const int Threads = 4, PerThread = 2000;
        await using var client = CreateClient(o => o.MaxBatchEvents = 64);

        var producers = Enumerable.Range(0, Threads).Select(t => Task.Run(async () =>
        {
            var tracked = new List<Task>();
            for (int i = 0; i < PerThread; i++)
            {
                tracked.Add(client.TrackAsync("api.call", "customer-" + t, [new("i", i.ToString(CultureInfo.InvariantCulture))]));
            }
            await Task.WhenAll(tracked);
        })).ToArray();
        await Task.WhenAll(producers).WaitAsync(Generous);

        Assert.Equal(Threads * PerThread, _server.EventsById.Count);
        Assert.Equal(Threads * PerThread, client.Counters.EventsAcknowledged);
    }

    [Fact]
    public async Task TrackAsync_ResourceExhaustedOnce_RetriedAndAcknowledged()
    {
        _server.FailWithResourceExhausted(1);
        await using var client = CreateClient();

        await client.TrackAsync("api.call", "customer-1", id: "only").WaitAsync(Generous);

        Assert.True(_server.EventsById.ContainsKey("only"));
        Assert.Equal(2, _server.StreamCalls);
        Assert.Equal(1, client.Counters.Reconnects);
        Assert.Equal(1, client.Counters.BatchesResent);
    }

    [Fact]
    public async Task TrackAsync_Unauthenticated_FaultsWithoutRetry()
    {
        _server.RefuseAuthentication = true;
        var reported = new List<UsageBatchFailedException>();
        await using var client = CreateClient(o => o.OnBatchFailed = e =>
        {
            lock (reported)
            {
                reported.Add(e);
            }
        });

        var error = await Assert.ThrowsAsync<UsageBatchFailedException>(() => client.TrackAsync("api.call", "customer-1").WaitAsync(Generous));

        Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
        Assert.Equal(1, _server.StreamCalls);
        Assert.Equal(["Bearer test-key"], _server.Authorizations);
        var counters = client.Counters;
        Assert.Equal(0, counters.BatchesResent);
        Assert.Equal(1, counters.BatchesFailed);
        lock (reported)
        {
            Assert.Equal(error.BatchId, Assert.Single(reported).BatchId);
        }
    }

    [Fact]
    public async Task TrackAsync_NoId_GeneratesUniqueTimeOrderedUuidV7()
    {
        long before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await using (var client = CreateClient(o => o.MaxBatchEvents = 100))
        {
            for (int i = 0; i < 2000; i++)
            {
                await client.EnqueueAsync("api.call", "customer-1");
            }
            await client.FlushAsync();
        }
        long after = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

        var events = _server.Requests.SelectMany(r => r.Events).ToList();
        Assert.Equal(2000, events.Count);
        Assert.Equal(2000, events.Select(e => e.Id).Distinct().Count());
        long previous = 0;
        foreach (var usage in events)
        {
            var guid = Guid.ParseExact(usage.Id, "D");
            Assert.Equal(usage.Id, guid.ToString("D"));
            Assert.Equal(7, guid.Version);
            Assert.Equal(0b10, guid.Variant >> 2);
            long milliseconds = long.Parse(usage.Id.Replace("-", "", StringComparison.Ordinal)[..12], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            Assert.InRange(milliseconds, before, after);
            Assert.True(milliseconds >= previous, "ids are time-ordered in enqueue order");
            // The stamped time and the id come from one clock reading.
            Assert.Equal(milliseconds, usage.Time.ToDateTimeOffset().ToUnixTimeMilliseconds());
            previous = milliseconds;
        }
    }

    [Fact]
    public async Task DisposeAsync_EventsStillBuffered_FlushesThem()
    {
        var client = CreateClient(o => o.MaxBatchDelay = TimeSpan.FromHours(1));
        for (int i = 0; i < 10; i++)
        {
            await client.EnqueueAsync("api.call", "customer-1");
        }

        await client.DisposeAsync();

        Assert.Equal(10, _server.EventsById.Count);
        Assert.Equal(10, client.Counters.EventsAcknowledged);
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await client.EnqueueAsync("api.call", "customer-1"));
    }

    [Fact]
    public async Task TryEnqueue_BufferFullAndServerNotReplying_ReturnsFalse()
    {
        _server.HoldReplies();
        await using var client = CreateClient(o =>
        {
            o.MaxBufferedEvents = 50;
            o.MaxBatchEvents = 10;
        });

        int accepted = 0;
        while (client.TryEnqueue("api.call", "customer-1", []))
        {
            accepted++;
            Assert.True(accepted <= 50);
        }
        Assert.Equal(50, accepted);
        var waiting = client.EnqueueAsync("api.call", "customer-1", id: "waited");
        await WaitUntilAsync(() => _server.RequestCount >= 1); // a held reply blocks the server's stream after its first request
        Assert.False(waiting.IsCompleted);

        _server.ReleaseReplies();
        await waiting.AsTask().WaitAsync(Generous);
        await client.FlushAsync().WaitAsync(Generous);
        Assert.True(client.TryEnqueue("api.call", "customer-1", []));
        Assert.True(_server.EventsById.ContainsKey("waited"));
    }

    [Fact]
    public async Task DisposeAsync_ServerUnreachable_EndsAfterDisposeTimeoutAndFailsTrackedEvents()
    {
        await _server.DisposeAsync();
        var client = CreateClient(o => o.DisposeTimeout = TimeSpan.FromMilliseconds(500));
        var tracked = client.TrackAsync("api.call", "customer-1");

        await client.DisposeAsync().AsTask().WaitAsync(Generous);

        var error = await Assert.ThrowsAsync<UsageBatchFailedException>(() => tracked.WaitAsync(Generous));
        Assert.IsType<TimeoutException>(error.InnerException);
        Assert.Equal(1, client.Counters.EventsFailed);
        _server = await RecordingIngestServer.StartAsync(); // for DisposeAsync of the test
    }

    [Fact]
    public void ChannelOptions_NotGiven_ReconnectBackoffFollowsRetryBackoff()
    {
        // gRPC's defaults (1 s growing to 120 s) would fail every call without connecting for up to two minutes
        // after a long outage; the crash test in Server.Tests showed a client stalled ~50 s after the server was back.
        var options = new UsageClientOptions
        {
            Endpoint = _server.Endpoint,
            RetryMinBackoff = TimeSpan.FromMilliseconds(20),
            RetryMaxBackoff = TimeSpan.FromMilliseconds(250),
        };

        var channel = UsageClient.CreateChannelOptions(options);

        Assert.Equal(options.RetryMinBackoff, channel.InitialReconnectBackoff);
        Assert.Equal(options.RetryMaxBackoff, channel.MaxReconnectBackoff);
        var given = new Grpc.Net.Client.GrpcChannelOptions();
        Assert.Same(given, UsageClient.CreateChannelOptions(new UsageClientOptions { Endpoint = _server.Endpoint, ChannelOptions = given }));
    }

    private UsageClient CreateClient(Action<UsageClientOptions>? configure = null)
    {
        var options = new UsageClientOptions
        {
            Endpoint = _server.Endpoint,
            ApiKey = "test-key",
            RetryMinBackoff = TimeSpan.FromMilliseconds(10),
            RetryMaxBackoff = TimeSpan.FromMilliseconds(200),
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

    /// <summary>Valid UTF-16 text from ASCII, Latin-1, Cyrillic, CJK and astral (surrogate pair) ranges.</summary>
    private static string RandomText(Random random, int minLength, int maxLength)
    {
        int length = random.Next(minLength, Math.Max(minLength + 1, maxLength));
        var text = new StringBuilder(length * 2);
        for (int i = 0; i < length; i++)
        {
            int kind = random.Next(5);
            int codePoint = kind switch
            {
                0 => random.Next(0x20, 0x7F),
                1 => random.Next(0xA0, 0x100),
                2 => random.Next(0x400, 0x500),
                3 => random.Next(0x4E00, 0x9FFF),
                _ => random.Next(0x1F300, 0x1F64F),
            };
            text.Append(char.ConvertFromUtf32(codePoint));
        }
        return text.ToString();
    }

    private sealed record TrackedEvent(string Id, string Type, string Customer, DateTimeOffset Time, Dictionary<string, string> Data);
}
