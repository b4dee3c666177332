using System.Text.Json.Nodes;
using XGenMM.Model.Checkpoints;
using XGenMM.Model.Configuration;

namespace XGenMM.Model.Tests.Checkpoints;

/// <summary>Broken checkpoints fail with a <see cref="CheckpointException"/> that says what is wrong.</summary>
public sealed class CheckpointErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xgenmm-ckpt-").FullName;

    public CheckpointErrorTests()
    {
        foreach (var f in Directory.GetFiles(Fixtures.GoldenTinyAnyRes))
            if (!f.EndsWith("expected.safetensors", StringComparison.Ordinal) && !f.EndsWith(".jpg", StringComparison.Ordinal) && !f.EndsWith(".png", StringComparison.Ordinal))
                File.Copy(f, Path.Combine(_dir, Path.GetFileName(f)));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private CheckpointException Load()
    {
        using var model = new XGenMMModel(XGenMMConfig.FromDirectory(_dir));
        return Assert.Throws<CheckpointException>(() => CheckpointLoader.Load(model, _dir));
    }

    [Fact]
    public void The_intact_copy_loads()
    {
        using var model = new XGenMMModel(XGenMMConfig.FromDirectory(_dir));
        var report = CheckpointLoader.Load(model, _dir);
        int inIndex = CheckpointLoader.ReadWeightMap(_dir).Count;
        Assert.Equal(11, report.IgnoredTensors.Count); // the unused SigLIP pooling head: probe, attention (4), layernorm (2), mlp (4)
        Assert.Equal(inIndex - 11, report.Tensors);
    }

    [Fact]
    public void A_missing_shard_is_named()
    {
        File.Delete(Path.Combine(_dir, "model-00002-of-00002.safetensors"));
        var ex = Load();
        Assert.Contains("missing shard", ex.Message, StringComparison.Ordinal);
        Assert.Contains("model-00002-of-00002.safetensors", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_truncated_shard_is_reported_as_truncated()
    {
        string shard = Path.Combine(_dir, "model-00002-of-00002.safetensors");
        var bytes = File.ReadAllBytes(shard);
        File.WriteAllBytes(shard, bytes[..(bytes.Length / 2)]);
        var ex = Load();
        Assert.Contains("truncated", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_wrong_shape_lists_the_tensor_with_both_shapes()
    {
        // Claim a bigger decoder MLP than the checkpoint holds.
        string configPath = Path.Combine(_dir, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!;
        config["text_config"]!["intermediate_size"] = 64;
        File.WriteAllText(configPath, config.ToJsonString());
        var ex = Load();
        Assert.Contains("Mis-shaped tensors", ex.Message, StringComparison.Ordinal);
        Assert.Contains("vlm.lang_model.model.layers.0.mlp.gate_up_proj.weight: checkpoint [256, 24], model expects [128, 24]", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_and_unexpected_tensors_are_listed()
    {
        string configPath = Path.Combine(_dir, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!;
        config["text_config"]!["num_hidden_layers"] = 3;
        File.WriteAllText(configPath, config.ToJsonString());
        var ex = Load();
        Assert.Contains("Missing tensors", ex.Message, StringComparison.Ordinal);
        Assert.Contains("vlm.lang_model.model.layers.2.self_attn.qkv_proj.weight", ex.Message, StringComparison.Ordinal);

        config["text_config"]!["num_hidden_layers"] = 1;
        File.WriteAllText(configPath, config.ToJsonString());
        var ex2 = Load();
        Assert.Contains("Unexpected tensors", ex2.Message, StringComparison.Ordinal);
        Assert.Contains("vlm.lang_model.model.layers.1.mlp.down_proj.weight", ex2.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_file_that_is_not_safetensors_is_refused()
    {
        File.WriteAllText(Path.Combine(_dir, "model-00001-of-00002.safetensors"), "this is not a checkpoint at all");
        var ex = Load();
        Assert.Contains("not a valid safetensors file", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_directory_without_weights_is_refused()
    {
        File.Delete(Path.Combine(_dir, CheckpointLoader.IndexFileName));
        var ex = Load();
        Assert.Contains("neither", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Saving_and_reloading_round_trips_every_tensor_in_fp16_and_fp32()
    {
        using var model = new XGenMMModel(XGenMMConfig.FromDirectory(_dir));
        CheckpointLoader.Load(model, _dir);
        foreach (var dtype in new[] { TorchSharp.torch.ScalarType.Float32, TorchSharp.torch.ScalarType.Float16 })
        {
            string outDir = Path.Combine(_dir, "saved-" + dtype);
            SafeTensorsWriter.SaveModel(model, outDir, dtype, maxShardBytes: 2 << 20);
            Assert.True(File.Exists(Path.Combine(outDir, CheckpointLoader.IndexFileName)), "a 2 MB shard limit must produce shards");
            using var reloaded = new XGenMMModel(model.Config);
            CheckpointLoader.Load(reloaded, outDir);
            var a = CheckpointLoader.ExpectedTensors(model);
            var b = CheckpointLoader.ExpectedTensors(reloaded);
            double tol = dtype == TorchSharp.torch.ScalarType.Float32 ? 0 : 1e-2;
            foreach (var (name, (p, _)) in a)
                Assert.True(TorchSharp.torch.allclose(p, b[name].Parameter, rtol: tol, atol: tol), name);
        }
    }
}
