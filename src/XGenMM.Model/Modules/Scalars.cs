using TorchSharp;

namespace XGenMM.Model.Modules;

/// <summary>
/// Long-lived scalars for hot tensor arithmetic. TorchSharp's <c>a + b</c> and <c>add(Tensor)</c> create a temporary
/// native Scalar for alpha = 1 and only pass its handle on; under load the GC finalised such a temporary during the
/// native call, repeatedly in our runs ("Expected false to be true ... toFloat at Scalar.h:140" from Tensor.add). Passing a
/// scalar that is always reachable removes that window on the paths that run every token.
/// </summary>
internal static class Scalars
{
    public static readonly Scalar One = 1.ToScalar();
}
