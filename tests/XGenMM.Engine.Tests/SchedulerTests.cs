using System.Diagnostics;
using XGenMM.Engine.Decoding;

namespace XGenMM.Engine.Tests;

/// <summary>The scheduler alone, on token ids and counts: no model, no tensors, no engine thread. Steps are carried out
/// by <see cref="Execute"/>, which plays the model and the output processor (every sampled token is
/// <see cref="Token"/>; a sequence ends at its max new tokens).</summary>
public sealed class SchedulerTests
{
    private const int Token = 7;
    private static readonly RequestValidator Validator = new(vocabSize: 1000, embeddingDim: 8, contextLength: 4096);

    private static DecodeEngineOptions Options(int slots, Action<DecodeEngineOptions>? configure = null)
    {
        // The figures in the tests below are worked out for a shared step slowdown of 0.2.
        var options = new DecodeEngineOptions { MaxSlots = slots, PrefillChunkTokens = 512, MinPrefixReuseTokens = 4, SharedStepSlowdown = 0.2 };
        configure?.Invoke(options);
        return options;
    }

    private static DecodeRequest Request(string id, int promptLength, int maxNewTokens = 4, string tenant = "t", int first = 1) => new()
    {
        RequestId = id,
        PromptIds = Enumerable.Range(first, promptLength).Select(i => i % 900 + 1).ToArray(),
        MaxNewTokens = maxNewTokens,
        Tenant = tenant,
    };

    private static Sequence Submit(Scheduler scheduler, DecodeRequest request)
    {
        var s = Validator.Prepare(request);
        scheduler.Reserve(s);
        scheduler.Enqueue(s);
        return s;
    }

    private static long Now(double plusSeconds = 0) => Stopwatch.GetTimestamp() + (long)(plusSeconds * Stopwatch.Frequency);

    /// <summary>Plans a step and plays it out; returns the plan.</summary>
    private static StepPlan Step(Scheduler scheduler, long? now = null, bool cancelAll = false)
    {
        var plan = scheduler.Schedule(now ?? Now(), cancelAll);
        Execute(scheduler, plan);
        return plan;
    }

    private static void Execute(Scheduler scheduler, StepPlan plan)
    {
        foreach (var chunk in plan.Prefills)
            if (chunk.Completes) Emit(scheduler, chunk.Sequence);
        foreach (var row in plan.Decodes) Emit(scheduler, row.Sequence);
    }

    private static void Emit(Scheduler scheduler, Sequence s)
    {
        s.Completion.Add(Token);
        s.PendingToken = Token;
        if (s.Completion.Count >= s.Request.MaxNewTokens) scheduler.Release(s, DecodeFinishReason.Length);
    }

    private static int Running(Scheduler scheduler) => scheduler.BySlot.Count(s => s is not null);

    [Fact]
    public void Requests_are_admitted_in_arrival_order_into_the_lowest_free_slots_and_the_rest_wait()
    {
        var scheduler = new Scheduler(3, Options(3));
        var sequences = Enumerable.Range(0, 5).Select(i => Submit(scheduler, Request($"r{i}", 5))).ToList();
        var plan = Step(scheduler);
        Assert.Equal(["r0", "r1", "r2"], plan.Admitted.Select(s => s.Request.RequestId));
        Assert.Equal([0, 1, 2], plan.Admitted.Select(s => s.Slot));
        Assert.Empty(plan.Decodes);
        Assert.Equal((2, 10L), scheduler.WaitingCounters);
        Assert.All(sequences.Take(3), s => Assert.Equal(Sequence.Phase.Running, s.State));
    }

    [Fact]
    public void Higher_priority_goes_first_within_a_tenant()
    {
        var scheduler = new Scheduler(1, Options(1));
        Submit(scheduler, Request("busy", 3, maxNewTokens: 2));
        Step(scheduler);
        Submit(scheduler, Request("low", 3) with { Priority = RequestPriority.Low });
        Submit(scheduler, Request("normal", 3));
        Submit(scheduler, Request("high", 3) with { Priority = RequestPriority.High });
        var order = new List<string>();
        for (int i = 0; i < 20 && order.Count < 3; i++) order.AddRange(Step(scheduler).Admitted.Select(s => s.Request.RequestId));
        Assert.Equal(["high", "normal", "low"], order);
    }

    [Fact]
    public void The_prefill_budget_is_shared_in_admission_order_and_a_completed_prompt_decodes_from_the_next_step()
    {
        var scheduler = new Scheduler(4, Options(4, o => o.PrefillChunkTokens = 10));
        var a = Submit(scheduler, Request("a", 7));
        var b = Submit(scheduler, Request("b", 7));
        var c = Submit(scheduler, Request("c", 30));
        var first = Step(scheduler);
        Assert.Equal([(a, 0, 7), (b, 0, 3)], first.Prefills.Select(p => (p.Sequence, p.Start, p.Count)));
        Assert.Empty(first.Decodes);

        var second = Step(scheduler);
        Assert.Equal([(b, 3, 4), (c, 0, 6)], second.Prefills.Select(p => (p.Sequence, p.Start, p.Count)));
        Assert.Equal([(a, 0, 7)], second.Decodes.Select(d => (d.Sequence, d.Slot, d.Position)));
        Assert.Equal(1, second.DecodeWidth);

        var third = Step(scheduler);
        Assert.Equal([(c, 6, 10)], third.Prefills.Select(p => (p.Sequence, p.Start, p.Count)));
        Assert.Equal([(a, 8), (b, 7)], third.Decodes.Select(d => (d.Sequence, d.Position)));
        Assert.Equal(2, third.DecodeWidth);
    }

