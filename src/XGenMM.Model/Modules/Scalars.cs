using TorchSharp;
using static TorchSharp.torch;

namespace XGenMM.Model.Modules;

/// <summary>
/// Scalars that stay reachable for the whole native call. TorchSharp turns a C# number into a temporary native
/// Scalar, passes only its handle on and keeps no reference, so the GC may finalise the temporary while the native
/// call still reads it. Under load that happened in our runs ("toFloat at Scalar.h:140" from Tensor.add, "Unknown
/// scalar type" from clamp_max). Every tensor operation on a serving path therefore takes its scalars from here or
/// from a field of its module, never from an implicit conversion.
/// </summary>
public static class Scalars
{
    public static readonly Scalar One = 1.ToScalar();
    public static readonly Scalar Zero = 0.ToScalar();

    /// <summary>[start, end) as int64 on <paramref name="device"/>.</summary>
    public static Tensor Arange(long start, long end, Device? device)
    {
        using var from = start.ToScalar();
        using var to = end.ToScalar();
        return torch.arange(from, to, One, ScalarType.Int64, device);
    }

    /// <summary>A tensor of <paramref name="shape"/> filled with <paramref name="value"/>.</summary>
    public static Tensor Full(long[] shape, double value, ScalarType dtype, Device? device)
    {
        using var fill = value.ToScalar();
        return torch.full(shape, fill, dtype, device);
    }

    /// <summary>Out of place masked_fill with a scalar kept alive for the call.</summary>
    public static Tensor MaskedFill(Tensor input, Tensor mask, double value)
    {
        using var fill = value.ToScalar();
        return input.masked_fill(mask, fill);
    }
}
