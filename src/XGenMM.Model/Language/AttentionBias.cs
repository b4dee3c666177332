using TorchSharp;
using XGenMM.Model.Modules;
using static TorchSharp.torch;

namespace XGenMM.Model.Language;

/// <summary>
/// Builds the additive attention bias of Phi-3 (transformers 4.41.1 eager semantics): 0 where a query may attend,
/// the dtype's most negative finite value elsewhere (not -inf, so fully padded query rows stay finite).
/// A key j is visible to query i when j &lt;= i, the key is not padding, and i - j &lt;= sliding window.
/// </summary>
public static class AttentionBias
{
    /// <param name="keyMask">[B, S] 1 = real token, 0 = padding, for every cached position plus this step's.</param>
    /// <param name="queryLength">T: this step's queries are the last T positions of S.</param>
    /// <param name="slidingWindow">Phi-3 window (2047) or null.</param>
    /// <returns>[B, 1, T, S] additive bias.</returns>
    public static Tensor Build(Tensor keyMask, long queryLength, int? slidingWindow, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        long s = keyMask.shape[1];
        var device = keyMask.device;
        var q = Scalars.Arange(s - queryLength, s, device).view(-1, 1);  // [T, 1]
        var k = Scalars.Arange(0, s, device).view(1, -1);          // [1, S]
        var allowed = k.le(q);
        if (slidingWindow is int w) allowed = allowed.logical_and(k.add(torch.tensor((long)w, device: device), Scalars.One).ge(q));
        allowed = allowed.unsqueeze(0).logical_and(keyMask.to_type(ScalarType.Bool).unsqueeze(1)); // [B, T, S]
        double min = dtype switch
        {
            ScalarType.Float16 => -65504.0,
            ScalarType.BFloat16 => -3.3895313892515355e38,
            ScalarType.Float64 => double.MinValue,
            _ => float.MinValue,
        };
        var zeros = torch.zeros(1, dtype: dtype, device: device);
        var bias = torch.where(allowed, zeros, Scalars.Full([1], min, dtype, device));
        return bias.unsqueeze(1).MoveToOuterDisposeScope();
    }
}