    [Fact]
    public void Tenants_prefilling_at_once_split_the_budget_by_weight_and_what_one_leaves_goes_to_the_others()
    {
        // A's two long prompts are admitted first; in admission order alone they would take the whole budget for 20
        // steps while B's short prompt, holding a slot already, waited for its first token.
        var scheduler = new Scheduler(4, Options(4, o => o.PrefillChunkTokens = 10));
        var a1 = Submit(scheduler, Request("a1", 100, tenant: "A"));
        var a2 = Submit(scheduler, Request("a2", 100, tenant: "A", first: 200));
        var b = Submit(scheduler, Request("b", 6, tenant: "B", first: 400));
        var first = Step(scheduler);
        Assert.Equal([(a1, 0, 5), (b, 0, 5)], first.Prefills.Select(p => (p.Sequence, p.Start, p.Count)));
        var second = Step(scheduler);
        // B needs 1 of its 5: A's allotment is its 5 and then the 4 B left over (work-conserving), in one chunk.
        Assert.Equal([(a1, 5, 9), (b, 5, 1)], second.Prefills.Select(p => (p.Sequence, p.Start, p.Count)));
        Assert.Equal(Sequence.Phase.Running, b.State);
        Assert.Equal(Sequence.Phase.Prefilling, a2.State);

        // Weighted 3:1, B's share of the budget is 7 of 10: its prompt is done in the first step.
        var weighted = new Scheduler(4, Options(4, o => { o.PrefillChunkTokens = 10; o.TenantWeights["B"] = 3; }));
        var wa = Submit(weighted, Request("a1", 100, tenant: "A"));
        var wb = Submit(weighted, Request("b", 6, tenant: "B", first: 400));
        Assert.Equal([(wa, 0, 4), (wb, 0, 6)], Step(weighted).Prefills.Select(p => (p.Sequence, p.Start, p.Count)));
    }

    [Fact]
    public void A_finished_sequence_parks_its_prefix_and_a_follow_up_reuses_the_longest_one()
    {
        var scheduler = new Scheduler(4, Options(4));
        var a = Submit(scheduler, Request("a", 20, maxNewTokens: 3));
        var other = Submit(scheduler, Request("other", 20, maxNewTokens: 3, first: 500));
        do Step(scheduler); while (Running(scheduler) > 0);
        Assert.Equal(2, scheduler.ParkedSlots);

        // Prompt, the two generated tokens that were fed back, then a new question.
        var followUp = new DecodeRequest
        {
            RequestId = "a2",
            PromptIds = a.Request.PromptIds.Concat([Token, Token, 300, 301]).ToArray(),
            MaxNewTokens = 2,
        };
        var s = Submit(scheduler, followUp);
        var plan = Step(scheduler);
        Assert.Equal(22, s.ReusedTokens);
        Assert.Equal([(22, 2)], plan.Prefills.Select(p => (p.Start, p.Count)));
        Assert.Equal(0, s.Slot);
        Assert.Equal(1, scheduler.ParkedSlots);
        Assert.Equal(22, scheduler.ReusedTokensTotal);
    }

    [Fact]
    public void A_prompt_equal_to_a_parked_prefix_still_prefills_its_last_position()
    {
        var scheduler = new Scheduler(2, Options(2));
        var a = Submit(scheduler, Request("a", 10, maxNewTokens: 1));
        do Step(scheduler); while (Running(scheduler) > 0);
        var again = Submit(scheduler, Request("a-again", 10, maxNewTokens: 1));
        var plan = Step(scheduler);
        Assert.Equal(9, again.ReusedTokens);
        Assert.Equal([(9, 1)], plan.Prefills.Select(p => (p.Start, p.Count)));
        Assert.Equal(a.Slot, again.Slot);
    }

    [Fact]
    public void New_work_is_packed_into_low_slots_by_moving_parked_prefixes_up()
    {
        var scheduler = new Scheduler(8, Options(8));
        // Conversations that share nothing, one after another: each parks its slot.
        for (int i = 0; i < 4; i++)
        {
            var s = Submit(scheduler, Request($"c{i}", 12, maxNewTokens: 3, first: 100 * i + 1));
            var plan = Step(scheduler);
            Assert.Equal(0, s.Slot);
            if (i > 0) Assert.Equal([new SlotCopy(0, i, 14)], plan.Copies);
            while (Running(scheduler) > 0) Assert.Equal(1, Step(scheduler).DecodeWidth);
        }
        Assert.Equal(4, scheduler.ParkedSlots);

        // A follow-up of the first conversation, whose prefix was moved up to slot 1 when the second took slot 0: the
        // lowest parked prefix (the last conversation's, in slot 0) moves up to a free slot and the follow-up takes 0.
        var followUp = Submit(scheduler, new DecodeRequest { RequestId = "c0-2", PromptIds = Request("x", 12).PromptIds.Concat([Token, Token, 5]).ToArray(), MaxNewTokens = 2 });
        var reuse = Step(scheduler);
        Assert.Equal(14, followUp.ReusedTokens);
        Assert.Equal(0, followUp.Slot);
        Assert.Equal([new SlotCopy(0, 4, 14), new SlotCopy(1, 0, 14)], reuse.Copies);
        Assert.Equal(1, Step(scheduler).DecodeWidth);
    }

