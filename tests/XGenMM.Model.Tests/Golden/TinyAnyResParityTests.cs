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
