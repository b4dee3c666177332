using TorchSharp;
using XGenMM.Model.Modules;
using static TorchSharp.torch;

namespace XGenMM.Model.Language;

/// <summary>
/// Plain RoPE (Phi-3-mini-4k, no scaling): inv_freq = 1/theta^(2i/d); cos/sin of position * inv_freq computed in
/// float32, duplicated over both halves ("rotate_half" layout, not interleaved).
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly Tensor _invFreq; // [d/2] float32

    public RotaryEmbedding(int headDim, double theta, Device? device = null)
    {
        // Explicit scalars kept alive for the calls (Scalars.cs explains why).
        using var end = headDim.ToScalar();
        using var two = 2.ToScalar();
        using var dim = ((float)headDim).ToScalar();
        var exponents = torch.arange(Scalars.Zero, end, two, ScalarType.Int64).to_type(ScalarType.Float32).div_(dim);
        _invFreq = torch.pow(torch.tensor((float)theta), exponents).reciprocal_().to(device ?? torch.CPU);
        _invFreq.DetachFromDisposeScope();
        exponents.Dispose();
    }

    /// <summary>[d/2] float32: 1 / theta^(2i/d).</summary>
    internal Tensor InverseFrequencies => _invFreq;

    /// <summary>positions [B, T] int64 -> (cos, sin) each [B, 1, T, d] in <paramref name="dtype"/>.</summary>
    public (Tensor Cos, Tensor Sin) CosSin(Tensor positions, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        var freqs = positions.to_type(ScalarType.Float32).unsqueeze(-1) * _invFreq; // [B, T, d/2]
        var emb = torch.cat([freqs, freqs], -1).unsqueeze(1);                       // [B, 1, T, d]
        var cos = emb.cos().to_type(dtype);
        var sin = emb.sin().to_type(dtype);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>x [B, H, T, d] -> x*cos + rotate_half(x)*sin.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = torch.NewDisposeScope();
        long half = x.shape[^1] / 2;
        var rotated = torch.cat([x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)], -1);
        return (x * cos).add_(rotated * sin, Scalars.One).MoveToOuterDisposeScope();
    }

    public void Dispose() => _invFreq.Dispose();
}