    [Fact]
    public void Of_equally_long_parked_matches_the_lowest_slot_is_taken()
    {
        var scheduler = new Scheduler(8, Options(8));
        var a = Submit(scheduler, Request("a", 10, maxNewTokens: 3));
        var b = Submit(scheduler, Request("b", 10, maxNewTokens: 2));
        do Step(scheduler); while (Running(scheduler) > 0);
        Assert.Equal((0, 1), (a.Slot, b.Slot)); // b (slot 1) parked first: it heads the parked list
        var next = Submit(scheduler, new DecodeRequest { RequestId = "n", PromptIds = a.Request.PromptIds.Concat([300, 301]).ToArray(), MaxNewTokens = 2 });
        var plan = Step(scheduler);
        Assert.Equal(10, next.ReusedTokens); // the prompt both share; the fed-back tokens differ from 300
        Assert.Equal(0, next.Slot);
        Assert.Empty(plan.Copies);
    }

    [Fact]
    public void A_follow_up_on_a_decoder_with_every_slot_parked_runs_in_the_lowest_slot()
    {
        var scheduler = new Scheduler(4, Options(4));
        // Four conversations fill the slots and park them; b ends first, so it is the least recently parked.
        var started = new[] { ("a", 3, 1), ("b", 2, 100), ("c", 3, 200), ("d", 3, 300) }
            .Select(x => Submit(scheduler, Request(x.Item1, 10, maxNewTokens: x.Item2, first: x.Item3))).ToArray();
        do Step(scheduler); while (Running(scheduler) > 0);
        Assert.Equal(4, scheduler.ParkedSlots);

        // A follow-up of d (slot 3): b's prefix is evicted, a's moves up into slot 1, d's is copied down to slot 0.
        var d = started[3];
        var followUp = Submit(scheduler, new DecodeRequest { RequestId = "d2", PromptIds = d.Request.PromptIds.Concat([Token, Token, 5]).ToArray(), MaxNewTokens = 3 });
        var plan = Step(scheduler);
        Assert.Equal(12, followUp.ReusedTokens);
        Assert.Equal(0, followUp.Slot);
        Assert.Equal([new SlotCopy(0, 1, 12), new SlotCopy(3, 0, 12)], plan.Copies);
        Assert.Equal(1, Step(scheduler).DecodeWidth);

        // a's prefix was kept (now in slot 1): its follow-up reuses it.
        var a2 = Submit(scheduler, new DecodeRequest { RequestId = "a2", PromptIds = started[0].Request.PromptIds.Concat([Token, Token, 6]).ToArray(), MaxNewTokens = 2 });
        Step(scheduler);
        Assert.Equal(12, a2.ReusedTokens);
        Assert.Equal(1, a2.Slot);
    }

    [Fact]
    public void Parked_slots_are_evicted_least_recent_first_when_no_slot_is_free()
    {
        var scheduler = new Scheduler(2, Options(2));
        Submit(scheduler, Request("a", 10, maxNewTokens: 2, first: 1));
        Submit(scheduler, Request("b", 10, maxNewTokens: 3, first: 100));
        do Step(scheduler); while (Running(scheduler) > 0);
        Assert.Equal(2, scheduler.ParkedSlots);
        var c = Submit(scheduler, Request("c", 10, maxNewTokens: 2, first: 200));
        var plan = Step(scheduler);
        Assert.Equal(0, c.Slot); // a (slot 0) parked first, so it is evicted
        Assert.Empty(plan.Copies);
        Assert.Equal(1, scheduler.ParkedSlots);
    }

    [Fact]
    public void Full_queues_reject_by_requests_and_by_tokens_and_a_drain_refuses_new_work()
    {
        var scheduler = new Scheduler(1, Options(1, o => { o.MaxWaitingRequests = 2; o.MaxWaitingTokens = 25; }));
        Submit(scheduler, Request("a", 10));
        Submit(scheduler, Request("b", 10));
        var byCount = Assert.Throws<EngineRejectedException>(() => Submit(scheduler, Request("c", 1)));
        Assert.Equal(RejectionReason.Overloaded, byCount.Reason);
        Assert.Contains("2 requests waiting", byCount.Message, StringComparison.Ordinal);
        Step(scheduler); // a admitted
        var byTokens = Assert.Throws<EngineRejectedException>(() => Submit(scheduler, Request("d", 16)));
        Assert.Equal(RejectionReason.Overloaded, byTokens.Reason);
        Assert.Contains("prompt tokens waiting", byTokens.Message, StringComparison.Ordinal);
        Submit(scheduler, Request("e", 15));

        scheduler.BeginDrain();
        Assert.Equal(RejectionReason.ShuttingDown, Assert.Throws<EngineRejectedException>(() => Submit(scheduler, Request("f", 1))).Reason);
        // What was queued before the drain still runs to its end.
        var finished = new List<string>();
        for (int i = 0; i < 50 && (Running(scheduler) > 0 || scheduler.WaitingCounters.Requests > 0); i++)
        {
            var before = scheduler.BySlot.Where(s => s is not null).Select(s => s!).ToList();
            Step(scheduler);
            finished.AddRange(before.Where(s => s.State == Sequence.Phase.Done).Select(s => s.Request.RequestId));
        }
        Assert.Equal(["a", "b", "e"], finished);
        Assert.True(scheduler.Draining);
    }

