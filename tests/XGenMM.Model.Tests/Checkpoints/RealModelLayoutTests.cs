using System.Text.Json;
using TorchSharp;
using XGenMM.Model.Checkpoints;
using XGenMM.Model.Configuration;

namespace XGenMM.Model.Tests.Checkpoints;

/// <summary>The module tree built from the real v1.5 config.json must match the real 718-tensor index exactly.</summary>
public sealed class RealModelLayoutTests
{
    private static readonly string RealDir = Fixtures.Path("fixtures", "xgenmm-base-r-v1.5");

    [Fact]
    public void Real_config_uses_the_real_model_defaults()
    {
        var config = XGenMMConfig.FromDirectory(RealDir);
        Assert.Equal(1152, config.Vision.HiddenSize);
        Assert.Equal(27, config.Vision.NumHiddenLayers);
        Assert.Equal(729, config.Vision.NumPatches);
        Assert.Equal(128, config.Resampler.NumVisTokens);
        Assert.Equal(6, config.Resampler.Depth);
        Assert.Equal(3072, config.Text.HiddenSize);
        Assert.Equal(32, config.Text.NumHiddenLayers);
        Assert.Equal(8192, config.Text.IntermediateSize);
        Assert.Equal(2047, config.Text.SlidingWindow);
        Assert.Equal(32015, config.Text.OutputVocabSize);
    }

    [Fact]
    public void The_718_checkpoint_names_map_one_to_one_with_the_spec_shapes_without_allocating_the_model()
    {
        var config = XGenMMConfig.FromDirectory(RealDir);
        long before = Environment.WorkingSet;
        using var model = new XGenMMModel(config, new torch.Device(DeviceType.META));
        var expected = CheckpointLoader.ExpectedTensors(model);

        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(RealDir, CheckpointLoader.IndexFileName)));
        var names = doc.RootElement.GetProperty("weight_map").EnumerateObject().Select(p => p.Name).ToList();
        Assert.Equal(718, names.Count);
        var used = names.Where(n => !CheckpointLoader.IsKnownUnused(n)).ToHashSet();
        Assert.Equal(used.Order(StringComparer.Ordinal), expected.Keys.Order(StringComparer.Ordinal));
        Assert.All(names.Where(CheckpointLoader.IsKnownUnused), n => Assert.StartsWith("vlm.vision_encoder.head.", n));

        long[] Shape(string name) => CheckpointLoader.CheckpointShape(expected[name].Parameter, expected[name].Transposed);
        Assert.Equal([1152L, 3, 14, 14], Shape("vlm.vision_encoder.embeddings.patch_embedding.weight"));
        Assert.Equal([729L, 1152], Shape("vlm.vision_encoder.embeddings.position_embedding.weight"));
        Assert.Equal([4304L, 1152], Shape("vlm.vision_encoder.encoder.layers.26.mlp.fc1.weight"));
        Assert.Equal([128L, 1152], Shape("vlm.vision_tokenizer.latents"));
        Assert.Equal([1536L, 1152], Shape("vlm.vision_tokenizer.layers.5.0.to_q.weight"));
        Assert.Equal([3072L, 1152], Shape("vlm.vision_tokenizer.layers.5.0.to_kv.weight"));
        Assert.Equal([1152L, 1536], Shape("vlm.vision_tokenizer.layers.5.0.to_out.weight"));
        Assert.Equal([4608L, 1152], Shape("vlm.vision_tokenizer.layers.0.1.1.weight"));
        Assert.Equal([1152L, 4608], Shape("vlm.vision_tokenizer.layers.0.1.3.weight"));
        Assert.Equal([3072L, 1152], Shape("vlm.vision_tokenizer.projection.weight"));
        Assert.Equal([32064L, 3072], Shape("vlm.lang_model.model.embed_tokens.weight"));
        Assert.Equal([3L, 3072], Shape("vlm.lang_model.model.embed_tokens.additional_embedding.weight"));
        Assert.Equal([9216L, 3072], Shape("vlm.lang_model.model.layers.31.self_attn.qkv_proj.weight"));
        Assert.Equal([16384L, 3072], Shape("vlm.lang_model.model.layers.31.mlp.gate_up_proj.weight"));
        Assert.Equal([3072L, 8192], Shape("vlm.lang_model.model.layers.31.mlp.down_proj.weight"));
        Assert.Equal([32064L, 3072], Shape("vlm.lang_model.lm_head.weight"));
        Assert.Equal([32064L], Shape("vlm.lang_model.lm_head.bias"));
        Assert.Equal([3L, 3072], Shape("vlm.lang_model.lm_head.additional_fc.weight"));

        // Parameter count of the spec (LAVIS inference.ipynb) minus the unused SigLIP pooling head.
        long total = expected.Values.Sum(e => e.Parameter.NumberOfElements);
        long head = 1152 + 3456L * 1152 + 3456 + 1152L * 1152 + 1152 + 2 * 1152 + 4304L * 1152 + 4304 + 1152L * 4304 + 1152;
        Assert.Equal(4_359_257_219L - head, total);
        Assert.All(expected.Values, e => Assert.Equal(DeviceType.META, e.Parameter.device_type));
        Assert.True(Environment.WorkingSet - before < 1L << 30, "building on the meta device must not allocate the 17 GB of weights");
    }
}
