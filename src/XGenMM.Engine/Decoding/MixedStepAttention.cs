using TorchSharp;
using XGenMM.Model.Language;
using static TorchSharp.torch;

namespace XGenMM.Engine.Decoding;

/// <summary>
/// Attention of one mixed step (<see cref="StepPolicy.Mixed"/>). The step's tokens are packed as [1, N]: first the
/// <see cref="DecodeWidth"/> decode rows (row b = slot b, padding rows included, exactly as a decode-only pass lays
/// them out), then each prefill chunk's positions. Per layer the decode rows are regrouped to [width, H, 1, d] and
/// attend over their slots as a decode pass does; each chunk attends over its own slot (its cached prefix and itself,
/// causally). So every token sees what it would see in separate passes, while the projections and the MLP, most of
/// the step's work, run once for all N tokens.
/// </summary>
internal sealed class MixedStepAttention : IStepAttention, IDisposable
{
    private readonly int _decodeWidth;
    private readonly IKvCache? _decodeCache;
    private readonly Tensor? _decodeBias;                                   // [width, 1, 1, S]
    private readonly List<(int Offset, int Count, IKvCache Cache, Tensor Bias)> _chunks = [];

    /// <param name="decodeWidth">Decode rows at the front of the packing (0 = none).</param>
    /// <param name="decodeCache">The slot cache's decode view for those rows (null when there are none).</param>
    /// <param name="decodeBias">Their bias [width, 1, 1, S] (null when there are none); owned from here on.</param>
    public MixedStepAttention(int decodeWidth, IKvCache? decodeCache, Tensor? decodeBias)
    {
        _decodeWidth = decodeWidth;
        _decodeCache = decodeCache;
        _decodeBias = decodeBias;
    }

    public int DecodeWidth => _decodeWidth;

    /// <summary>Adds the next chunk of the packing: <paramref name="count"/> tokens at <paramref name="offset"/>,
    /// written through <paramref name="cache"/> (a prefill view of its slot), masked by <paramref name="bias"/>
    /// [1, 1, count, start + count] (owned from here on).</summary>
    public void AddChunk(int offset, int count, IKvCache cache, Tensor bias) => _chunks.Add((offset, count, cache, bias));

    /// <summary>Not meaningful for a step of several sequences; the model reads it only without an <see cref="IStepAttention"/>.</summary>
    public long Length => 0;

    public (Tensor Keys, Tensor Values) Append(int layer, Tensor keys, Tensor values) =>
        throw new NotSupportedException("A mixed step attends per sequence through Attend.");

    public Tensor Attend(int layer, Tensor queries, Tensor keys, Tensor values)
    {
        using var scope = torch.NewDisposeScope();
        var parts = new List<Tensor>(_chunks.Count + 1);
        if (_decodeWidth > 0)
        {
            // [1, H, width, d] -> [width, H, 1, d]: one batch row per slot, as the decode-only pass runs them.
            var q = queries.narrow(2, 0, _decodeWidth).transpose(0, 2);
            var k = keys.narrow(2, 0, _decodeWidth).transpose(0, 2);
            var v = values.narrow(2, 0, _decodeWidth).transpose(0, 2);
            var (cachedKeys, cachedValues) = _decodeCache!.Append(layer, k, v);
            parts.Add(nn.functional.scaled_dot_product_attention(q, cachedKeys, cachedValues, _decodeBias).transpose(0, 2));
        }
        foreach (var (offset, count, cache, bias) in _chunks)
        {
            var (cachedKeys, cachedValues) = cache.Append(layer, keys.narrow(2, offset, count), values.narrow(2, offset, count));
            parts.Add(nn.functional.scaled_dot_product_attention(queries.narrow(2, offset, count), cachedKeys, cachedValues, bias));
        }
        var attended = parts.Count == 1 ? parts[0] : torch.cat(parts, 2);
        return attended.MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        _decodeBias?.Dispose();
        foreach (var chunk in _chunks) chunk.Bias.Dispose();
    }
}
