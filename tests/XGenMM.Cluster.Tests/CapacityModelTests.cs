using XGenMM.Cluster.Abstractions;
using XGenMM.Cluster.Client;

namespace XGenMM.Cluster.Tests;

/// <summary>The admission model on hand-made load reports, and the router's choice with it.</summary>
public sealed class CapacityModelTests
{
    private const double Step = 0.02, PerToken = 0.001;

    private static DecoderLoadReport Report(string key = "d1", int slots = 4, int running = 0, int waiting = 0, long waitingTokens = 0,
        long prefilling = 0, int[]? remaining = null, double step = Step, double perToken = PerToken, int chunk = 512) => new()
    {
        DecoderKey = key,
        Silo = "silo",
        TotalSlots = slots,
        Running = running,
        Waiting = waiting,
        WaitingTokens = waitingTokens,
        PrefillingTokens = prefilling,
        RemainingTokens = remaining ?? [],
        DecodeStepSeconds = step,
        PrefillSecondsPerToken = perToken,
        PrefillChunkTokens = chunk,
    };

    [Fact]
    public void An_idle_decoder_costs_only_the_prefill_of_the_prompt()
    {
        var p = CapacityModel.Predict(Report(), 100);
        Assert.Equal(0, p.SlotWaitSeconds);
        Assert.Equal(100 * PerToken, p.PrefillSeconds, 9);
        Assert.Equal(0, p.InterleavedDecodeSeconds);
    }

    [Fact]
    public void With_a_free_slot_the_prefill_ahead_counts_and_every_chunk_of_it_costs_one_decode_step()
    {
        // 300 admitted but not prefilled + 400 waiting + 600 new = 1300 positions = 3 chunks of 512.
        var p = CapacityModel.Predict(Report(running: 2, waiting: 1, waitingTokens: 400, prefilling: 300, remaining: [50, 80]), 600);
        Assert.Equal(0, p.SlotWaitSeconds);
        Assert.Equal(1300 * PerToken, p.PrefillSeconds, 9);
        Assert.Equal(3 * Step, p.InterleavedDecodeSeconds, 9);
        Assert.Equal(p.SlotWaitSeconds + p.PrefillSeconds + p.InterleavedDecodeSeconds, p.Seconds, 9);
    }

    [Fact]
    public void With_every_slot_taken_the_request_waits_for_the_row_that_ends_first_or_the_kth_behind_waiting_ones()
    {
        int[] remaining = [10, 200, 300, 900];
        Assert.Equal(10 * Step, CapacityModel.Predict(Report(running: 4, remaining: remaining), 1).SlotWaitSeconds, 9);
        Assert.Equal(200 * Step, CapacityModel.Predict(Report(running: 4, waiting: 1, remaining: remaining), 1).SlotWaitSeconds, 9);
        Assert.Equal(900 * Step, CapacityModel.Predict(Report(running: 4, waiting: 3, remaining: remaining), 1).SlotWaitSeconds, 9);
        // Beyond the running rows each further round of slots is assumed to last as long as the longest row now.
        Assert.Equal(2 * 900 * Step, CapacityModel.Predict(Report(running: 4, waiting: 4, remaining: remaining), 1).SlotWaitSeconds, 9);
        Assert.Equal(3 * 900 * Step, CapacityModel.Predict(Report(running: 4, waiting: 8, remaining: remaining), 1).SlotWaitSeconds, 9);
    }

    [Fact]
    public void Free_slots_absorb_waiting_requests_before_anyone_waits_for_a_row()
    {
        Assert.Equal(0, CapacityModel.Predict(Report(slots: 4, running: 2, waiting: 1, remaining: [100, 100]), 1).SlotWaitSeconds);
        Assert.Equal(100 * Step, CapacityModel.Predict(Report(slots: 4, running: 2, waiting: 2, remaining: [100, 100]), 1).SlotWaitSeconds, 9);
    }

    [Fact]
    public void A_decoder_that_measured_nothing_yet_is_predicted_free()
    {
        Assert.Equal(0, CapacityModel.Predict(Report(running: 4, waiting: 3, waitingTokens: 5000, remaining: [10, 20, 30, 40], step: 0, perToken: 0), 1000).Seconds);
    }

    [Fact]
    public void With_a_fitted_pass_line_each_prefill_step_pays_the_fixed_cost_and_the_decode_rows_once_and_the_prompt_per_token()
    {
        // A pass: 5 ms + 0.1 ms a token. 2 running rows and 1 waiting (100 positions, a fifth of which a parked prefix
        // gives): 80 + 80 positions at 64 a step = 3 steps of 5 ms + 3 rows x 0.1 ms, 160 x 0.1 ms, and half the step in flight.
        var report = Report(running: 2, waiting: 1, waitingTokens: 100, remaining: [50, 80], step: 0.008, chunk: 64) with
        {
            StepFixedSeconds = 0.005, StepSecondsPerRow = 0.0001, StepSecondsPerPrefillToken = 0.0001, PrefixReuseFraction = 0.2,
        };
        var p = CapacityModel.Predict(report, 100);
        Assert.Equal(0, p.SlotWaitSeconds);
        Assert.Equal(160 * 0.0001, p.PrefillSeconds, 9);
        Assert.Equal(3 * (0.005 + 3 * 0.0001) + 0.008 / 2, p.InterleavedDecodeSeconds, 9);

        // Idle: no step in flight, one pass of the prompt.
        var idle = CapacityModel.Predict(Report(step: 0.008, chunk: 64) with { StepFixedSeconds = 0.005, StepSecondsPerRow = 0.0001, StepSecondsPerPrefillToken = 0.0001 }, 50);
        Assert.Equal(0.005 + 50 * 0.0001, idle.Seconds, 9);
    }

