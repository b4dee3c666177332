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
    /// <summary>
    /// Fixed 2D sine-cosine values for the vision tower's position embeddings (half the channels code the row, half the
    /// column, at geometrically spaced frequencies), rms about 0.7. With N(0, 0.02) positions a patch's place is some
    /// 40 times weaker than its content (patch projection outputs have rms near 1): a tower trained from scratch then
    /// barely knows where a patch is, and its resampled tokens carry no place at all (measured on xgenmm-nano: left/right
    /// questions stayed at chance). The values stay trainable.
    /// </summary>
    public static void InitializeVisionPositions(XGenMMModel model, double scale = 1)
    {
        using var noGrad = torch.no_grad();
        var tensors = CheckpointLoader.ExpectedTensors(model);
        var (p, _) = tensors["vlm.vision_encoder.embeddings.position_embedding.weight"];
        int side = model.Config.Vision.PatchesPerSide, dim = (int)p.shape[1], quarter = dim / 4;
        var values = new float[side * side * dim];
        for (int row = 0; row < side; row++)
            for (int col = 0; col < side; col++)
                for (int i = 0; i < quarter; i++)
                {
                    double omega = Math.PI / Math.Pow(2 * side, (double)i / quarter);
                    int o = (row * side + col) * dim;
                    values[o + i] = (float)Math.Sin(row * omega);
                    values[o + quarter + i] = (float)Math.Cos(row * omega);
                    values[o + 2 * quarter + i] = (float)Math.Sin(col * omega);
                    values[o + 3 * quarter + i] = (float)Math.Cos(col * omega);
                }
        p.copy_(torch.tensor(values, [side * side, dim]).mul(scale).to(p.dtype).to(p.device));
    }

    /// <param name="only">When given, only the tensors whose checkpoint names it accepts are re-initialised.</param>
    /// <param name="fanIn">Projection and convolution weights get N(0, 1/fan_in) instead of N(0, std), embeddings and
    /// latents keep <paramref name="std"/>. HF's 0.02 suits widths of a thousand and more; at width 128 it leaves the
    /// query and key projections so small that attention starts uniform and, both factors near zero, barely learns to
    /// select (measured on xgenmm-nano: the resampler's tokens never told where a shape was).</param>
    public static void InitializeRandom(XGenMMModel model, long seed, double std = 0.02, Func<string, bool>? only = null, bool fanIn = false)
    {
        using var noGrad = torch.no_grad();
        var generator = new torch.Generator((ulong)seed);
        foreach (var (name, (p, transposed)) in CheckpointLoader.ExpectedTensors(model))
        {
            if (only is not null && !only(name)) continue;
            bool isNorm = name.Contains("norm", StringComparison.Ordinal) || name.Contains("layer_norm", StringComparison.Ordinal)
                          || System.Text.RegularExpressions.Regex.IsMatch(name, @"vision_tokenizer\.layers\.\d+\.1\.0\.");
            if (name.EndsWith(".bias", StringComparison.Ordinal)) p.zero_();
            else if (isNorm) p.fill_(Scalars.One);
            else if (fanIn && p.dim() >= 2 && !name.EndsWith("embed_tokens.weight", StringComparison.Ordinal)
                     && !name.EndsWith("position_embedding.weight", StringComparison.Ordinal))
                p.normal_(0, 1 / Math.Sqrt(CheckpointLoader.CheckpointShape(p, transposed).Skip(1).Aggregate(1L, (a, b) => a * b)), generator);
            else p.normal_(0, std, generator);
        }
    }
}
