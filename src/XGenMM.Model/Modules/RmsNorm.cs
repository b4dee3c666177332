using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace XGenMM.Model.Modules;

/// <summary>Phi-3 RMSNorm: statistics in float32 whatever the activation dtype, then <c>weight * x.to(input dtype)</c>.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Scalar _eps;
    public Parameter Weight { get; }

    public RmsNorm(long dim, double eps, Device? device = null, ScalarType dtype = ScalarType.Float32) : base(nameof(RmsNorm))
    {
        _eps = eps.ToScalar();
        Weight = new Parameter(torch.ones([dim], dtype, device));
        register_parameter("weight", Weight);
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var inputType = x.dtype;
        var h = inputType == ScalarType.Float32 ? x : x.to_type(ScalarType.Float32);
        // h * h, not h.square(): TorchSharp's square() is pow(2) with a temporary native Scalar that the GC may finalise
        // mid-call (Scalars.cs); under load it failed as "Unknown scalar type" in pow_Tensor_Scalar.
        var variance = h.mul(h).mean([-1L], keepdim: true);
        h = h * torch.rsqrt(variance.add_(_eps, Scalars.One));
        if (inputType != ScalarType.Float32) h = h.to_type(inputType);
        return (Weight * h).MoveToOuterDisposeScope();
    }
}
