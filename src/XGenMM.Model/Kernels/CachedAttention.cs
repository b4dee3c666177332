using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;

namespace XGenMM.Model.Kernels;

/// <summary>
/// Attention of a serving step's tokens over a slot KV cache ([Slots, H, MaxLength, d] per layer, float32 or
/// bfloat16), one unit of work per (token, head): the token's rotated query against its slot's keys at positions
/// [position - window, position], softmax, weighted sum of the values. Every token's own key and value must already
/// be in the cache; tokens of one prompt chunk therefore see each other causally, as the bias of the torch path lets them.
/// </summary>
internal sealed unsafe class CachedAttention : IParallelWork
{
    [ThreadStatic] private static float[]? t_scores;

    private readonly int _heads, _headDim, _maxLength;
    private readonly int? _window;
    private readonly float _scale;
    private readonly bool _bfloat16;
    private float* _qkv, _output;
    private void* _keys, _values;
    private int[] _slots = [], _positions = [];

    public CachedAttention(int heads, int headDim, int maxLength, int? slidingWindow, TorchSharp.torch.ScalarType cacheType)
    {
        _heads = heads;
        _headDim = headDim;
        _maxLength = maxLength;
        _window = slidingWindow;
        _scale = 1f / MathF.Sqrt(headDim);
        _bfloat16 = cacheType switch
        {
            TorchSharp.torch.ScalarType.Float32 => false,
            TorchSharp.torch.ScalarType.BFloat16 => true,
            _ => throw new NotSupportedException($"A {cacheType} KV cache is not supported by the CPU step."),
        };
    }

    public static bool Supports(TorchSharp.torch.ScalarType cacheType) =>
        cacheType is TorchSharp.torch.ScalarType.Float32 or TorchSharp.torch.ScalarType.BFloat16;

    private long Offset(int slot, int head, int position) => (((long)slot * _heads + head) * _maxLength + position) * _headDim;

    /// <summary>Writes each token's key and value (the K and V thirds of its qkv row, [N, 3 * H * d]) to its slot.</summary>
    public void Store(float* qkv, int[] slots, int[] positions, int tokens, void* keys, void* values)
    {
        int hidden = _heads * _headDim;
        for (int t = 0; t < tokens; t++)
        {
            float* row = qkv + (long)t * 3 * hidden;
            for (int h = 0; h < _heads; h++)
            {
                long at = Offset(slots[t], h, positions[t]);
                Write(keys, at, row + hidden + h * _headDim);
                Write(values, at, row + 2 * hidden + h * _headDim);
            }
        }
    }

    /// <summary>output [N, H * d] = attention of every token's query over its slot, over every core.</summary>
    public void Run(KernelWorkers workers, float* qkv, float* output, int[] slots, int[] positions, int tokens, void* keys, void* values)
    {
        _qkv = qkv;
        _output = output;
        _slots = slots;
        _positions = positions;
        _keys = keys;
        _values = values;
        workers.Run(this, tokens * _heads);
    }

    public void Execute(int fromUnit, int toUnit)
    {
        int hidden = _heads * _headDim;
        var scores = t_scores is { } s && s.Length >= _maxLength ? s : t_scores = new float[Math.Max(_maxLength, 64)];
        float* value = stackalloc float[_headDim];
        float* accumulator = stackalloc float[_headDim];
        fixed (float* p = scores)
        {
            for (int unit = fromUnit; unit < toUnit; unit++)
            {
                int t = unit / _heads, h = unit % _heads;
                int position = _positions[t];
                int first = _window is int w ? Math.Max(0, position - w) : 0;
                int length = position - first + 1;
                float* q = _qkv + (long)t * 3 * hidden + h * _headDim;
                long at = Offset(_slots[t], h, first);
                float max = float.NegativeInfinity;
                for (int j = 0; j < length; j++)
                {
                    float score = Dot(q, _keys, at + (long)j * _headDim, value) * _scale;
                    p[j] = score;
                    max = MathF.Max(max, score);
                }
                float sum = ExpShifted(p, length, max);
                new Span<float>(accumulator, _headDim).Clear();
                for (int j = 0; j < length; j++) AddScaled(accumulator, _values, at + (long)j * _headDim, p[j], value);
                float inverse = 1f / sum;
                float* o = _output + (long)t * hidden + h * _headDim;
                for (int i = 0; i < _headDim; i++) o[i] = accumulator[i] * inverse;
            }
        }
    }

    private void Write(void* cache, long at, float* source)
    {
        if (_bfloat16)
        {
            var target = (ushort*)cache + at;
            for (int i = 0; i < _headDim; i++) target[i] = PackedWeight.ToBFloat16(source[i]);
        }
        else new ReadOnlySpan<float>(source, _headDim).CopyTo(new Span<float>((float*)cache + at, _headDim));
    }

    /// <summary>The cached row at <paramref name="at"/> as float32: itself, or widened into <paramref name="scratch"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private float* Row(void* cache, long at, float* scratch)
    {
        if (!_bfloat16) return (float*)cache + at;
        var source = (ushort*)cache + at;
        int i = 0;
        for (; i + 8 <= _headDim; i += 8)
            Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(source + i), 16).AsSingle().Store(scratch + i);
        for (; i < _headDim; i++) scratch[i] = BitConverter.UInt32BitsToSingle((uint)source[i] << 16);
        return scratch;
    }

    private float Dot(float* q, void* keys, long at, float* scratch)
    {
        float* k = Row(keys, at, scratch);
        int i = 0;
        var acc = Vector256<float>.Zero;
        for (; i + 8 <= _headDim; i += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(q + i), Vector256.Load(k + i), acc);
        float dot = Vector256.Sum(acc);
        for (; i < _headDim; i++) dot += q[i] * k[i];
        return dot;
    }

    private void AddScaled(float* accumulator, void* values, long at, float weight, float* scratch)
    {
        float* v = Row(values, at, scratch);
        int i = 0;
        var w = Vector256.Create(weight);
        for (; i + 8 <= _headDim; i += 8)
            Vector256.FusedMultiplyAdd(w, Vector256.Load(v + i), Vector256.Load(accumulator + i)).Store(accumulator + i);
        for (; i < _headDim; i++) accumulator[i] += weight * v[i];
    }

    /// <summary>p[j] = exp(p[j] - max) in place; returns their sum.</summary>
    private static float ExpShifted(float* p, int length, float max)
    {
        var shift = Vector256.Create(max);
        var sum = Vector256<float>.Zero;
        int j = 0;
        for (; j + 8 <= length; j += 8)
        {
            var e = Vector256.Exp(Vector256.Load(p + j) - shift);
            e.Store(p + j);
            sum += e;
        }
        float total = Vector256.Sum(sum);
        for (; j < length; j++)
        {
            p[j] = MathF.Exp(p[j] - max);
            total += p[j];
        }
        return total;
    }
}
