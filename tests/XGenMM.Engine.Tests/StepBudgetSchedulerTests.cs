using System.Diagnostics;
using XGenMM.Engine.Decoding;

namespace XGenMM.Engine.Tests;

/// <summary>The per-step token budget of mixed steps (<see cref="StepPolicy.Mixed"/>), on the scheduler alone: decode
/// rows first, prompt chunks in what they leave of <see cref="DecodeEngineOptions.MaxTokensPerStep"/>.</summary>
public sealed class StepBudgetSchedulerTests
{
    private const int Token = 7;
    private static readonly RequestValidator Validator = new(vocabSize: 1000, embeddingDim: 8, contextLength: 4096);

    private static Scheduler NewScheduler(int slots, Action<DecodeEngineOptions> configure, Func<int, int, double>? passSeconds = null)
    {
        var options = new DecodeEngineOptions { MaxSlots = slots, PrefillChunkTokens = 512, PrefixReuse = false };
        configure(options);
        options.Validate();
        return new Scheduler(slots, options, passSeconds);
    }

    /// <summary>Pass costs shaped like the 2-core CPU's: 2 ms a pass, 0.5 ms a decode row, 0.25 ms a prompt position.</summary>
    private static double CpuLikePass(int rows, int positions) => 0.002 + 0.0005 * rows + 0.00025 * positions;

    private static Sequence Submit(Scheduler scheduler, string id, int promptLength, int maxNewTokens, int first = 1)
    {
        var s = Validator.Prepare(new DecodeRequest
        {
            RequestId = id,
            PromptIds = Enumerable.Range(first, promptLength).Select(i => i % 900 + 1).ToArray(),
            MaxNewTokens = maxNewTokens,
        });
        scheduler.Reserve(s);
        scheduler.Enqueue(s);
        return s;
    }

    /// <summary>Plans a step and plays the model's part: every sampled token is <see cref="Token"/>.</summary>
    private static StepPlan Step(Scheduler scheduler)
    {
        var plan = scheduler.Schedule(Stopwatch.GetTimestamp(), false);
        var sampled = plan.Prefills.Where(p => p.Completes).Select(p => p.Sequence).Concat(plan.Decodes.Select(d => d.Sequence));
        foreach (var s in sampled.ToList())
        {
            s.Completion.Add(Token);
            s.PendingToken = Token;
            if (s.Completion.Count >= s.Request.MaxNewTokens) scheduler.Release(s, DecodeFinishReason.Length);
        }
        return plan;
    }

    [Fact]
    public void A_new_prompt_is_prefilled_in_what_the_decode_rows_leave_of_the_step_budget_while_every_stream_decodes_each_step()
    {
        var scheduler = NewScheduler(8, o => o.MaxTokensPerStep = 16);
        var streams = Enumerable.Range(0, 3).Select(i => Submit(scheduler, $"s{i}", 4, maxNewTokens: 100, first: 10 * i)).ToList();
        Assert.Equal(12, Step(scheduler).PrefillTokens);   // 3 prompts of 4: nothing decodes yet
        var prompt = Submit(scheduler, "long", 40, maxNewTokens: 2, first: 300);
        var chunks = new List<(int Start, int Count)>();
        for (int step = 0; step < 10 && prompt.State != Sequence.Phase.Running; step++)
        {
            var plan = Step(scheduler);
            Assert.Equal(streams, plan.Decodes.Select(d => d.Sequence));
            Assert.True(plan.Decodes.Count + plan.PrefillTokens <= 16, $"step of {plan.Decodes.Count} rows + {plan.PrefillTokens} positions");
            chunks.AddRange(plan.Prefills.Select(p => (p.Start, p.Count)));
        }
        // 16 - 3 decode rows = 13 positions a step: 40 = 13 + 13 + 13 + 1.
        Assert.Equal([(0, 13), (13, 13), (26, 13), (39, 1)], chunks);
        Assert.All(streams, s => Assert.Equal(1 + 4, s.Completion.Count));
    }

