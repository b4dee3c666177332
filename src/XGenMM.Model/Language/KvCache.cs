using TorchSharp;
using static TorchSharp.torch;

namespace XGenMM.Model.Language;

/// <summary>Per-layer key/value storage for incremental decoding.</summary>
public interface IKvCache
{
    /// <summary>Number of positions already cached (the index of the next position).</summary>
    long Length { get; }

    /// <summary>Appends this step's keys/values for <paramref name="layer"/> and returns all cached ones.</summary>
    /// <param name="keys">[B, H, T, d] new keys (already rotated).</param>
    /// <param name="values">[B, H, T, d] new values.</param>
    /// <returns>[B, H, S, d] keys and values for every cached position, this step's included.</returns>
    (Tensor Keys, Tensor Values) Append(int layer, Tensor keys, Tensor values);
}

/// <summary>
/// A growable cache for one batch (HF DynamicCache semantics): each layer's K/V are kept in preallocated buffers
/// that double when full, so a long generation does not re-copy the whole cache at every token.
/// </summary>
public sealed class DynamicKvCache : IKvCache, IDisposable
{
    private readonly Tensor?[] _keys;
    private readonly Tensor?[] _values;
    private readonly long[] _lengths;

    public DynamicKvCache(int layers)
    {
        _keys = new Tensor?[layers];
        _values = new Tensor?[layers];
        _lengths = new long[layers];
    }

    public long Length => _lengths.Length == 0 ? 0 : _lengths[^1];

    public (Tensor Keys, Tensor Values) Append(int layer, Tensor keys, Tensor values)
    {
        long t = keys.shape[2];
        long used = _lengths[layer];
        var k = _keys[layer];
        if (k is null || used + t > k.shape[2])
        {
            long capacity = Math.Max(used + t, Math.Max(64, (k?.shape[2] ?? 0) * 2));
            Grow(ref _keys[layer], keys, capacity, used);
            Grow(ref _values[layer], values, capacity, used);
        }
        _keys[layer]!.narrow(2, used, t).copy_(keys);
        _values[layer]!.narrow(2, used, t).copy_(values);
        _lengths[layer] = used + t;
        return (_keys[layer]!.narrow(2, 0, used + t), _values[layer]!.narrow(2, 0, used + t));
    }

    private static void Grow(ref Tensor? buffer, Tensor like, long capacity, long used)
    {
        var grown = torch.empty([like.shape[0], like.shape[1], capacity, like.shape[3]], like.dtype, like.device);
        grown.DetachFromDisposeScope();
        if (buffer is not null)
        {
            if (used > 0) grown.narrow(2, 0, used).copy_(buffer.narrow(2, 0, used));
            buffer.Dispose();
        }
        buffer = grown;
    }

    public void Dispose()
    {
        foreach (var t in _keys) t?.Dispose();
        foreach (var t in _values) t?.Dispose();
        Array.Clear(_keys);
        Array.Clear(_values);
    }
}
