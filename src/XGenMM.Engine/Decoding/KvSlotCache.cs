using TorchSharp;
using XGenMM.Model.Language;
using static TorchSharp.torch;

namespace XGenMM.Engine.Decoding;

/// <summary>
/// The engine's KV memory, preallocated once: per layer K and V of shape [Slots, H, MaxLen, d]. A sequence owns a
/// slot for its life; nothing is allocated or copied per token beyond writing the new position.
/// </summary>
internal sealed class KvSlotCache : IDisposable
{
    private readonly Tensor[] _keys, _values;

    public int Slots { get; }
    public int MaxLength { get; }
    public long BytesPerSlot { get; }
    public long Bytes => BytesPerSlot * Slots;

    public KvSlotCache(int layers, int heads, int headDim, int slots, int maxLength, ScalarType dtype, Device device)
    {
        Slots = slots;
        MaxLength = maxLength;
        BytesPerSlot = BytesPerSlotFor(layers, heads, headDim, maxLength, dtype);
        _keys = new Tensor[layers];
        _values = new Tensor[layers];
        for (int l = 0; l < layers; l++)
        {
            _keys[l] = torch.zeros([slots, heads, maxLength, headDim], dtype, device).DetachFromDisposeScope();
            _values[l] = torch.zeros([slots, heads, maxLength, headDim], dtype, device).DetachFromDisposeScope();
        }
    }

    /// <summary>Per layer K [Slots, H, MaxLength, d], for <see cref="CpuDecoderStep"/>.</summary>
    public IReadOnlyList<Tensor> Keys => _keys;
    /// <summary>Per layer V, like <see cref="Keys"/>.</summary>
    public IReadOnlyList<Tensor> Values => _values;

    /// <summary>Whether <see cref="CpuDecoderStep"/> reads and writes a cache of this dtype.</summary>
    public static bool SupportsCpuStep(ScalarType dtype) => dtype is ScalarType.Float32 or ScalarType.BFloat16;

    public static long BytesPerSlotFor(int layers, int heads, int headDim, int maxLength, ScalarType dtype) =>
        2L * layers * heads * headDim * maxLength * (dtype is ScalarType.Float16 or ScalarType.BFloat16 ? 2 : dtype == ScalarType.Float64 ? 8 : 4);

    /// <summary>A prefill chunk of one sequence: T new positions starting at <paramref name="start"/> of <paramref name="slot"/>.</summary>
    public IKvCache Prefill(int slot, int start) => new PrefillView(this, slot, start);

    /// <summary>One decode step over the slot range [0, count): row b writes its new position at positions[b].</summary>
    public IKvCache Decode(int count, Tensor slotIndex, Tensor positions, long keyLength) => new DecodeView(this, count, slotIndex, positions, keyLength);

    /// <summary>Copies positions [0, <paramref name="length"/>) of every layer from one slot to another.</summary>
    public void Copy(int from, int to, int length)
    {
        if (length <= 0 || from == to) return;
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        for (int l = 0; l < _keys.Length; l++)
        {
            _keys[l].narrow(0, to, 1).narrow(2, 0, length).copy_(_keys[l].narrow(0, from, 1).narrow(2, 0, length));
            _values[l].narrow(0, to, 1).narrow(2, 0, length).copy_(_values[l].narrow(0, from, 1).narrow(2, 0, length));
        }
    }

    public void Dispose()
    {
        foreach (var t in _keys) t.Dispose();
        foreach (var t in _values) t.Dispose();
    }

    private sealed class PrefillView(KvSlotCache cache, int slot, int start) : IKvCache
    {
        public long Length => start;

        // keys/values [1, H, T, d] -> [1, H, start+T, d] (views of the slot)
        public (Tensor Keys, Tensor Values) Append(int layer, Tensor keys, Tensor values)
        {
            long t = keys.shape[2];
            var k = cache._keys[layer].narrow(0, slot, 1);
            var v = cache._values[layer].narrow(0, slot, 1);
            k.narrow(2, start, t).copy_(keys);
            v.narrow(2, start, t).copy_(values);
            return (k.narrow(2, 0, start + t), v.narrow(2, 0, start + t));
        }
    }

    private sealed class DecodeView(KvSlotCache cache, int count, Tensor slotIndex, Tensor positions, long keyLength) : IKvCache
    {
        public long Length => keyLength - 1;

        // keys/values [B, H, 1, d] -> [B, H, keyLength, d] (views of slots 0..B-1)
        public (Tensor Keys, Tensor Values) Append(int layer, Tensor keys, Tensor values)
        {
            var k = cache._keys[layer];
            var v = cache._values[layer];
            var indices = new[] { TensorIndex.Tensor(slotIndex), TensorIndex.Colon, TensorIndex.Tensor(positions) };
            k.index_put_(keys.squeeze(2), indices);
            v.index_put_(values.squeeze(2), indices);
            return (k.narrow(0, 0, count).narrow(2, 0, keyLength), v.narrow(0, 0, count).narrow(2, 0, keyLength));
        }
    }
}
