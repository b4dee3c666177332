using XGenMM.Engine.Decoding;
using XGenMM.Model.Generation;

namespace XGenMM.Engine.Tests;

/// <summary>What the engine reports beyond tokens and text: log probabilities and per-completion statistics.</summary>
public sealed class DecodeEngineOutputTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static DecodeRequest Request(string id, string question, int maxNewTokens, int? topLogprobs = null, SamplingOptions? sampling = null) => new()
    {
        RequestId = id,
        PromptIds = TestModels.Prompt(question),
        MaxNewTokens = maxNewTokens,
        Sampling = sampling ?? SamplingOptions.Greedy,
        StopTokenIds = [],
        TopLogprobs = topLogprobs,
    };

    private static async Task<List<DecodeEvent>> Events(DecodeEngine engine, DecodeRequest request)
    {
        var events = new List<DecodeEvent>();
        await foreach (var e in engine.Submit(request, Ct)) events.Add(e);
        return events;
    }

    [Fact(Timeout = 60_000)]
    public async Task Token_events_carry_logprobs_only_when_asked_and_greedy_picks_the_top_one()
    {
        var tokenizer = TestModels.TinyPipeline.Tokenizer;
        using var engine = TestModels.NewEngine(o => o.PrefixReuse = false);
        var plain = await Events(engine, Request("plain", "Say something.", 10));
        var asked = await Events(engine, Request("asked", "Say something.", 10, topLogprobs: 5));

        Assert.All(plain, e => { Assert.Null(e.Logprob); Assert.Null(e.TopLogprobs); });
        Assert.Equal(plain.Select(e => e.TokenId), asked.Select(e => e.TokenId));
        foreach (var e in asked.Where(e => !e.IsFinal))
        {
            var top = e.TopLogprobs!;
            Assert.Equal(5, top.Count);
            Assert.Equal(e.TokenId, top[0].TokenId);
            Assert.Equal(top[0].Logprob, e.Logprob);
            Assert.True(top.Zip(top.Skip(1)).All(p => p.First.Logprob >= p.Second.Logprob), "most likely first");
            Assert.All(top, t => Assert.InRange(t.Logprob, double.NegativeInfinity, 0));
            Assert.InRange(top.Sum(t => Math.Exp(t.Logprob)), 0, 1 + 1e-9);
            Assert.All(top, t => Assert.Equal(tokenizer.Decode([t.TokenId]), t.Text));
        }
        Assert.Null(asked[^1].Logprob);

        // Just the sampled token's logprob; out of range is refused.
        var none = await Events(engine, Request("zero", "Say something.", 3, topLogprobs: 0));
        Assert.All(none.Where(e => !e.IsFinal), e => { Assert.Empty(e.TopLogprobs!); Assert.NotNull(e.Logprob); });
        var e21 = Assert.Throws<EngineRejectedException>(() => engine.Submit(Request("many", "Hi", 3, topLogprobs: 21)));
        Assert.Equal(RejectionReason.Invalid, e21.Reason);
    }

    [Fact(Timeout = 60_000)]
    public async Task Logprobs_are_of_the_distribution_after_temperature_and_repetition_penalty()
    {
        using var engine = TestModels.NewEngine(o => o.PrefixReuse = false);
        var greedy = (await Events(engine, Request("g", "Write a word.", 1, topLogprobs: 4)))[0];
        var hot = (await Events(engine, Request("t", "Write a word.", 1, topLogprobs: 4,
            sampling: new SamplingOptions { Temperature = 2f, Seed = 1 })))[0];
        var (cold, warm) = (greedy.TopLogprobs!, hot.TopLogprobs!);
        // The same first-position logits: temperature 2 halves every logprob difference and keeps the order.
        Assert.Equal(cold.Select(t => t.TokenId), warm.Select(t => t.TokenId));
        for (int k = 1; k < 4; k++)
            Assert.Equal((cold[0].Logprob - cold[k].Logprob) / 2, warm[0].Logprob - warm[k].Logprob, 1e-6);
        Assert.NotNull(hot.Logprob);
        foreach (var t in warm)
            if (t.TokenId == hot.TokenId) Assert.Equal(t.Logprob, hot.Logprob);

        // With a repetition penalty the distribution is the penalised one: greedy still picks its top token.
        var penalised = await Events(engine, Request("p", "Write a word.", 12, topLogprobs: 2,
            sampling: new SamplingOptions { RepetitionPenalty = 5f }));
        Assert.All(penalised.Where(e => !e.IsFinal), e => Assert.Equal(e.TokenId, e.TopLogprobs![0].TokenId));
    }

    [Fact(Timeout = 60_000)]
    public async Task Completions_report_prompt_and_generated_tokens_and_queue_prefill_and_decode_time()
    {
        using var engine = TestModels.NewEngine(o => o.PrefixReuse = false);
        var completions = new System.Collections.Concurrent.ConcurrentQueue<DecodeCompletion>();
        engine.Completed += completions.Enqueue;
        var request = Request("s", "Tell me more.", 12);
        var full = await TestModels.Run(engine, request, Ct);
        var resumed = await TestModels.Run(engine, request with { RequestId = "r", ResumeTokenIds = full.Tokens.Take(4).ToList() }, Ct);

        Assert.True(SpinWait.SpinUntil(() => completions.Count == 2, 5000));
        var (first, second) = (completions.First(c => c.RequestId == "s"), completions.First(c => c.RequestId == "r"));
        Assert.Equal(request.PromptIds.Count, first.PromptTokens);
        Assert.Equal(12, first.GeneratedTokens);
        Assert.Equal(request.PromptIds.Count + 4, second.PromptTokens);
        Assert.Equal(8, second.GeneratedTokens);
        foreach (var c in new[] { first, second })
        {
            Assert.True(c.PrefillSeconds > 0 && c.DecodeSeconds > 0, $"prefill {c.PrefillSeconds} s, decode {c.DecodeSeconds} s");
            Assert.InRange(c.QueueSeconds, 0, c.Timings.TimeToFirstTokenSeconds);
            Assert.InRange(c.QueueSeconds + c.PrefillSeconds + c.DecodeSeconds, 0, c.Timings.EndToEndSeconds + 1e-9);
            Assert.Equal(c.Timings.QueueSeconds, c.QueueSeconds);
        }
        Assert.Equal(0, engine.GetLoad().PreemptionsTotal);
    }
}
