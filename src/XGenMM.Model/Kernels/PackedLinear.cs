using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace XGenMM.Model.Kernels;

/// <summary>Runs a <see cref="PackedWeight"/> on tensors, and moves a linear layer's weight into one.</summary>
internal static unsafe class PackedLinear
{
    /// <summary>x [..., in] (CPU, any float dtype) -> [..., out] in x's dtype.</summary>
    public static Tensor Forward(PackedWeight weight, Tensor x)
    {
        if (x.device_type != DeviceType.CPU)
            throw new InvalidOperationException($"This layer's weights were packed for the CPU kernels; the input is on {x.device}.");
        if (x.requires_grad && torch.is_grad_enabled())
            throw new InvalidOperationException("This layer's weights were packed for inference; it has no gradient path.");
        if (x.shape[^1] != weight.InFeatures)
            throw new ArgumentException($"input has {x.shape[^1]} features, the layer {weight.InFeatures}.", nameof(x));
        using var scope = torch.NewDisposeScope();
        var input = (x.dtype == ScalarType.Float32 ? x : x.to_type(ScalarType.Float32)).contiguous();
        long rows = input.numel() / weight.InFeatures;
        if (rows > int.MaxValue) throw new ArgumentException($"{rows} input rows is more than one product takes.", nameof(x));
        var shape = (long[])x.shape.Clone();
        shape[^1] = weight.OutFeatures;
        var y = torch.empty(shape, ScalarType.Float32);
        weight.Multiply(TensorMemory.Floats(input), TensorMemory.Floats(y), (int)rows);
        var result = x.dtype == ScalarType.Float32 ? y : y.to_type(x.dtype);
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>Whether a parameter on this device can move into the CPU kernels.</summary>
    public static bool CanPack(Tensor parameter) => parameter.device_type == DeviceType.CPU && PackedWeight.IsSupported;

    /// <summary>Float32 contiguous copy-or-alias of a weight (the caller's dispose scope owns it).</summary>
    public static Tensor AsFloat32(Tensor t) =>
        t.dtype == ScalarType.Float32 && t.is_contiguous() ? t.alias() : t.to_type(ScalarType.Float32).contiguous();

    /// <summary>Frees a parameter's storage once its values live in a packed weight: the name stays registered (the
    /// module tree keeps its shape of names), the numbers are held once.</summary>
    public static void Release(Parameter p)
    {
        using var noGrad = torch.no_grad();
        using var empty = torch.empty(0, p.dtype, p.device);
        p.set_(empty);
    }
}