    [Fact]
    public void Expired_and_cancelled_waiting_requests_are_dropped_and_uncounted()
    {
        var scheduler = new Scheduler(1, Options(1, o => o.QueueTimeToLive = TimeSpan.FromSeconds(2)));
        Submit(scheduler, Request("busy", 5, maxNewTokens: 100));
        Step(scheduler);
        var late = Submit(scheduler, Request("late", 5));
        var gone = Submit(scheduler, Request("gone", 5));
        gone.Cancelled = true;
        var plan = Step(scheduler, Now(1));
        Assert.Equal([new DroppedRequest(gone, null)], plan.Dropped);
        Assert.Empty(Step(scheduler, Now(1.5)).Dropped);
        Assert.Equal([new DroppedRequest(late, RejectionReason.Expired)], Step(scheduler, Now(2.5)).Dropped);
        Assert.Equal((0, 0L), scheduler.WaitingCounters);
        Assert.InRange(scheduler.NextWakeDelay(Now()), TimeSpan.FromMilliseconds(250), TimeSpan.FromMilliseconds(250));
    }

    [Fact]
    public void A_cancelled_running_sequence_frees_its_slot_for_the_next_request_in_the_same_step()
    {
        var scheduler = new Scheduler(1, Options(1));
        var a = Submit(scheduler, Request("a", 20, maxNewTokens: 100));
        Step(scheduler);
        Step(scheduler);
        var b = Submit(scheduler, Request("b", 5));
        a.Cancelled = true;
        var plan = Step(scheduler);
        Assert.Equal([new StoppedSequence(a, false)], plan.Stopped);
        Assert.Equal([b], plan.Admitted);
        Assert.Equal(0, b.Slot);
        Assert.Empty(plan.Decodes);
        Assert.Equal(0, scheduler.ParkedSlots); // a cancelled sequence's KV is not kept
    }

    [Fact]
    public void Cancel_all_rejects_the_waiting_and_stops_the_running_as_shut_down()
    {
        var scheduler = new Scheduler(1, Options(1));
        var a = Submit(scheduler, Request("a", 5, maxNewTokens: 100));
        Step(scheduler);
        var b = Submit(scheduler, Request("b", 5));
        var plan = Step(scheduler, cancelAll: true);
        Assert.Equal([new StoppedSequence(a, true)], plan.Stopped);
        Assert.Equal([new DroppedRequest(b, RejectionReason.ShuttingDown)], plan.Dropped);
        Assert.Empty(plan.Decodes);
        Assert.Equal(0, Running(scheduler));
    }

    [Fact]
    public void A_tenant_flooding_the_queue_first_does_not_delay_another_beyond_one_admission_each()
    {
        var scheduler = new Scheduler(2, Options(2, o => o.MaxWaitingRequests = 1000));
        for (int i = 0; i < 200; i++) Submit(scheduler, Request($"a{i}", 8, maxNewTokens: 2, tenant: "A"));
        Step(scheduler);
        for (int i = 0; i < 5; i++) Submit(scheduler, Request($"b{i}", 8, maxNewTokens: 2, tenant: "B"));
        var order = new List<string>();
        for (int i = 0; i < 100 && order.Count(t => t == "B") < 5; i++) order.AddRange(Step(scheduler).Admitted.Select(s => s.Request.Tenant));
        // Equal costs: B's first goes ahead of A's next, then they alternate.
        Assert.True(order.Count <= 10, string.Join(",", order));
    }

    [Fact]
    public void Weighted_tenants_share_admissions_by_weight_and_cost()
    {
        var scheduler = new Scheduler(1, Options(1, o => { o.MaxWaitingRequests = 1000; o.TenantWeights = new() { ["A"] = 3 }; }));
        // Interleaved arrivals; B's requests cost twice as much: A should get about 6 admissions per B's one.
        for (int i = 0; i < 120; i++)
        {
            Submit(scheduler, Request($"a{i}", 6, maxNewTokens: 2, tenant: "A"));
            if (i % 2 == 0) Submit(scheduler, Request($"b{i}", 14, maxNewTokens: 2, tenant: "B"));
        }
        var order = new List<string>();
        for (int i = 0; i < 300 && order.Count < 70; i++) order.AddRange(Step(scheduler).Admitted.Select(s => s.Request.Tenant));
        int a = order.Take(70).Count(t => t == "A"), b = 70 - a;
        Assert.InRange(a / (double)b, 5.0, 7.0);
    }
    [Fact]
    public void Every_step_decodes_every_running_sequence_and_prefills_at_most_the_budget_while_long_prompts_queue()
    {
        var scheduler = new Scheduler(8, Options(8, o => o.PrefillChunkTokens = 64));
        var streams = Enumerable.Range(0, 3).Select(i => Submit(scheduler, Request($"s{i}", 5, maxNewTokens: 100, first: 10 * i))).ToList();
        Step(scheduler);
        var prompts = Enumerable.Range(0, 4).Select(i => Submit(scheduler, Request($"long{i}", 1000, maxNewTokens: 3, first: 100 * i))).ToList();
        int steps = 0;
        for (; steps < 200 && prompts.Any(p => p.State != Sequence.Phase.Done); steps++)
        {
            var running = scheduler.BySlot.OfType<Sequence>().Where(s => s.State == Sequence.Phase.Running).ToHashSet();
            var plan = Step(scheduler);
            Assert.Equal(running, plan.Decodes.Select(d => d.Sequence).ToHashSet());
            Assert.InRange(plan.PrefillTokens, 0, 64);
        }
        // 4000 prompt positions at the step's prefill budget (64, less the three decode rows under mixed steps), while
        // the three streams got a token every step.
        int budget = scheduler.PrefillBudget(3);
        Assert.InRange(budget, 16, 64);
        Assert.InRange(steps, 4000 / budget, 4000 / budget + 4);
        Assert.All(streams, s => Assert.Equal(1 + steps, s.Completion.Count));
    }

