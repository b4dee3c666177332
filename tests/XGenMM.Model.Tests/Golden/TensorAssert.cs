using TorchSharp;
using static TorchSharp.torch;

namespace XGenMM.Model.Tests.Golden;

internal static class TensorAssert
{
    /// <summary>Asserts |actual - expected| &lt;= atol + rtol*|expected| elementwise; reports the worst element.</summary>
    public static double Close(Tensor expected, Tensor actual, double atol, double rtol, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        using var scope = torch.NewDisposeScope();
        var e = expected.to_type(ScalarType.Float64);
        var a = actual.to_type(ScalarType.Float64);
        var diff = (a - e).abs();
        double maxAbs = diff.max().item<double>();
        var excess = diff - (e.abs() * rtol + atol);
        double worst = excess.max().item<double>();
        Assert.True(worst <= 0, $"{what}: max abs diff {maxAbs:E3} exceeds atol {atol:E1} + rtol {rtol:E1}");
        return maxAbs;
    }
}