    [Fact]
    public void With_a_fitted_pass_line_the_prompts_ahead_prefill_during_the_slot_wait()
    {
        // Full (4 slots), 2 waiting of 100 positions each: the 3rd row to end frees our slot after 30 steps, in which
        // the 200 positions ahead were prefilled (64 a step); only our own prompt is left.
        var report = Report(running: 4, waiting: 2, waitingTokens: 200, remaining: [10, 20, 30, 40], step: 0.01, chunk: 64) with
        {
            StepFixedSeconds = 0.005, StepSecondsPerRow = 0.0001, StepSecondsPerPrefillToken = 0.0001,
        };
        var p = CapacityModel.Predict(report, 60);
        Assert.Equal(30 * 0.01, p.SlotWaitSeconds, 9);
        Assert.Equal(60 * 0.0001, p.PrefillSeconds, 9);
        Assert.Equal(0.005 + 4 * 0.0001 + 0.01 / 2, p.InterleavedDecodeSeconds, 9);
    }

    [Fact]
    public void A_step_measured_at_fewer_rows_than_run_now_counts_as_at_least_the_fitted_pass_at_the_rows_now()
    {
        // A report of a decoder that last stepped at 1.4 ms (a row or two), which this router's own requests have filled
        // since: 8 slots running, 4 waiting. The pass is 1 ms + 1 ms a row, so a step at 8 rows is 9 ms and the 5th row
        // to end (50 tokens) frees the slot after 0.45 s, not 0.07 s.
        var report = Report(slots: 8, running: 8, waiting: 4, remaining: [10, 20, 30, 40, 50, 60, 70, 80], step: 0.0014) with
        {
            StepFixedSeconds = 0.001, StepSecondsPerRow = 0.001, StepSecondsPerPrefillToken = 0.0001,
        };
        Assert.Equal(0.009, CapacityModel.StepSeconds(report, 8), 9);
        Assert.Equal(50 * 0.009, CapacityModel.Predict(report, 1).SlotWaitSeconds, 9);
        // A measured step above the fitted pass stands: it saw what the line does not (a busy neighbour, sampling).
        Assert.Equal(0.02, CapacityModel.StepSeconds(report with { DecodeStepSeconds = 0.02 }, 8), 9);
        Assert.Equal(50 * 0.02, CapacityModel.Predict(report with { DecodeStepSeconds = 0.02 }, 1).SlotWaitSeconds, 9);
    }

    [Fact]
    public void The_engine_row_limit_counts_as_the_decoder_s_slots()
    {
        // 8 slots, 3 running, the engine lets the tenants over their share run 3 rows: the next one waits for a row.
        var report = Report(slots: 8, running: 3, remaining: [5, 9, 12]) with { RowLimit = 3 };
        Assert.Equal(3, CapacityModel.Rows(report));
        Assert.Equal(5 * Step, CapacityModel.Predict(report, 1).SlotWaitSeconds, 9);
        Assert.Equal(8, CapacityModel.Rows(report with { RowLimit = 0 }));
        Assert.Equal(0, CapacityModel.Predict(report with { RowLimit = 0 }, 1).SlotWaitSeconds);
    }

    [Fact]
    public void Retry_after_is_the_excess_over_the_target_rounded_up_within_1_s_and_the_maximum()
    {
        Assert.Equal(4, CapacityModel.RetryAfterSeconds(5.2, 2, 30));
        Assert.Equal(1, CapacityModel.RetryAfterSeconds(2.1, 2, 30));
        Assert.Equal(30, CapacityModel.RetryAfterSeconds(500, 2, 30));
    }

    [Fact]
    public void Prompt_positions_count_image_rows_in_place_of_their_placeholder_and_resumed_tokens()
    {
        var request = new GenerationRequest
        {
            RequestId = "r",
            Tenant = "t",
            PromptIds = new int[20],
            Images = [new ImageRef("a", 128), new ImageRef("b", 64)],
            ResumeTokenIds = new int[5],
        };
        Assert.Equal(20 - 2 + 128 + 64 + 5, CapacityModel.PromptPositions(request));
    }