    [Fact]
    public void A_tenant_over_its_share_is_held_back_so_another_is_admitted_within_one_step_of_a_slot_freeing()
    {
        var scheduler = new Scheduler(4, Options(4, o => o.MaxWaitingRequests = 1000));
        for (int i = 0; i < 60; i++) Submit(scheduler, Request($"a{i}", 4, maxNewTokens: 3 + i % 5, tenant: "A", first: i));
        Assert.Equal(4, Step(scheduler).Admitted.Count);
        // B's two requests cost far more than A's: fair order alone admits B's first at once but then A's next dozens,
        // whose virtual time stays below B's, ahead of B's second.
        var b = Enumerable.Range(0, 2).Select(i => Submit(scheduler, Request($"b{i}", 300, maxNewTokens: 300, tenant: "B", first: 500 + i))).ToList();
        var admitted = new List<string>();
        bool slotFreed = false;
        for (int step = 0; step < 50 && b.Any(s => s.State == Sequence.Phase.Waiting); step++)
        {
            var holders = scheduler.BySlot.Where(s => s is not null).ToList();
            var plan = Step(scheduler);
            if (slotFreed) Assert.NotEmpty(plan.Admitted); // a slot freed in the previous step is taken in this one
            admitted.AddRange(plan.Admitted.Select(s => s.Request.RequestId));
            slotFreed = holders.Any(s => s!.State == Sequence.Phase.Done);
        }
        Assert.Equal(["b0", "b1"], admitted);
    }

    /// <summary>Tenant A's burst of 20 requests (prompts of <paramref name="aPrompt"/> positions), then tenant B's two
    /// 5-position requests: B light beside A heavy, unless the router marked B's first one as pressing
    /// (<paramref name="bPressing"/>).</summary>
    private static void BurstBesideTwoStreams(Scheduler scheduler, int maxNewTokens, int aPrompt = 5, bool bPressing = false)
    {
        for (int i = 0; i < 20; i++) Submit(scheduler, Request($"a{i}", aPrompt, maxNewTokens, tenant: "A", first: 10 * i));
        Submit(scheduler, Request("b0", 5, maxNewTokens, tenant: "B", first: 300) with { TenantPressing = bPressing });
        Submit(scheduler, Request("b1", 5, maxNewTokens, tenant: "B", first: 400));
    }

    /// <summary>A pass of n tokens takes 10 ms + 1 ms per token: with the slowdown of 0.2, light tenants
    /// running 2 rows allow 4 rows in all (14 ms &lt;= 1.2 x 12 ms &lt; 15 ms).</summary>
    private static double Line(int rows, int prefillTokens) => 0.010 + 0.001 * rows + 0.0001 * prefillTokens;

    [Fact]
    public void A_heavy_tenant_beside_a_light_one_runs_only_the_rows_that_keep_the_step_within_the_slowdown()
    {
        var scheduler = new Scheduler(16, Options(16, o => o.MaxWaitingRequests = 1000), Line);
        long t0 = Now();
        BurstBesideTwoStreams(scheduler, maxNewTokens: 100);
        var plan = Step(scheduler, t0);
        Assert.Equal(2, plan.Admitted.Count(s => s.Request.Tenant == "A"));
        Assert.Equal(2, plan.Admitted.Count(s => s.Request.Tenant == "B"));
        Assert.Equal(4, scheduler.RowLimitNow);
        Assert.True(scheduler.ProtectingLight);
        // Free slots stay free for A while B is there; B is never held back by the limit.
        Assert.Empty(Step(scheduler, t0 + Stopwatch.Frequency / 100).Admitted);
        // A third request of B: B is admitted, and A may keep as many rows as B wants (3), not more.
        var b2 = Submit(scheduler, Request("b2", 5, maxNewTokens: 100, tenant: "B", first: 500));
        Assert.Contains(b2, Step(scheduler, t0 + Stopwatch.Frequency / 50).Admitted);
        Assert.Equal(3, scheduler.BySlot.Count(s => s is { Request.Tenant: "A" }));
        Assert.Empty(Step(scheduler, t0 + Stopwatch.Frequency / 40).Admitted);
    }

