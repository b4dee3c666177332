using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace XGenMM.Model.Modules;

/// <summary>LayerNorm with affine weight and bias over the last dimension.</summary>
public sealed class LayerNorm : nn.Module<Tensor, Tensor>
{
    private readonly long[] _shape;
    private readonly double _eps;
    public Parameter Weight { get; }
    public Parameter Bias { get; }

    public LayerNorm(long dim, double eps, Device? device = null, ScalarType dtype = ScalarType.Float32) : base(nameof(LayerNorm))
    {
        _shape = [dim];
        _eps = eps;
        Weight = new Parameter(torch.ones([dim], dtype, device));
        Bias = new Parameter(torch.zeros([dim], dtype, device));
        register_parameter("weight", Weight);
        register_parameter("bias", Bias);
    }

    public override Tensor forward(Tensor x) => nn.functional.layer_norm(x, _shape, Weight, Bias, _eps);
}