    [Fact]
    public void The_router_refuses_with_retry_after_when_every_decoder_is_over_the_target_and_not_when_admission_is_off()
    {
        var options = new ClusterChatOptions { Admission = { TtftTargetSeconds = 2, MaxRetryAfterSeconds = 30 } };
        // Full, rows 300 and 500 tokens from their end: 6 s and 10 s to the first free slot.
        DecoderLoadReport[] full = [Report("a", slots: 1, running: 1, remaining: [300]), Report("b", slots: 1, running: 1, remaining: [500])];
        var e = Assert.Throws<ClusterRejectedException>(() => ClusterChat.Choose(full, "conversation", 10, options));
        Assert.Equal(RejectionKind.OverCapacity, e.Kind);
        // The wait for the slot, 6 s, less the target (the request's own prefill is not counted).
        Assert.Equal(Math.Ceiling(300 * Step - 2), e.RetryAfterSeconds);

        var off = new ClusterChatOptions { Admission = { TtftTargetSeconds = 0 } };
        Assert.NotNull(ClusterChat.Choose(full, "conversation", 10, off));
        // A generation being moved (no admission: promptTokens < 0) is never refused.
        Assert.NotNull(ClusterChat.Choose(full, "conversation", -1, options));
    }

    [Fact]
    public void The_request_s_own_prefill_is_part_of_its_TTFT_but_not_of_its_wait()
    {
        // A pass: 5 ms + 0.1 ms a row + 0.1 ms a position, 64 a step. 2 rows running, 100 positions waiting ahead: they
        // take 2 passes; a 600-position prompt behind them 10 more (700 positions, 11 chunks with the ahead ones' 2
        // sharing their second with it), plus half the step in flight.
        var report = Report(running: 2, waiting: 1, waitingTokens: 100, remaining: [50, 80], step: 0.008, chunk: 64) with
        {
            StepFixedSeconds = 0.005, StepSecondsPerRow = 0.0001, StepSecondsPerPrefillToken = 0.0001,
        };
        double pass = 0.005 + 3 * 0.0001;
        var p = CapacityModel.Predict(report, 600);
        Assert.Equal(700 * 0.0001 + 11 * pass + 0.008 / 2, p.Seconds, 9);
        Assert.Equal(600 * 0.0001 + 9 * pass, p.OwnPrefillSeconds, 9);
        Assert.Equal(100 * 0.0001 + 2 * pass + 0.008 / 2, p.WaitSeconds, 9);
        // On an idle decoder everything is the request's own: nothing to wait for.
        var idle = CapacityModel.Predict(Report(step: 0.008, chunk: 64) with { StepFixedSeconds = 0.005, StepSecondsPerRow = 0.0001, StepSecondsPerPrefillToken = 0.0001 }, 600);
        Assert.Equal(0, idle.WaitSeconds, 9);
        // Without a fitted pass (per-position costs, whole decode steps per chunk) alike.
        var perPosition = CapacityModel.Predict(Report(running: 2, waiting: 1, waitingTokens: 100, remaining: [50, 80], chunk: 64), 600);
        Assert.Equal(600 * PerToken + (11 - 2) * Step, perPosition.OwnPrefillSeconds, 9);
        Assert.Equal(100 * PerToken + 2 * Step, perPosition.WaitSeconds, 9);
    }

    [Fact]
    public void A_long_prompt_on_a_busy_decoder_is_refused_for_its_wait_not_for_its_length_unless_its_own_prefill_counts()
    {
        // 1 ms a position: a 600-position image prompt takes 0.6 s of its own; ahead of it only half a 20 ms step.
        DecoderLoadReport[] busy = [Report(running: 2, remaining: [50, 80])];
        var queue = new ClusterChatOptions { Admission = { TtftTargetSeconds = 0.1 } };
        Assert.NotNull(ClusterChat.Choose(busy, null, 600, queue));
        var whole = new ClusterChatOptions { Admission = { TtftTargetSeconds = 0.1, CountOwnPrefill = true } };
        var e = Assert.Throws<ClusterRejectedException>(() => ClusterChat.Choose(busy, null, 600, whole));
        Assert.Contains("time to first token", e.Message, StringComparison.Ordinal);
        // A queue over the target refuses it either way: 2 waiting with 400 positions ahead are 0.4 s of wait.
        DecoderLoadReport[] queued = [Report(running: 2, waiting: 2, waitingTokens: 400, remaining: [50, 80])];
        var refused = Assert.Throws<ClusterRejectedException>(() => ClusterChat.Choose(queued, null, 600, queue));
        Assert.Contains("not counted", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Affinity_yields_to_a_decoder_under_the_target_while_the_affine_one_is_over_it()
    {
        var options = new ClusterChatOptions { Admission = { TtftTargetSeconds = 2 } };
        string conversation = "conversation-7";
        string affine = ClusterChat.AffineDecoder(["a", "b"], conversation);
        string other = affine == "a" ? "b" : "a";
        DecoderLoadReport[] bothFree = [Report(affine, running: 1, remaining: [500]), Report(other)];
        Assert.Equal(affine, ClusterChat.Choose(bothFree, conversation, 10, options)!.DecoderKey);

        DecoderLoadReport[] affineFull = [Report(affine, slots: 1, running: 1, remaining: [500]), Report(other)];
        Assert.Equal(other, ClusterChat.Choose(affineFull, conversation, 10, options)!.DecoderKey);
    }
}