    [Fact]
    public void The_light_tenant_is_remembered_for_the_linger_time_after_its_rows_end_then_the_heavy_one_gets_every_slot()
    {
        var scheduler = new Scheduler(16, Options(16, o => { o.MaxWaitingRequests = 1000; o.ShareLinger = TimeSpan.FromSeconds(1); }), Line);
        long t0 = Now(), ms = Stopwatch.Frequency / 1000;
        for (int i = 0; i < 20; i++) Submit(scheduler, Request($"a{i}", 5, maxNewTokens: 100, tenant: "A", first: 10 * i));
        Submit(scheduler, Request("b0", 5, maxNewTokens: 2, tenant: "B", first: 300));
        Submit(scheduler, Request("b1", 5, maxNewTokens: 2, tenant: "B", first: 400));
        Step(scheduler, t0);
        Step(scheduler, t0 + 10 * ms); // B's rows end here
        Assert.DoesNotContain(scheduler.BySlot, s => s is { Request.Tenant: "B" });
        // Within the linger time the slots B left are not A's: a closed loop's next request is on its way.
        for (int i = 2; i < 10; i++) Step(scheduler, t0 + 10 * i * ms);
        Assert.Equal(2, Running(scheduler));
        Assert.True(scheduler.ProtectingLight);
        var plan = Step(scheduler, t0 + 1500 * ms);
        Assert.Equal(14, plan.Admitted.Count);
        Assert.Equal(16, Running(scheduler));
        Assert.Equal(16, scheduler.RowLimitNow);
        Assert.False(scheduler.ProtectingLight);
    }

    [Fact]
    public void A_tenant_the_router_marks_as_pressing_is_not_light_however_few_of_its_requests_got_through()
    {
        var scheduler = new Scheduler(16, Options(16, o => { o.MaxWaitingRequests = 1000; o.ShareLinger = TimeSpan.FromSeconds(1); }), Line);
        long t0 = Now(), ms = Stopwatch.Frequency / 1000;
        // B got 2 requests through, the rest refused at the door: the router says so on them.
        BurstBesideTwoStreams(scheduler, maxNewTokens: 1000, bPressing: true);
        var plan = Step(scheduler, t0);
        Assert.False(scheduler.ProtectingLight);
        Assert.Equal(16, plan.Admitted.Count);
        for (int i = 1; i <= 10; i++) Step(scheduler, t0 + 50 * i * ms);
        Assert.False(scheduler.ProtectingLight);
        // A linger time after B's last pressing request, B's 2 rows against A's 14 running and 6 waiting are light again.
        Step(scheduler, t0 + 1100 * ms);
        Assert.True(scheduler.ProtectingLight);
    }

    [Fact]
    public void Without_a_light_tenant_or_a_measured_pass_there_is_no_row_limit()
    {
        // Both tenants want more than their share: the shares split the slots, every slot runs.
        var both = new Scheduler(8, Options(8, o => o.MaxWaitingRequests = 1000), Line);
        for (int i = 0; i < 10; i++)
        {
            Submit(both, Request($"a{i}", 5, maxNewTokens: 100, tenant: "A", first: 10 * i));
            Submit(both, Request($"b{i}", 5, maxNewTokens: 100, tenant: "B", first: 10 * i + 5));
        }
        var plan = Step(both);
        Assert.Equal(4, plan.Admitted.Count(s => s.Request.Tenant == "A"));
        Assert.Equal(4, plan.Admitted.Count(s => s.Request.Tenant == "B"));

        // No pass measured yet (or the option off): a light tenant beside a heavy one does not limit the rows.
        foreach (var scheduler in new[] { new Scheduler(8, Options(8, o => o.MaxWaitingRequests = 1000)),
                     new Scheduler(8, Options(8, o => { o.MaxWaitingRequests = 1000; o.SharedStepSlowdown = 0; }), Line) })
        {
            for (int i = 0; i < 10; i++) Submit(scheduler, Request($"a{i}", 5, maxNewTokens: 100, tenant: "A", first: 10 * i));
            Submit(scheduler, Request("b0", 5, maxNewTokens: 100, tenant: "B", first: 300));
            Assert.Equal(8, Step(scheduler).Admitted.Count);
        }
    }

    /// <summary>A pass where rows cost as much as its fixed part (the 2-core CPU's shape): 1 ms + 1 ms a row + 0.1 ms a
    /// prompt position.</summary>
    private static double Steep(int rows, int prefillTokens) => 0.001 + 0.001 * rows + 0.0001 * prefillTokens;

    [Fact]
    public void Beside_a_light_tenant_the_heavy_one_lengthens_its_passes_by_the_slowdown_on_average_and_is_held_in_between()
    {
        var scheduler = new Scheduler(16, Options(16, o => o.MaxWaitingRequests = 1000), Steep);
        BurstBesideTwoStreams(scheduler, maxNewTokens: 1000);
        double light = 0, all = 0;
        int withA = 0, withoutA = 0;
        for (int step = 0; step < 200; step++)
        {
            var plan = Step(scheduler);
            int lightRows = plan.Decodes.Count(d => d.Sequence.Request.Tenant == "B");
            int lightPositions = plan.Prefills.Where(c => c.Sequence.Request.Tenant == "B").Sum(c => c.Count);
            light += Steep(lightRows, lightPositions);
            all += Steep(plan.Decodes.Count, plan.PrefillTokens);
            if (step == 0) continue;
            // B's rows are in every pass; A's 2 (the row limit's floor) in some.
            Assert.Equal(2, lightRows);
            if (plan.Decodes.Any(d => d.Sequence.Request.Tenant == "A")) withA++;
            else withoutA++;
        }
        Assert.True(scheduler.ProtectingLight);
        // A's 2 rows add 2 ms to B's 3 ms pass; the slowdown of 0.2 lets A add 0.6 ms a pass on average: A runs in
        // about 3 passes of 10, and B's passes take 1.2x its own, give or take the credit's bounds.
        Assert.InRange(all / light, 1.18, 1.205);
        Assert.InRange(withA, 50, 70);
        Assert.Equal(2 * withoutA, scheduler.HeldRowsTotal);
    }

