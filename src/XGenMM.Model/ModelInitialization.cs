using TorchSharp;
using XGenMM.Model.Checkpoints;
using XGenMM.Model.Modules;
using static TorchSharp.torch;

namespace XGenMM.Model;

/// <summary>
/// Fresh weights for a model built from a config: what training starts from, and what benchmarks of
/// "a model of this shape" run on. Linear and embedding weights ~ N(0, std), norms 1, biases 0.
/// </summary>
public static class ModelInitialization
{
    public static void InitializeRandom(XGenMMModel model, long seed, double std = 0.02)
    {
        using var noGrad = torch.no_grad();
        var generator = new torch.Generator((ulong)seed);
        foreach (var (name, (p, _)) in CheckpointLoader.ExpectedTensors(model))
        {
            bool isNorm = name.Contains("norm", StringComparison.Ordinal) || name.Contains("layer_norm", StringComparison.Ordinal)
                          || System.Text.RegularExpressions.Regex.IsMatch(name, @"vision_tokenizer\.layers\.\d+\.1\.0\.");
            if (name.EndsWith(".bias", StringComparison.Ordinal)) p.zero_();
            else if (isNorm) p.fill_(Scalars.One);
            else p.normal_(0, std, generator);
        }
    }
}
