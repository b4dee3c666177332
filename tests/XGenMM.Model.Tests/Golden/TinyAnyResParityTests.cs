using TorchSharp;
using XGenMM.Model.Checkpoints;
using XGenMM.Model.Configuration;
using XGenMM.Model.Generation;
using XGenMM.Model.Language;
using static TorchSharp.torch;

namespace XGenMM.Model.Tests.Golden;

/// <summary>Shared golden checkpoint + expected tensors (loaded once per test class).</summary>
public sealed class TinyAnyResFixture : IDisposable
{
    public XGenMMModel Model { get; }
    public SafeTensorsFile Expected { get; }
    public string Directory { get; } = Fixtures.GoldenTinyAnyRes;

    public TinyAnyResFixture()
    {
        var config = XGenMMConfig.FromDirectory(Directory);
        Model = new XGenMMModel(config);
        CheckpointLoader.Load(Model, Directory);
        Model.eval();
        Expected = new SafeTensorsFile(Path.Combine(Directory, "expected.safetensors"));
    }

    public Tensor Load(string name) => Expected.LoadTensor(name);

    /// <summary>(u8 / 255 - 0.5) / 0.5 in float32 with true divisions, as torchvision's ToTensor + Normalize.</summary>
    public Tensor Pixels(int image)
    {
        using var u8 = Load($"image{image}.pixel_values_u8");
        return u8.to_type(ScalarType.Float32).div_(255f).sub_(0.5f).div_(0.5f);
    }

    public Tensor VisionTokens(int image)
    {
        using var scope = torch.NewDisposeScope();
        var features = Model.EncodeVision(Pixels(image));
        var tokens = Model.ResampleImage(features, Load($"image{image}.resampler_group_token_index"), Load($"image{image}.resampler_attention_mask"));
        return tokens.MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        Expected.Dispose();
        Model.Dispose();
    }
}

public sealed class TinyAnyResParityTests(TinyAnyResFixture golden) : IClassFixture<TinyAnyResFixture>
{
    private const double HiddenAtol = 1e-5, HiddenRtol = 1e-4, LogitsAtol = 1e-4;

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void SigLIP_last_hidden_state_matches(int image)
    {
        using var scope = torch.NewDisposeScope();
        var actual = golden.Model.EncodeVision(golden.Pixels(image));
        TensorAssert.Close(golden.Load($"image{image}.siglip_last_hidden_state"), actual, HiddenAtol, HiddenRtol, "siglip");
    }

    [Fact]
    public void SigLIP_hidden_states_of_every_layer_match_for_view0()
    {
        using var scope = torch.NewDisposeScope();
        var hidden = new List<Tensor>();
        using (torch.no_grad()) golden.Model.VisionEncoder.ForwardWithHiddenStates(golden.Pixels(0).narrow(0, 0, 1), hidden);
        var actual = torch.cat(hidden, 0);
        TensorAssert.Close(golden.Load("image0.view0.siglip_hidden_states"), actual, HiddenAtol, HiddenRtol, "siglip hidden states");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void Resampler_output_matches(int image)
    {
        using var scope = torch.NewDisposeScope();
        var tokens = golden.VisionTokens(image);
        TensorAssert.Close(golden.Load($"image{image}.vision_tokens"), tokens, HiddenAtol, HiddenRtol, "vision tokens");
        var expected = golden.Load($"image{image}.resampler_output");
        TensorAssert.Close(expected, tokens.view(expected.shape), HiddenAtol, HiddenRtol, "resampler output");
    }

    private SplicedBatch Splice()
    {
        var ids = golden.Load("input_ids");
        var prompt = ids[0].data<long>().Select(x => (int)x).ToArray();
        return MultimodalInputs.Build(golden.Model, [prompt], [[golden.VisionTokens(0), golden.VisionTokens(1)]]);
    }

    [Fact]
    public void Splice_matches_embeddings_mask_and_positions()
    {
        using var scope = torch.NewDisposeScope();
        using var batch = Splice();
        TensorAssert.Close(golden.Load("inputs_embeds"), batch.InputsEmbeds, HiddenAtol, HiddenRtol, "inputs_embeds");
        Assert.Equal(golden.Load("attention_mask").data<long>().ToArray(), batch.AttentionMask.data<long>().ToArray());
        Assert.Equal(golden.Load("position_ids").data<long>().ToArray(), batch.PositionIds.data<long>().ToArray());
    }

    [Fact]
    public void Decoder_hidden_states_and_prompt_logits_match()
    {
        using var scope = torch.NewDisposeScope();
        using var batch = Splice();
        var hidden = new List<Tensor>();
        Tensor output;
        using (torch.no_grad())
        {
            var bias = AttentionBias.Build(batch.AttentionMask, batch.InputsEmbeds.shape[1], golden.Model.Config.Text.SlidingWindow, ScalarType.Float32);
            output = golden.Model.LanguageModel.Model.Forward(batch.InputsEmbeds, batch.PositionIds, bias, cache: null, hidden);
        }
        TensorAssert.Close(golden.Load("text_hidden_states"), torch.stack(hidden, 0), HiddenAtol, HiddenRtol, "text hidden states");
        var logits = golden.Model.Logits(output);
        var last4 = logits.narrow(1, logits.shape[1] - 4, 4);
        TensorAssert.Close(golden.Load("logits_last4"), last4, LogitsAtol, 0, "logits_last4");
        TensorAssert.Close(golden.Load("logits_max"), logits.max(-1).values, LogitsAtol, 0, "logits_max");
        TensorAssert.Close(golden.Load("logits_logsumexp"), logits.logsumexp(-1), LogitsAtol, 0, "logits_logsumexp");
        Assert.Equal(golden.Load("logits_argmax").data<long>().ToArray(), logits.argmax(-1).data<long>().ToArray());
    }
}

public sealed class TinyAnyResGenerationTests(TinyAnyResFixture golden) : IClassFixture<TinyAnyResFixture>
{
    private int[] Prompt() => golden.Load("input_ids")[0].data<long>().Select(x => (int)x).ToArray();

