using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace XGenMM.Model.Modules;

/// <summary>
/// A linear layer whose weight is stored transposed, [in, out], contiguous. On CPU, <c>matmul(x, Wt)</c> with that
/// layout streams the weight about 2.5x faster than <c>linear(x, W)</c> with W as [out, in] (performance-notes.md).
/// Checkpoints keep the PyTorch layout [out, in]; the loader transposes (see <see cref="ITransposedWeight"/>).
/// </summary>
public sealed class Linear : nn.Module<Tensor, Tensor>, ITransposedWeight
{
    public Parameter Weight { get; }
    public Parameter? Bias { get; }
    public long InFeatures { get; }
    public long OutFeatures { get; }

    public Linear(long inFeatures, long outFeatures, bool hasBias, Device? device = null, ScalarType dtype = ScalarType.Float32)
        : base(nameof(Linear))
    {
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Weight = new Parameter(torch.empty([inFeatures, outFeatures], dtype, device));
        register_parameter("weight", Weight);
        if (hasBias)
        {
            Bias = new Parameter(torch.empty([outFeatures], dtype, device));
            register_parameter("bias", Bias);
        }
    }

    // x: [..., in] -> [..., out]
    public override Tensor forward(Tensor x)
    {
        var y = torch.matmul(x, Weight);
        return Bias is null ? y : y.add_(Bias, Scalars.One);
    }
}

/// <summary>A module whose "weight" parameter is stored as the transpose of its checkpoint tensor.</summary>
public interface ITransposedWeight;