    [Fact]
    public void Where_a_row_costs_little_beside_the_fixed_part_of_a_pass_the_heavy_tenant_is_never_held()
    {
        // Line: 10 ms + 1 ms a row. The limit holds A to 2 rows (14 ms <= 1.2 x 12 ms), and those 2 ms are within
        // the 2.4 ms the slowdown allows: the credit never runs out.
        var scheduler = new Scheduler(16, Options(16, o => o.MaxWaitingRequests = 1000), Line);
        BurstBesideTwoStreams(scheduler, maxNewTokens: 4000);
        Step(scheduler);
        for (int step = 0; step < 800; step++) Assert.Equal(4, Step(scheduler).Decodes.Count);
        Assert.Equal(0, scheduler.HeldRowsTotal);
    }

    [Fact]
    public void A_spent_credit_holds_nothing_while_the_light_tenant_has_no_work_on_the_decoder()
    {
        var scheduler = new Scheduler(16, Options(16, o => { o.MaxWaitingRequests = 1000; o.ShareLinger = TimeSpan.FromSeconds(1); }), Steep);
        long t0 = Now(), ms = Stopwatch.Frequency / 1000;
        for (int i = 0; i < 20; i++) Submit(scheduler, Request($"a{i}", 5, maxNewTokens: 100, tenant: "A", first: 10 * i));
        Submit(scheduler, Request("b0", 5, maxNewTokens: 1, tenant: "B", first: 300));
        // B's 5 positions (1.5 ms by themselves) earn A 0.3 ms; A's prompt beside them costs 0.5 ms: spent.
        var plan = Step(scheduler, t0);
        Assert.Equal(["A", "B"], plan.Prefills.Select(c => c.Sequence.Request.Tenant).Order());
        // B's request ended with its first token (its next one is on its way): protected still, but a pass of A's
        // rows now delays no one.
        Assert.DoesNotContain(scheduler.BySlot, s => s is { Request.Tenant: "B" });
        plan = Step(scheduler, t0 + 10 * ms);
        Assert.True(scheduler.ProtectingLight);
        Assert.Equal(["A"], plan.Decodes.Select(d => d.Sequence.Request.Tenant));
        Assert.Equal(0, scheduler.HeldRowsTotal);
        // B's next request: A's row is held, its credit being spent.
        Submit(scheduler, Request("b1", 5, maxNewTokens: 100, tenant: "B", first: 400));
        plan = Step(scheduler, t0 + 20 * ms);
        Assert.Empty(plan.Decodes);
        Assert.Equal(["B"], plan.Prefills.Select(c => c.Sequence.Request.Tenant));
        Assert.Equal(1, scheduler.HeldRowsTotal);
    }

    [Fact]
    public void A_light_request_that_finds_every_slot_taken_lets_the_heavy_rows_run_until_one_frees_then_holds_them()
    {
        var scheduler = new Scheduler(8, Options(8, o => o.MaxWaitingRequests = 1000), Steep);
        long t0 = Now(), ms = Stopwatch.Frequency / 1000;
        // A fills the 8 slots with answers of 10, 20, ... 80 tokens, 16 more of its requests pressing.
        for (int i = 0; i < 24; i++) Submit(scheduler, Request($"a{i}", 5, maxNewTokens: 10 + 10 * (i % 8), tenant: "A", first: 10 * i));
        Step(scheduler, t0);
        Assert.All(scheduler.BySlot, s => Assert.Equal("A", s!.Request.Tenant));
        Submit(scheduler, Request("b0", 5, maxNewTokens: 100, tenant: "B", first: 300));
        Submit(scheduler, Request("b1", 5, maxNewTokens: 100, tenant: "B", first: 400));

        // While a request of B's waits for a slot, A's rows run however spent its credit (held, they would never end
        // and free one); B takes the slots A's first two answers leave, after 10 and 20 tokens.
        int step = 1;
        while (scheduler.BySlot.Count(s => s is { Request.Tenant: "B" }) < 2)
        {
            int aRunning = scheduler.BySlot.Count(s => s is { Request.Tenant: "A", State: Sequence.Phase.Running });
            var plan = Step(scheduler, t0 + step++ * ms);
            Assert.True(scheduler.ProtectingLight);
            Assert.DoesNotContain(plan.Admitted, s => s.Request.Tenant == "A");
            // From the step that admits B's second request on, nothing of B's waits: A is held from there.
            if (scheduler.BySlot.Count(s => s is { Request.Tenant: "B" }) < 2)
                Assert.Equal(aRunning, plan.Decodes.Count(d => d.Sequence.Request.Tenant == "A"));
            Assert.True(step <= 22, $"B still waiting after {step} steps");
        }
        // Held only in the step that admitted B's second request: A's 6 rows.
        Assert.Equal(6, scheduler.HeldRowsTotal);

        // Both of B's requests have slots: A's six remaining rows are held while its credit is spent.
        for (int i = 0; i < 5; i++) Step(scheduler, t0 + step++ * ms);
        var held = Step(scheduler, t0 + step++ * ms);
        Assert.All(held.Decodes, d => Assert.Equal("B", d.Sequence.Request.Tenant));
        Assert.True(scheduler.HeldRowsTotal >= 12);
    }

