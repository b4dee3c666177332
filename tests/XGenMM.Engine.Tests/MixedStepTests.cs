using System.Diagnostics;
using XGenMM.Engine.Decoding;
using XGenMM.Engine.Vision;
using XGenMM.Model;
using XGenMM.Model.Generation;

namespace XGenMM.Engine.Tests;

/// <summary>
/// Mixed steps (<see cref="StepPolicy.Mixed"/>: decode rows and prompt chunks in one forward pass) against separate
/// passes (a pass per prefill chunk, then a decode pass), on the tiny golden checkpoint: the same logits within float
/// tolerance, step by step, and the same greedy completions through the whole engine.
/// </summary>
public sealed class MixedStepTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Float32 logits of the same rows computed in differently shaped mat-muls (one packed [1, N] pass vs
    /// several) differ by rounding only.</summary>
    private const float Tolerance = 1e-3f;

    [Theory(Timeout = 120_000)]
    [InlineData(false)]
    [InlineData(true)]
    public void A_mixed_pass_gives_the_logits_of_separate_prefill_and_decode_passes_at_every_step(bool cpuStep)
    {
        var model = TestModels.TinyPipeline.Model;
        // With cpuStep the mixed runner runs a float32-packed copy of the model in CpuDecoderStep: C# norms, RoPE,
        // attention over the slot cache and gating between the packed products, against libtorch's separate passes.
        var mixedModel = cpuStep ? TestModels.TinyPackedPipeline.Model : model;
        var validator = new RequestValidator(model.Config.Text.VocabSize, model.Config.Text.HiddenSize, 512);
        // The same budget under both policies, so that both schedulers plan the same chunks and rows; a chunk of 7
        // positions splits prompts across steps (chunks that start after a cached prefix) and runs beside decode rows.
        DecodeEngineOptions Options(StepPolicy policy) => new() { MaxSlots = 6, PrefillChunkTokens = 7, MaxTokensPerStep = 1000, PrefixReuse = false, StepPolicy = policy };
        var separate = new Scheduler(6, Options(StepPolicy.Separate));
        var mixed = new Scheduler(6, Options(StepPolicy.Mixed));
        using var separateRunner = new ModelRunner(model, 6, 512);
        using var mixedRunner = new ModelRunner(mixedModel, 6, 512, cpuStep);
        Assert.Equal(cpuStep, mixedRunner.UsesCpuStep);

        var prompts = new[] { "Hi", "Describe the scene in detail, please.", "Count the objects.", "Why is the sky blue today?" };
        int submitted = 0, steps = 0, mixedSteps = 0, compared = 0;
        var pairs = new List<(Sequence Separate, Sequence Mixed)>();
        while (steps < 200 && (submitted < prompts.Length || pairs.Any(p => p.Separate.State != Sequence.Phase.Done)))
        {
            // A new request every third step: later ones arrive while earlier ones decode.
            if (steps % 3 == 0 && submitted < prompts.Length)
            {
                var request = new DecodeRequest
                {
                    RequestId = $"r{submitted}",
                    PromptIds = TestModels.Prompt(prompts[submitted]),
                    MaxNewTokens = 6 + 3 * submitted,
                    StopTokenIds = [],
                };
                var pair = (validator.Prepare(request), validator.Prepare(request));
                foreach (var (scheduler, s) in new[] { (separate, pair.Item1), (mixed, pair.Item2) })
                {
                    scheduler.Reserve(s);
                    scheduler.Enqueue(s);
                }
                pairs.Add(pair);
                submitted++;
            }
            long now = Stopwatch.GetTimestamp();
            var a = separate.Schedule(now, false);
            var b = mixed.Schedule(now, false);
            Assert.Equal(a.Prefills.Select(p => (p.Slot, p.Start, p.Count)), b.Prefills.Select(p => (p.Slot, p.Start, p.Count)));
            Assert.Equal(a.Decodes.Select(d => (d.Slot, d.Position)), b.Decodes.Select(d => (d.Slot, d.Position)));
            foreach (var s in a.Admitted) separateRunner.Admit(s);
            foreach (var s in b.Admitted) mixedRunner.Admit(s);
            if (b.Prefills.Count > 0 && b.Decodes.Count > 0) mixedSteps++;

            // Separate passes: the sampled rows in the order the mixed pass returns them (decode rows, then completions).
            var expected = new List<(Sequence Sequence, float[] Logits)>();
            var completions = new List<(Sequence, float[])>();
            foreach (var chunk in a.Prefills)
                if (separateRunner.Prefill(chunk) is { } logits) completions.Add((chunk.Sequence, logits));
            if (a.Decodes.Count > 0)
            {
                var (logits, vocab) = separateRunner.Decode(a.Decodes, a.DecodeWidth);
                expected.AddRange(a.Decodes.Select(d => (d.Sequence, logits.AsSpan(d.Slot * vocab, vocab).ToArray())));
            }
            expected.AddRange(completions);

            var (mixedLogits, mixedVocab) = mixedRunner.Step(b.Decodes, b.DecodeWidth, b.Prefills);
            Assert.Equal(expected.Count * mixedVocab, mixedLogits.Count);
            var sampled = b.Decodes.Select(d => d.Sequence).Concat(b.Prefills.Where(p => p.Completes).Select(p => p.Sequence)).ToList();
            for (int row = 0; row < expected.Count; row++)
            {
                var want = expected[row].Logits;
                var got = mixedLogits.AsSpan(row * mixedVocab, mixedVocab);
                float worst = 0;
                for (int i = 0; i < want.Length; i++) worst = Math.Max(worst, Math.Abs(want[i] - got[i]));
                Assert.True(worst <= Tolerance, $"step {steps}, row {row}: logits differ by {worst}");
                int token = ArgMax(want);
                Assert.Equal(token, ArgMax(got));
                compared++;
                Feed(separate, expected[row].Sequence, token);
                Feed(mixed, sampled[row], token);
            }
            steps++;
        }
        Assert.All(pairs, p => Assert.Equal(Sequence.Phase.Done, p.Mixed.State));
        Assert.True(mixedSteps >= 3, $"only {mixedSteps} steps had both prefill chunks and decode rows");
        Assert.Equal(pairs.Sum(p => p.Separate.Request.MaxNewTokens), compared);
    }

    [Fact(Timeout = 180_000)]
    public async Task Greedy_completions_of_staggered_requests_are_the_same_with_mixed_and_separate_steps()
    {
        using var vision = new VisionEngine(TestModels.TinyPipeline.Model, new VisionEngineOptions());
        var image = (await vision.EncodeAsync(TestModels.CocoJpeg, "t", Ct)).Tokens;
        var requests = Enumerable.Range(0, 12).Select(i =>
        {
            bool withImage = i % 5 == 0;
            return new DecodeRequest
            {
                RequestId = $"r{i}",
                PromptIds = TestModels.Prompt($"Question number {i}: what is shown" + new string('?', i % 4), withImage ? 1 : 0),
                Images = withImage ? [image] : [],
                MaxNewTokens = 5 + (i * 7) % 17,
                Sampling = SamplingOptions.Greedy,
                StopTokenIds = [],
            };
        }).ToList();

        async Task<List<int>[]> RunAll(StepPolicy policy)
        {
            using var engine = TestModels.NewEngine(o => { o.MaxSlots = 8; o.StepPolicy = policy; o.MaxTokensPerStep = 24; o.PrefillChunkTokens = 24; o.PrefixReuse = false; });
            var runs = new List<Task<(List<int> Tokens, DecodeEvent Final, string Text)>>();
            foreach (var r in requests)
            {
                runs.Add(TestModels.Run(engine, r, Ct));
                await Task.Delay(15, Ct); // arrivals while others prefill and decode
            }
            return (await Task.WhenAll(runs)).Select(r => r.Tokens).ToArray();
        }

        var separate = await RunAll(StepPolicy.Separate);
        var mixed = await RunAll(StepPolicy.Mixed);
        for (int i = 0; i < requests.Count; i++)
        {
            Assert.Equal(requests[i].MaxNewTokens, mixed[i].Count);
            Assert.Equal(separate[i], mixed[i]);
        }

        // The same requests on the float32-packed model: CpuDecoderStep against libtorch's operators over the same
        // packed weights, through the whole engine (images, chunked prompts, slots reused).
        async Task<List<int>[]> RunPacked(XGenMMPipeline pipeline, bool cpuStep)
        {
            using var engine = new DecodeEngine(pipeline.Model, pipeline.Tokenizer, new DecodeEngineOptions
            {
                MaxSlots = 8, MaxSequenceLength = 1024, KvCacheBytes = 1L << 30, MaxTokensPerStep = 24, PrefillChunkTokens = 24, PrefixReuse = false, CpuStep = cpuStep,
            });
            var runs = new List<Task<(List<int> Tokens, DecodeEvent Final, string Text)>>();
            foreach (var r in requests)
            {
                runs.Add(TestModels.Run(engine, r, Ct));
                await Task.Delay(15, Ct);
            }
            return (await Task.WhenAll(runs)).Select(r => r.Tokens).ToArray();
        }
        var torchOps = await RunPacked(TestModels.TinyPackedPipeline, false);
        var cpuSteps = await RunPacked(TestModels.TinyPackedPipeline, true);
        for (int i = 0; i < requests.Count; i++) Assert.Equal(torchOps[i], cpuSteps[i]);
        Assert.Equal(separate, cpuSteps);
        // int8 weights: both paths run the same integer products; only the C# and libtorch arithmetic around them differ.
        var int8Ops = await RunPacked(TestModels.TinyInt8Pipeline, false);
        var int8Steps = await RunPacked(TestModels.TinyInt8Pipeline, true);
        for (int i = 0; i < requests.Count; i++) Assert.Equal(int8Ops[i], int8Steps[i]);
    }

    private static void Feed(Scheduler scheduler, Sequence s, int token)
    {
        s.Completion.Add(token);
        s.PendingToken = token;
        if (s.Completion.Count >= s.Request.MaxNewTokens) scheduler.Release(s, DecodeFinishReason.Length);
    }

    private static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }
}
