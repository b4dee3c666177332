using static TorchSharp.torch;

namespace XGenMM.Model.Language;

/// <summary>
/// A KV cache that also decides how attention is computed, for a forward pass whose tokens belong to different
/// sequences (a serving engine's mixed step: one decode row for each running sequence and prompt chunks of new ones,
/// packed into one [1, N] batch). The projections and the MLP run once over all N tokens; attention cannot, because
/// each token sees only its own sequence's cache, so the cache splits it per sequence. When the cache passed to
/// <see cref="Phi3Model.Forward"/> implements this, the attention bias given there is not used.
/// </summary>
public interface IStepAttention : IKvCache
{
    /// <summary>Writes this step's keys and values of <paramref name="layer"/> to each sequence's cache and attends
    /// each token's query over its own sequence.</summary>
    /// <param name="layer">Decoder layer index.</param>
    /// <param name="queries">[1, H, N, d] rotated queries of the step's tokens, in packing order.</param>
    /// <param name="keys">[1, H, N, d] rotated keys.</param>
    /// <param name="values">[1, H, N, d] values.</param>
    /// <returns>[1, H, N, d] attention outputs in the same order.</returns>
    Tensor Attend(int layer, Tensor queries, Tensor keys, Tensor values);
}