    [Fact]
    public void A_heavy_tenant_keeps_as_many_rows_as_the_largest_light_tenant_wants_however_steep_the_pass()
    {
        // Light tenants with 6 rows (2 each, under their share of 24 slots / 4 tenants); a pass so steep that the
        // slowdown would leave A none: A keeps 2 rows.
        var scheduler = new Scheduler(24, Options(24, o => o.MaxWaitingRequests = 1000), (n, p) => 0.001 * n * n + 0.0001 * p);
        for (int i = 0; i < 30; i++) Submit(scheduler, Request($"a{i}", 5, maxNewTokens: 100, tenant: "A", first: 10 * i));
        foreach (var t in new[] { "B", "C", "D" })
            for (int i = 0; i < 2; i++) Submit(scheduler, Request($"{t}{i}", 5, maxNewTokens: 100, tenant: t, first: 400 + i));
        var plan = Step(scheduler);
        Assert.Equal(6, plan.Admitted.Count(s => s.Request.Tenant != "A"));
        Assert.Equal(2, plan.Admitted.Count(s => s.Request.Tenant == "A"));
    }

    [Fact]
    public void Tenants_near_their_shares_are_not_light_so_no_row_limit_applies()
    {
        // 16 slots, shares of 8: A wants 8, B 7 (under its share but more than a quarter of A's): no limit, all run.
        var scheduler = new Scheduler(16, Options(16, o => o.MaxWaitingRequests = 1000), Line);
        for (int i = 0; i < 8; i++) Submit(scheduler, Request($"a{i}", 5, maxNewTokens: 100, tenant: "A", first: 10 * i));
        for (int i = 0; i < 7; i++) Submit(scheduler, Request($"b{i}", 5, maxNewTokens: 100, tenant: "B", first: 10 * i + 5));
        Assert.Equal(15, Step(scheduler).Admitted.Count);
        Assert.Equal(16, scheduler.RowLimitNow);
    }

    [Fact]
    public void Under_the_row_limit_the_heavy_tenant_s_prompts_fill_only_what_the_pass_bound_leaves()
    {
        var scheduler = new Scheduler(16, Options(16, o => o.MaxWaitingRequests = 1000), Line);
        BurstBesideTwoStreams(scheduler, maxNewTokens: 100, aPrompt: 100);
        // Bound 1.2 x (10 + 2 x 1) ms = 14.4 ms. First step, no decode row yet: 4.4 ms of prompt = 44 positions for A
        // (B's 10 positions are not held to it).
        var plan = Step(scheduler);
        Assert.Equal(10, plan.Prefills.Where(c => c.Sequence.Request.Tenant == "B").Sum(c => c.Count));
        Assert.Equal(44, plan.Prefills.Where(c => c.Sequence.Request.Tenant == "A").Sum(c => c.Count));
        // Those 4.4 ms are more than the 0.2 x 11 ms B's positions earned A: next step A's prompts wait.
        plan = Step(scheduler);
        Assert.Empty(plan.Prefills);
        Assert.Equal(2, plan.Decodes.Count);
        // B's 2 rows earned A 0.2 x 12 ms: in the step after, B's 2 rows decode, 3 rows wide (slots 0-2, A's first
        // prompt in one of them): 14.4 - 13 ms leaves A 14 positions.
        plan = Step(scheduler);
        Assert.Equal(3, plan.DecodeWidth);
        Assert.Equal(14, plan.Prefills.Where(c => c.Sequence.Request.Tenant == "A").Sum(c => c.Count));
    }

    [Fact]
    public void A_tenant_s_peak_is_remembered_for_the_linger_time_only_and_the_held_tenant_is_reported()
    {
        var scheduler = new Scheduler(32, Options(32, o => { o.MaxWaitingRequests = 1000; o.ShareLinger = TimeSpan.FromSeconds(1); }), Line);
        long t0 = Now(), ms = Stopwatch.Frequency / 1000;
        // A wants 20 rows, then only 4 (its others end); B wants 4 all along.
        var a = Enumerable.Range(0, 20).Select(i => Submit(scheduler, Request($"a{i}", 5, maxNewTokens: i < 4 ? 1000 : 2, tenant: "A", first: 10 * i))).ToList();
        Step(scheduler, t0);
        for (int i = 0; i < 4; i++) Submit(scheduler, Request($"b{i}", 5, maxNewTokens: 1000, tenant: "B", first: 300 + 10 * i));
        Step(scheduler, t0 + 10 * ms);
        Step(scheduler, t0 + 20 * ms);
        // Within the linger time A's peak of 20 makes B (4) light and A held.
        Assert.Contains(scheduler.TenantLoads(), t => t is { Tenant: "A", Held: true });
        Assert.Contains(scheduler.TenantLoads(), t => t is { Tenant: "B", Held: false });
        // Past it both want 4: neither is light, no limit.
        Step(scheduler, t0 + 1500 * ms);
        Assert.Equal(32, scheduler.RowLimitNow);
        Assert.All(scheduler.TenantLoads(), t => Assert.False(t.Held));
    }
}