    [Fact]
    public void Many_decode_rows_still_leave_a_quarter_of_the_budget_to_prompts_and_PrefillChunkTokens_caps_it()
    {
        var scheduler = NewScheduler(16, o => { o.MaxTokensPerStep = 12; o.PrefillChunkTokens = 100; });
        // No decode row waits on a step without decode rows: it prefills a whole PrefillChunkTokens chunk.
        Assert.Equal(100, scheduler.PrefillBudget(0));
        Assert.Equal(11, scheduler.PrefillBudget(1));
        Assert.Equal(4, scheduler.PrefillBudget(8));
        Assert.Equal(3, scheduler.PrefillBudget(10));   // 12 - 10 = 2 is below a quarter of 12
        Assert.Equal(3, scheduler.PrefillBudget(16));

        var capped = NewScheduler(4, o => { o.MaxTokensPerStep = 256; o.PrefillChunkTokens = 20; });
        Assert.Equal(20, capped.PrefillBudget(2));

        // 10 running streams in 16 slots with a budget of 12: a new prompt of 9 still moves 3 positions a step.
        var streams = Enumerable.Range(0, 10).Select(i => Submit(scheduler, $"s{i}", 1, maxNewTokens: 100, first: i)).ToList();
        Step(scheduler);
        Step(scheduler);
        Assert.All(streams, s => Assert.Equal(Sequence.Phase.Running, s.State));
        var prompt = Submit(scheduler, "p", 9, maxNewTokens: 1, first: 500);
        var counts = new List<int>();
        for (int i = 0; i < 3; i++) counts.Add(Step(scheduler).Prefills.Sum(p => p.Count));
        Assert.Equal([3, 3, 3], counts);
        Assert.Equal(Sequence.Phase.Done, prompt.State);
    }

    [Fact]
    public void A_mixed_step_carries_no_more_prompt_positions_than_keep_it_within_MixedStepSlowdown_of_the_decode_only_pass()
    {
        var scheduler = NewScheduler(32, o => { o.MaxTokensPerStep = 64; o.MixedStepSlowdown = 0.8; }, CpuLikePass);
        // 16 rows: a 10 ms decode pass leaves 0.8 x 10 ms = 8 ms, 32 positions (the token budget alone: 64 - 16 = 48).
        Assert.Equal(32, scheduler.PrefillBudget(16));
        // 24 rows: 14 ms -> 11.2 ms, 44 positions, above what the token budget leaves (40).
        Assert.Equal(40, scheduler.PrefillBudget(24));
        // 4 rows: 4 ms -> 12 positions, below a quarter of the budget, which is prefilled regardless.
        Assert.Equal(16, scheduler.PrefillBudget(4));
        // An idle decoder keeps the whole chunk.
        Assert.Equal(512, scheduler.PrefillBudget(0));

        // Off, or not yet fitted (the engine's costs read 0), or positions cheap next to a pass (a GPU): the token budget.
        Assert.Equal(48, NewScheduler(32, o => { o.MaxTokensPerStep = 64; o.MixedStepSlowdown = 0; }, CpuLikePass).PrefillBudget(16));
        Assert.Equal(48, NewScheduler(32, o => o.MaxTokensPerStep = 64, (_, _) => 0).PrefillBudget(16));
        Assert.Equal(48, NewScheduler(32, o => o.MaxTokensPerStep = 64, (rows, positions) => 0.010 + 0.00001 * rows + 0.000001 * positions).PrefillBudget(16));

        // In a plan: 16 streams decoding, a 100-token prompt arrives; each step carries 32 of its positions.
        var streams = Enumerable.Range(0, 16).Select(i => Submit(scheduler, $"s{i}", 1, maxNewTokens: 100, first: i)).ToList();
        Step(scheduler);
        Step(scheduler);
        Assert.All(streams, s => Assert.Equal(Sequence.Phase.Running, s.State));
        Submit(scheduler, "p", 100, maxNewTokens: 1, first: 500);
        var counts = Enumerable.Range(0, 4).Select(_ => Step(scheduler).PrefillTokens).ToList();
        Assert.Equal([32, 32, 32, 4], counts);
    }

    [Fact]
    public void Separate_steps_keep_the_whole_prefill_chunk_budget_whatever_decodes()
    {
        var scheduler = NewScheduler(8, o => { o.StepPolicy = StepPolicy.Separate; o.MaxTokensPerStep = 8; o.PrefillChunkTokens = 30; });
        Assert.Equal(30, scheduler.PrefillBudget(0));
        Assert.Equal(30, scheduler.PrefillBudget(7));
        Submit(scheduler, "a", 2, maxNewTokens: 50);
        Step(scheduler);
        Submit(scheduler, "b", 100, maxNewTokens: 1, first: 200);
        var plan = Step(scheduler);
        Assert.Single(plan.Decodes);
        Assert.Equal(30, plan.PrefillTokens);
    }

    [Theory]
    [InlineData(3)]
    [InlineData(0)]
    [InlineData(-1)]
    public void A_step_budget_below_four_tokens_is_refused(int tokens)
    {
        var options = new DecodeEngineOptions { MaxTokensPerStep = tokens };
        var e = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);
        Assert.Equal(nameof(DecodeEngineOptions.MaxTokensPerStep), e.ParamName);
    }

    [Fact]
    public void An_undefined_step_policy_is_refused()
    {
        var options = new DecodeEngineOptions { StepPolicy = (StepPolicy)7 };
        var e = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);
        Assert.Equal(nameof(DecodeEngineOptions.StepPolicy), e.ParamName);
    }
}
