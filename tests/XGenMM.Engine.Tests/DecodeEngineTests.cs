using System.Diagnostics;
using XGenMM.Engine.Decoding;
using XGenMM.Engine.Vision;
using XGenMM.Model.Generation;

namespace XGenMM.Engine.Tests;

public sealed class DecodeEngineTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly string[] Questions =
    [
        "What is in the picture?", "Describe the scene in detail, please.", "Count the objects.", "Hi",
        "Is there a person on the left side of the image, and what are they wearing today?", "Colour?",
        "Tell me a very long story about a cat that climbs a tree and cannot get down again, with many details.", "Why?",
    ];

    private static DecodeRequest Request(string id, IReadOnlyList<int> prompt, int maxNewTokens, IReadOnlyList<VisionTokens>? images = null,
        string tenant = "t", SamplingOptions? sampling = null) => new()
    {
        RequestId = id,
        PromptIds = prompt,
        Images = images ?? [],
        MaxNewTokens = maxNewTokens,
        Tenant = tenant,
        Sampling = sampling ?? SamplingOptions.Greedy,
        StopTokenIds = [], // the random tiny model rarely says <|end|>: run every request to its length
    };

    [Fact(Timeout = 120_000)]
    public async Task Greedy_outputs_under_a_32_request_batch_equal_single_request_outputs()
    {
        using var vision = new VisionEngine(TestModels.TinyPipeline.Model, new VisionEngineOptions());
        var image = (await vision.EncodeAsync(TestModels.CocoJpeg, "t", Ct)).Tokens;
        var requests = Enumerable.Range(0, 32).Select(i =>
        {
            bool withImage = i % 4 == 0;
            var prompt = TestModels.Prompt(Questions[i % Questions.Length] + new string('!', i % 5), withImage ? 1 : 0);
            return Request($"r{i}", prompt, 4 + (i * 7) % 29, withImage ? [image] : null);
        }).ToList();

        var alone = new List<List<int>>();
        using (var engine = TestModels.NewEngine(o => o.PrefixReuse = false))
            foreach (var r in requests) alone.Add((await TestModels.Run(engine, r, Ct)).Tokens);

        using (var engine = TestModels.NewEngine(o => { o.MaxSlots = 32; o.PrefillChunkTokens = 64; o.PrefixReuse = false; }))
        {
            var together = await Task.WhenAll(requests.Select(r => TestModels.Run(engine, r, Ct)));
            for (int i = 0; i < requests.Count; i++)
            {
                Assert.Equal(requests[i].MaxNewTokens, together[i].Tokens.Count);
                Assert.Equal(alone[i], together[i].Tokens);
            }
        }
    }

    [Fact(Timeout = 60_000)]
    public async Task A_single_request_equals_the_reference_generator()
    {
        var pipeline = TestModels.TinyPipeline;
        using var vision = new VisionEngine(pipeline.Model, new VisionEngineOptions { WireFormat = VisionTokenFormat.Float32 });
        var image = (await vision.EncodeAsync(TestModels.SyntheticPng, "t", Ct)).Tokens;
        var prompt = TestModels.Prompt("What is shown?", 1);
        using var reference = pipeline.EncodeImage(TestModels.SyntheticPng);
        using var batch = MultimodalInputs.Build(pipeline.Model, [prompt], [[reference]]);
        var expected = new BatchGenerator(pipeline.Model)
            .Generate(batch, [prompt], [new GenerationOptions { MaxNewTokens = 24, StopTokenIds = [] }])
            .Select(s => s.Tokens[0]).ToList();

        using var engine = TestModels.NewEngine();
        var (tokens, final, _) = await TestModels.Run(engine, Request("x", prompt, 24, [image]), Ct);
        Assert.Equal(expected, tokens);
        Assert.Equal(DecodeFinishReason.Length, final.Finish);
        Assert.Equal(image.Rows, final.Usage!.Value.ImageTokens);
        Assert.Equal(prompt.Count - 1, final.Usage.Value.PromptTokens);
        Assert.Equal(24, final.Usage.Value.CompletionTokens);
    }

    [Fact(Timeout = 60_000)]
    public async Task Seeded_sampling_is_reproducible_per_request_whatever_shares_the_batch()
    {
        var sampling = new SamplingOptions { Temperature = 0.9f, TopP = 0.95f, Seed = 42 };
        var prompt = TestModels.Prompt("Write something.");
        using var engine = TestModels.NewEngine(o => o.PrefixReuse = false);
        var alone = (await TestModels.Run(engine, Request("a", prompt, 20, sampling: sampling), Ct)).Tokens;
        var crowd = Enumerable.Range(0, 6).Select(i => TestModels.Run(engine, Request($"n{i}", TestModels.Prompt($"Other {i}"), 30,
            sampling: new SamplingOptions { Temperature = 1f, Seed = (ulong)i }), Ct)).ToList();
        var again = await TestModels.Run(engine, Request("b", prompt, 20, sampling: sampling), Ct);
        await Task.WhenAll(crowd);
        Assert.Equal(alone, again.Tokens);
        var other = await TestModels.Run(engine, Request("c", prompt, 20, sampling: sampling with { Seed = 43 }), Ct);
        Assert.NotEqual(alone, other.Tokens);
    }

    [Fact(Timeout = 60_000)]
    public async Task Cancelling_the_consumer_stops_the_sequence_and_frees_its_slot()
    {
        using var engine = TestModels.NewEngine(o => o.MaxSlots = 1);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        int seen = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var e in engine.Submit(Request("long", TestModels.Prompt("Go on forever."), 900), cts.Token))
                if (++seen == 5) await cts.CancelAsync();
        });
        Assert.Equal(5, seen);
        await WaitFor(() => engine.GetLoad() is { Running: 0, Waiting: 0 });
        var load = engine.GetLoad();
        Assert.True(load.GeneratedTokensTotal < 100, $"generation went on after cancel: {load.GeneratedTokensTotal} tokens");
        // The only slot is usable again at once.
        var (tokens, _, _) = await TestModels.Run(engine, Request("next", TestModels.Prompt("Hi"), 3), Ct);
        Assert.Equal(3, tokens.Count);
    }

    [Fact(Timeout = 60_000)]
    public async Task Breaking_out_of_the_stream_early_also_frees_the_slot()
    {
        using var engine = TestModels.NewEngine(o => o.MaxSlots = 1);
        await foreach (var e in engine.Submit(Request("long", TestModels.Prompt("Go on."), 900), Ct))
            break;
        await WaitFor(() => engine.GetLoad().Running == 0);
        Assert.True(engine.GetLoad().GeneratedTokensTotal < 100);
    }

    [Fact(Timeout = 60_000)]
    public async Task A_full_queue_rejects_with_overloaded_by_requests_and_by_tokens()
    {
        using var engine = TestModels.NewEngine(o => { o.MaxSlots = 1; o.MaxWaitingRequests = 2; });
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var busy = Drain(engine.Submit(Request("busy", TestModels.Prompt("Busy."), 900), cts.Token));
        await WaitFor(() => engine.GetLoad().Running == 1);
        var w1 = Drain(engine.Submit(Request("w1", TestModels.Prompt("One"), 2), cts.Token));
        var w2 = Drain(engine.Submit(Request("w2", TestModels.Prompt("Two"), 2), cts.Token));
        var e = Assert.Throws<EngineRejectedException>(() => engine.Submit(Request("w3", TestModels.Prompt("Three"), 2), cts.Token));
        Assert.Equal(RejectionReason.Overloaded, e.Reason);
        Assert.Contains("2 requests waiting", e.Message, StringComparison.Ordinal);
        await cts.CancelAsync();
        await Task.WhenAll(busy, w1, w2);

        var prompt = TestModels.Prompt("A question of some length, long enough.");
        using var byTokens = TestModels.NewEngine(o => { o.MaxSlots = 1; o.MaxWaitingTokens = prompt.Count + 5; });
        using var cts2 = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var busy2 = Drain(byTokens.Submit(Request("busy", prompt, 900), cts2.Token));
        await WaitFor(() => byTokens.GetLoad().Running == 1);
        var queued = Drain(byTokens.Submit(Request("q", prompt, 2), cts2.Token));
        var e2 = Assert.Throws<EngineRejectedException>(() => byTokens.Submit(Request("q2", prompt, 2), cts2.Token));
        Assert.Equal(RejectionReason.Overloaded, e2.Reason);
        Assert.Contains("prompt tokens waiting", e2.Message, StringComparison.Ordinal);
        await cts2.CancelAsync();
        await Task.WhenAll(busy2, queued);
    }

    [Fact(Timeout = 60_000)]
    public async Task The_load_carries_the_measured_step_and_prefill_costs_and_the_tokens_each_running_request_has_left()
    {
        using var engine = TestModels.NewEngine(o => { o.MaxSlots = 2; o.PrefillChunkTokens = 16; });
        var fresh = engine.GetLoad();
        Assert.Equal(0, fresh.DecodeStepSeconds);
        Assert.Equal(0, fresh.PrefillSecondsPerToken);
        Assert.Equal(16, fresh.PrefillChunkTokens);
        Assert.Empty(fresh.RemainingTokens);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var busy = Drain(engine.Submit(Request("busy", TestModels.Prompt("Busy with a long answer."), 900), cts.Token));
        await WaitFor(() => engine.GetLoad() is { Running: 1, DecodeStepSeconds: > 0 });
        var load = engine.GetLoad();
        Assert.True(load.PrefillSecondsPerToken > 0, "prefill chunks were timed");
        Assert.Equal(0, load.PrefillingTokens);
        Assert.Single(load.RemainingTokens);
        Assert.InRange(load.RemainingTokens[0], 1, 899);
        await cts.CancelAsync();
        await busy;
        await WaitFor(() => engine.GetLoad() is { Running: 0, RemainingTokens.Count: 0 });
    }

    [Fact]
    public void Step_costs_are_averaged_with_the_first_sample_taken_whole()
    {
        Assert.Equal(0.5, EngineStatistics.Ewma(0, 0.5));
        Assert.Equal(1 + EngineStatistics.EwmaWeight * (2 - 1), EngineStatistics.Ewma(1, 2), 12);
    }

    [Fact]
    public void Latency_percentiles_are_sorted_when_read_and_follow_new_samples_after_the_refresh_interval()
    {
        var statistics = new EngineStatistics();
        Assert.Equal((0.0, 0.0, 0.0, 0.0), statistics.Latencies());
        for (int i = 1; i <= 100; i++)
        {
            statistics.RecordTtft(i / 1000.0);
            statistics.RecordItl(i / 10_000.0);
        }
        Thread.Sleep(EngineStatistics.LatencyRefresh + TimeSpan.FromMilliseconds(20));
        var (ttft50, ttft99, itl50, itl99) = statistics.Latencies();
        Assert.Equal(0.050, ttft50, 12);
        Assert.Equal(0.099, ttft99, 12);
        Assert.Equal(0.0050, itl50, 12);
        Assert.Equal(0.0099, itl99, 12);
        for (int i = 0; i < 2048; i++) statistics.RecordTtft(1.0);
        Thread.Sleep(EngineStatistics.LatencyRefresh + TimeSpan.FromMilliseconds(20));
        Assert.Equal(1.0, statistics.Latencies().TtftP50);
    }

    [Fact(Timeout = 30_000)]
    public async Task The_load_counts_forward_passes_with_their_seconds_rows_and_prompt_positions()
    {
        using var engine = TestModels.NewEngine();
        var before = engine.GetLoad();
        var prompt = TestModels.Prompt("Count my passes.");
        var (tokens, _, _) = await TestModels.Run(engine, Request("p", prompt, 8), Ct);
        await WaitFor(() => engine.GetLoad().GeneratedTokensTotal >= before.GeneratedTokensTotal + tokens.Count);
        var after = engine.GetLoad();
        // The pass that ends the prompt gives the first token; each later token is a decode row of its own pass.
        Assert.True(after.PassesTotal - before.PassesTotal >= tokens.Count, $"{after.PassesTotal - before.PassesTotal} passes for {tokens.Count} tokens");
        Assert.True(after.PassRowsTotal - before.PassRowsTotal >= tokens.Count - 1);
        Assert.Equal(prompt.Count, after.PassPrefillTokensTotal - before.PassPrefillTokensTotal);
        Assert.True(after.PassSecondsTotal > before.PassSecondsTotal);
    }

    [Fact(Timeout = 30_000)]
    public void Requests_that_can_never_fit_are_rejected_before_they_queue()
    {
        using var engine = TestModels.NewEngine(o => o.MaxSequenceLength = 128);
        var prompt = TestModels.Prompt("Hello there.");
        var e = Assert.Throws<EngineRejectedException>(() => engine.Submit(Request("big", prompt, 128 - prompt.Count + 1)));
        Assert.Equal(RejectionReason.TooLong, e.Reason);
        Assert.Contains("context of 128", e.Message, StringComparison.Ordinal);
        _ = engine.Submit(Request("fits", prompt, 128 - prompt.Count)); // exactly fits
        Assert.True(SpinWait.SpinUntil(() => engine.GetLoad().Running == 1, 10_000), "the request that exactly fits runs");

        var invalid = Assert.Throws<EngineRejectedException>(() => engine.Submit(Request("img", TestModels.Prompt("What?", images: 1), 4)));
        Assert.Equal(RejectionReason.Invalid, invalid.Reason);
        Assert.Contains("1 <image> token(s) but 0 image(s)", invalid.Message, StringComparison.Ordinal);
        var badTokens = new VisionTokens(new byte[10], 5, 7, VisionTokenFormat.Float16, "k");
        var wrongShape = Assert.Throws<EngineRejectedException>(() => engine.Submit(Request("img", TestModels.Prompt("What?", images: 1), 4, [badTokens])));
        Assert.Equal(RejectionReason.Invalid, wrongShape.Reason);
        var badId = Assert.Throws<EngineRejectedException>(() => engine.Submit(Request("id", [1, 99_999], 4)));
        Assert.Equal(RejectionReason.Invalid, badId.Reason);
        Assert.Equal(RejectionReason.Invalid, Assert.Throws<EngineRejectedException>(() => engine.Submit(Request("zero", prompt, 0))).Reason);
    }

    [Fact(Timeout = 60_000)]
    public async Task A_request_waiting_longer_than_the_ttl_expires()
    {
        using var engine = TestModels.NewEngine(o => { o.MaxSlots = 1; o.QueueTimeToLive = TimeSpan.FromMilliseconds(300); });
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var busy = Drain(engine.Submit(Request("busy", TestModels.Prompt("Busy."), 900), cts.Token));
        await WaitFor(() => engine.GetLoad().Running == 1);
        var clock = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<EngineRejectedException>(() => Drain(engine.Submit(Request("late", TestModels.Prompt("Late"), 2), Ct)));
        Assert.Equal(RejectionReason.Expired, e.Reason);
        Assert.InRange(clock.ElapsedMilliseconds, 250, 5000);
        Assert.Equal(0, engine.GetLoad().Waiting);
        await cts.CancelAsync();
        await busy;
    }

    [Fact(Timeout = 120_000)]
    public async Task A_tenant_flooding_the_queue_does_not_starve_another()
    {
        using var engine = TestModels.NewEngine(o => { o.MaxSlots = 4; o.PrefixReuse = false; });
        // When each request was admitted: its arrival (taken just before Submit, which stamps it synchronously) plus the
        // queue time the engine reports. Admission order is what fair queueing decides; the order in which completions
        // reach their continuations also depends on the thread pool (it once put 18 completions before B's last where
        // the admissions allowed 17).
        var admitted = new System.Collections.Concurrent.ConcurrentBag<(string Tenant, double At)>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Task Track(DecodeRequest r)
        {
            double arrival = clock.Elapsed.TotalSeconds;
            var run = TestModels.Run(engine, r, Ct);
            return run.ContinueWith(t => admitted.Add((r.Tenant, arrival + t.Result.Final.Timings!.Value.QueueSeconds)), Ct,
                TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
        }
        var flood = Enumerable.Range(0, 200).Select(i => Track(Request($"a{i}", TestModels.Prompt($"Flood {i}"), 6, tenant: "A"))).ToList();
        await WaitFor(() => engine.GetLoad().Running > 0);
        double bArrival = clock.Elapsed.TotalSeconds;
        var few = Enumerable.Range(0, 5).Select(i => Track(Request($"b{i}", TestModels.Prompt($"Small {i}"), 6, tenant: "B"))).ToList();
        await Task.WhenAll(few.Concat(flood));
        var all = admitted.ToArray();
        Assert.Equal(205, all.Length);
        double bLast = all.Where(a => a.Tenant == "B").Max(a => a.At);
        // Between B's arrival and its last admission, fair order admits about one A per B (4 here: B's first goes
        // ahead of A's next, equal costs tie after that), plus 2 for admissions of one batch that lie microseconds apart
        // and for the arrival stamps, which are read in the test. Starved, B would wait for nearly all 200.
        int aBetween = all.Count(a => a.Tenant == "A" && a.At > bArrival && a.At < bLast);
        Assert.True(aBetween <= 5 + 2, $"{aBetween} of A's requests were admitted between B's arrival and B's last admission");
    }

    [Fact(Timeout = 60_000)]
    public async Task Higher_priority_requests_of_a_tenant_are_admitted_first()
    {
        using var engine = TestModels.NewEngine(o => { o.MaxSlots = 1; o.PrefixReuse = false; });
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var order = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var busy = Drain(engine.Submit(Request("busy", TestModels.Prompt("Busy."), 40), cts.Token));
        await WaitFor(() => engine.GetLoad().Running == 1);
        async Task Track(DecodeRequest r) { await TestModels.Run(engine, r, Ct); order.Enqueue(r.RequestId); }
        var low = Track(Request("low", TestModels.Prompt("a"), 2) with { Priority = RequestPriority.Low });
        var normal = Track(Request("normal", TestModels.Prompt("b"), 2));
        var high = Track(Request("high", TestModels.Prompt("c"), 2) with { Priority = RequestPriority.High });
        await Task.WhenAll(low, normal, high, busy);
        Assert.Equal(["high", "normal", "low"], order.ToArray());
    }

    [Fact(Timeout = 60_000)]
    public async Task A_follow_up_turn_reuses_the_cached_prefix_and_gives_the_cold_tokens()
    {
        var tokenizer = TestModels.TinyPipeline.Tokenizer;
        using var vision = new VisionEngine(TestModels.TinyPipeline.Model, new VisionEngineOptions());
        var image = (await vision.EncodeAsync(TestModels.CocoJpeg, "t", Ct)).Tokens;
        var first = TestModels.Prompt("What do you see?", 1);

        using var warm = TestModels.NewEngine();
        var turn1 = await TestModels.Run(warm, Request("t1", first, 12, [image]), Ct);
        // The follow-up prompt extends the first prompt with the answer and a new question (ids, as a client's
        // re-rendered conversation would mostly produce them).
        var followUp = first.Concat(turn1.Tokens).Concat(tokenizer.Encode("<|end|>\n<|user|>\nAnd then?<|end|>\n<|assistant|>\n")).ToList();
        var turn2 = await TestModels.Run(warm, Request("t2", followUp, 12, [image]), Ct);
        int positions = followUp.Count - 1 + image.Rows;
        Assert.True(turn2.Final.Usage!.Value.CachedTokens >= first.Count - 1 + image.Rows, $"reused {turn2.Final.Usage.Value.CachedTokens} of {positions}");

        using var cold = TestModels.NewEngine(o => o.PrefixReuse = false);
        var coldTurn2 = await TestModels.Run(cold, Request("t2", followUp, 12, [image]), Ct);
        Assert.Equal(0, coldTurn2.Final.Usage!.Value.CachedTokens);
        Assert.Equal(coldTurn2.Tokens, turn2.Tokens);

        // The same ids behind the placeholder but another image: reuse stops where the image starts.
        var other = (await vision.EncodeAsync(TestModels.SyntheticPng, "t", Ct)).Tokens;
        var swapped = await TestModels.Run(warm, Request("t3", followUp, 12, [other]), Ct);
        int imageAt = first.ToList().IndexOf(XGenMM.Model.Tokenization.SpecialTokens.Image);
        Assert.True(swapped.Final.Usage!.Value.CachedTokens <= imageAt, $"reused {swapped.Final.Usage.Value.CachedTokens} positions across a different image");
        var coldSwapped = await TestModels.Run(cold, Request("t3", followUp, 12, [other]), Ct);
        Assert.Equal(coldSwapped.Tokens, swapped.Tokens);
    }

    [Fact(Timeout = 60_000)]
    public async Task Parked_prefixes_do_not_widen_the_decode_batch_and_a_moved_prefix_is_still_reused_exactly()
    {
        var tokenizer = TestModels.TinyPipeline.Tokenizer;
        // Conversations that share no prefix, one after another: each finished one stays parked for a follow-up. Before
        // slots were packed, conversation k ran in slot k and every decode step computed k + 1 rows.
        string[] topics = ["Apples", "Bridges", "Clouds", "Deserts", "Engines"];
        var prompts = topics.Select(t => (IReadOnlyList<int>)tokenizer.Encode($"{t} are worth a story.<|end|>\n<|assistant|>\n")).ToList();
        using var warm = TestModels.NewEngine(o => o.MaxSlots = 8);
        var answers = new List<List<int>>();
        foreach (var (prompt, i) in prompts.Select((p, i) => (p, i)))
        {
            answers.Add((await TestModels.Run(warm, Request($"c{i}", prompt, 8), Ct)).Tokens);
            Assert.Equal(1, warm.GetLoad().DecodeRows);
        }
        Assert.Equal(topics.Length, warm.GetLoad().ParkedSlots);

        // The first conversation's prefix has been moved to another slot meanwhile: its follow-up still reuses it and
        // gives the tokens of a cold prefill.
        var followUp = prompts[0].Concat(answers[0]).Concat(tokenizer.Encode("<|end|>\n<|user|>\nAnd then?<|end|>\n<|assistant|>\n")).ToList();
        var turn2 = await TestModels.Run(warm, Request("c0-2", followUp, 8), Ct);
        Assert.True(turn2.Final.Usage!.Value.CachedTokens >= prompts[0].Count - 1, $"reused {turn2.Final.Usage.Value.CachedTokens} of {followUp.Count}");
        Assert.Equal(1, warm.GetLoad().DecodeRows);
        using var cold = TestModels.NewEngine(o => o.PrefixReuse = false);
        Assert.Equal((await TestModels.Run(cold, Request("c0-2", followUp, 8), Ct)).Tokens, turn2.Tokens);
    }

    [Fact(Timeout = 60_000)]
    public async Task Stop_strings_and_stop_tokens_end_the_answer()
    {
        using var engine = TestModels.NewEngine();
        var prompt = TestModels.Prompt("Say something.");
        var free = await TestModels.Run(engine, Request("free", prompt, 30), Ct);
        Assert.True(free.Text.Length > 4);
        string stop = free.Text.Substring(free.Text.Length / 2, 2);
        var cut = await TestModels.Run(engine, Request("cut", prompt, 30) with { StopStrings = [stop] }, Ct);
        Assert.Equal(DecodeFinishReason.Stop, cut.Final.Finish);
        Assert.Equal(free.Text[..free.Text.IndexOf(stop, StringComparison.Ordinal)], cut.Text);

        var byToken = await TestModels.Run(engine, Request("tok", prompt, 30) with { StopTokenIds = [free.Tokens[3]] }, Ct);
        Assert.Equal(DecodeFinishReason.Stop, byToken.Final.Finish);
        Assert.Equal(free.Tokens.Take(free.Tokens.IndexOf(free.Tokens[3]) + 1), byToken.Tokens);
    }

    [Fact(Timeout = 60_000)]
    public async Task A_resumed_generation_continues_exactly_where_the_first_attempt_stopped()
    {
        using var engine = TestModels.NewEngine(o => o.PrefixReuse = false);
        var prompt = TestModels.Prompt("Tell me more.");
        var full = await TestModels.Run(engine, Request("full", prompt, 20), Ct);
        var resumed = await TestModels.Run(engine, Request("again", prompt, 20) with { ResumeTokenIds = full.Tokens.Take(7).ToList() }, Ct);
        Assert.Equal(full.Tokens.Skip(7), resumed.Tokens);
        Assert.Equal(20, resumed.Final.Usage!.Value.CompletionTokens);
        Assert.Equal(full.Text, TestModels.TinyPipeline.Tokenizer.Decode(full.Tokens.Take(7), true) + resumed.Text);
    }

    [Fact(Timeout = 60_000)]
    public async Task Draining_refuses_new_work_and_lets_running_work_finish()
    {
        using var engine = TestModels.NewEngine();
        var running = TestModels.Run(engine, Request("r", TestModels.Prompt("Finish me."), 30), Ct);
        await WaitFor(() => engine.GetLoad().Running == 1);
        var drained = engine.DrainAsync(TimeSpan.FromSeconds(30), Ct);
        var e = Assert.Throws<EngineRejectedException>(() => engine.Submit(Request("new", TestModels.Prompt("No"), 2)));
        Assert.Equal(RejectionReason.ShuttingDown, e.Reason);
        Assert.True(await drained);
        Assert.Equal(30, (await running).Tokens.Count);
        Assert.True(engine.GetLoad().Draining);
    }

    [Fact(Timeout = 60_000)]
    public async Task A_drain_that_times_out_fails_running_work_with_shutting_down_not_a_quiet_end()
    {
        using var engine = TestModels.NewEngine();
        var running = TestModels.Run(engine, Request("long", TestModels.Prompt("Never finishes in time."), 900), Ct);
        await WaitFor(() => engine.GetLoad().Running == 1);
        Assert.False(await engine.DrainAsync(TimeSpan.FromMilliseconds(50), Ct));
        // A quiet end would look like a finished stream to its caller, who could then not tell it must move elsewhere.
        var e = await Assert.ThrowsAsync<EngineRejectedException>(() => running);
        Assert.Equal(RejectionReason.ShuttingDown, e.Reason);
        await WaitFor(() => engine.GetLoad().Running == 0);
    }

    [Theory(Timeout = 180_000)]
    [InlineData(false)]
    [InlineData(true)] // the float32-packed model: every step in CpuDecoderStep
    public async Task Memory_stays_flat_over_20000_generated_tokens(bool cpuStep)
    {
        var pipeline = cpuStep ? TestModels.TinyPackedPipeline : TestModels.TinyPipeline;
        using var engine = new DecodeEngine(pipeline.Model, pipeline.Tokenizer,
            new DecodeEngineOptions { MaxSlots = 8, MaxSequenceLength = 700, KvCacheBytes = 1L << 30, CpuStep = cpuStep });
        async Task Wave(int requests, int tokens)
        {
            await Task.WhenAll(Enumerable.Range(0, requests).Select(i =>
                TestModels.Run(engine, Request($"m{i}", TestModels.Prompt($"Memory {i % 3}"), tokens), Ct)));
        }
        await Wave(8, 500); // warm-up: allocator pools, caches, the KV positions the waves reach
        var before = Footprint();
        long generatedBefore = engine.GetLoad().GeneratedTokensTotal;
        for (int wave = 0; wave < 5; wave++) await Wave(8, 500);
        var after = Footprint();
        long generated = engine.GetLoad().GeneratedTokensTotal - generatedBefore;
        Assert.True(generated >= 20_000, $"generated {generated}");
        TestContext.Current.SendDiagnosticMessage($"outside the managed heap {before.Native:F1} MB -> {after.Native:F1} MB, managed heap {before.Managed:F1} MB -> {after.Managed:F1} MB over {generated} tokens");
        Assert.True(after.Native - before.Native < 40, $"memory outside the managed heap grew by {after.Native - before.Native:F1} MB over {generated} tokens");
        Assert.True(after.Managed - before.Managed < 16, $"the managed heap's live objects grew by {after.Managed - before.Managed:F1} MB over {generated} tokens");
    }

    /// <summary>Resident memory outside the managed heap (native tensors, KV cache, kernels' buffers) and the managed
    /// heap's live bytes, after a full collection. The working set alone also holds the managed heap's committed
    /// garbage room, whose size the GC derives from the CPU's cache: on a host with 300 MB of L3 the heap grew 80 MB
    /// between two collections, which read as a leak.</summary>
    private static (double Native, double Managed) Footprint()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        const double Mb = 1024.0 * 1024.0;
        return ((Environment.WorkingSet - GC.GetGCMemoryInfo().TotalCommittedBytes) / Mb, GC.GetTotalMemory(false) / Mb);
    }

    [Fact(Timeout = 30_000)]
    public async Task The_load_report_counts_waiting_running_and_kv_use()
    {
        using var engine = TestModels.NewEngine(o => o.MaxSlots = 2);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var streams = Enumerable.Range(0, 3).Select(i => Drain(engine.Submit(Request($"l{i}", TestModels.Prompt("Load"), 900), cts.Token))).ToList();
        await WaitFor(() => engine.GetLoad() is { Running: 2, Waiting: 1 });
        var load = engine.GetLoad();
        Assert.Equal(1.0, load.KvUsage);
        Assert.True(load.WaitingTokens > 0);
        Assert.True(load.KvTokens > 0);
        await WaitFor(() => engine.GetLoad().TokensPerSecond > 0);
        await cts.CancelAsync();
        await Task.WhenAll(streams);
        await WaitFor(() => engine.GetLoad() is { Running: 0, Waiting: 0 });
    }

    private static async Task Drain(IAsyncEnumerable<DecodeEvent> stream)
    {
        try
        {
            await foreach (var _ in stream) { }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static async Task WaitFor(Func<bool> condition, int timeoutMs = 10_000)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.ElapsedMilliseconds > timeoutMs) throw new TimeoutException("condition not reached in time");
            await Task.Delay(5, Ct);
        }
    }
}
