using TorchSharp;
using TorchSharp.Modules;
using XGenMM.Model.Kernels;
using static TorchSharp.torch;

namespace XGenMM.Model.Modules;

/// <summary>
/// A linear layer whose weight is stored transposed, [in, out], contiguous. On CPU, <c>matmul(x, Wt)</c> with that
/// layout streams the weight about 2.5x faster than <c>linear(x, W)</c> with W as [out, in] (performance-notes.md).
/// Checkpoints keep the PyTorch layout [out, in]; the loader transposes (see <see cref="ITransposedWeight"/>).
/// On CPU, <see cref="Pack"/> moves the weight into the AVX2 kernels of <see cref="PackedWeight"/> (inference only).
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

    /// <summary>The packed weight once <see cref="Pack"/> ran; the parameters are then empty.</summary>
    public PackedWeight? Packed { get; private set; }

    /// <summary>Moves weight and bias into a <see cref="PackedWeight"/> of <paramref name="format"/> and frees the
    /// tensors. Only on CPU with AVX2+FMA; elsewhere (GPU) nothing changes and this returns false.</summary>
    public bool Pack(WeightFormat format, int groupSize = PackedWeight.DefaultGroupSize)
    {
        if (Packed is not null) throw new InvalidOperationException("This layer is already packed.");
        if (!PackedLinear.CanPack(Weight)) return false;
        using (var scope = torch.NewDisposeScope())
        {
            var w = PackedLinear.AsFloat32(Weight);
            var b = Bias is null ? null : PackedLinear.AsFloat32(Bias);
            unsafe
            {
                var source = new WeightSource(TensorMemory.Floats(w), OutFeatures, (int)OutFeatures);
                var bias = b is null ? ReadOnlySpan<float>.Empty : new ReadOnlySpan<float>(TensorMemory.Floats(b), (int)OutFeatures);
                Packed = PackedWeight.Pack((int)InFeatures, [source], bias, format, groupSize);
            }
        }
        PackedLinear.Release(Weight);
        if (Bias is not null) PackedLinear.Release(Bias);
        return true;
    }

    // x: [..., in] -> [..., out]
    public override Tensor forward(Tensor x)
    {
        if (Packed is not null) return PackedLinear.Forward(Packed, x);
        var y = torch.matmul(x, Weight);
        return Bias is null ? y : y.add_(Bias, Scalars.One);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Packed?.Dispose();
            Packed = null;
        }
        base.Dispose(disposing);
    }
}

/// <summary>A module whose "weight" parameter is stored as the transpose of its checkpoint tensor.</summary>
public interface ITransposedWeight;