    private SplicedBatch Splice(params int[][] prompts) =>
        MultimodalInputs.Build(golden.Model, prompts,
            prompts.Select(p => (IReadOnlyList<Tensor>)Enumerable.Range(0, p.Count(id => id == XGenMM.Model.Tokenization.SpecialTokens.Image)).Select(golden.VisionTokens).ToList()).ToList());

    [Fact]
    public void Greedy_continuation_with_KV_cache_matches_ids_and_top5_logits()
    {
        using var scope = torch.NewDisposeScope();
        var prompt = Prompt();
        using var batch = Splice(prompt);
        var options = new GenerationOptions { MaxNewTokens = 8, StopTokenIds = [32000] };
        var stepLogits = new List<Tensor>();
        var ids = new BatchGenerator(golden.Model).Generate(batch, [prompt], [options], l => stepLogits.Add(l.clone().DetachFromDisposeScope()))
            .Select(s => (long)s.Tokens[0]).ToArray();
        Assert.Equal(golden.Load("generated_ids")[0].data<long>().ToArray(), ids);

        var top5Ids = golden.Load("greedy_top5_ids")[0];
        var top5Logits = golden.Load("greedy_top5_logits")[0];
        for (int step = 0; step < stepLogits.Count; step++)
        {
            var top = stepLogits[step][0].topk(5);
            Assert.Equal(top5Ids[step].data<long>().ToArray(), top.indexes.data<long>().ToArray());
            TensorAssert.Close(top5Logits[step], top.values, 1e-4, 0, $"top5 logits at step {step}");
        }
    }

    [Fact]
    public void Decoding_with_the_KV_cache_equals_a_full_forward_pass()
    {
        using var scope = torch.NewDisposeScope();
        var prompt = Prompt();
        using var batch = Splice(prompt);
        var stepLogits = new List<Tensor>();
        var generated = new BatchGenerator(golden.Model).Generate(batch, [prompt], [new GenerationOptions { MaxNewTokens = 6, StopTokenIds = [] }],
            l => stepLogits.Add(l.clone().DetachFromDisposeScope())).Select(s => s.Tokens[0]).ToArray();

        // Full recompute: prompt + generated tokens in one pass, no cache.
        var full = prompt.Concat(generated.Take(generated.Length - 1)).ToArray();
        using var fullBatch = Splice(full);
        using var noGrad = torch.no_grad();
        var bias = AttentionBias.Build(fullBatch.AttentionMask, fullBatch.InputsEmbeds.shape[1], golden.Model.Config.Text.SlidingWindow, ScalarType.Float32);
        var hidden = golden.Model.LanguageModel.Model.Forward(fullBatch.InputsEmbeds, fullBatch.PositionIds, bias, cache: null);
        var logits = golden.Model.Logits(hidden)[0];
        long s0 = batch.InputsEmbeds.shape[1];
        for (int step = 0; step < generated.Length; step++)
            TensorAssert.Close(logits[s0 - 1 + step], stepLogits[step][0], 1e-4, 0, $"step {step}");
    }

    [Fact]
    public void A_left_padded_batch_equals_running_each_prompt_alone()
    {
        using var scope = torch.NewDisposeScope();
        var prompt = Prompt();
        // A second, shorter prompt: the same text with only the first image (drop the second <image>).
        int second = Array.LastIndexOf(prompt, XGenMM.Model.Tokenization.SpecialTokens.Image);
        var shorter = prompt.Where((_, i) => i != second).Take(40).ToArray();
        var options = new GenerationOptions { MaxNewTokens = 5, StopTokenIds = [] };

        (long[] Ids, List<Tensor> Logits) Run(params int[][] prompts)
        {
            using var batch = Splice(prompts);
            var logits = new List<Tensor>();
            var steps = new BatchGenerator(golden.Model).Generate(batch, prompts, prompts.Select(_ => options).ToList(), l => logits.Add(l.clone().DetachFromDisposeScope())).ToList();
            return (steps.SelectMany(s => s.Tokens.Select(t => (long)t)).ToArray(), logits);
        }

        var (batchIds, batchLogits) = Run(prompt, shorter);
        var (aloneA, logitsA) = Run(prompt);
        var (aloneB, logitsB) = Run(shorter);
        Assert.Equal(aloneA, batchIds.Where((_, i) => i % 2 == 0).ToArray());
        Assert.Equal(aloneB, batchIds.Where((_, i) => i % 2 == 1).ToArray());
        for (int step = 0; step < 5; step++)
        {
            TensorAssert.Close(logitsA[step][0], batchLogits[step][0], 1e-4, 0, $"row 0 step {step}");
            TensorAssert.Close(logitsB[step][0], batchLogits[step][1], 1e-4, 0, $"row 1 step {step}");
        }
    }
}
