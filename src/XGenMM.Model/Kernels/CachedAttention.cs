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
    private int _tokens;

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
        _tokens = tokens;
        _keys = keys;
        _values = values;
        workers.Run(this, tokens * _heads);
    }

    public void Execute(int fromUnit, int toUnit)
    {
        if (_bfloat16) Execute<BFloat16Rows>(fromUnit, toUnit);
        else Execute<Float32Rows>(fromUnit, toUnit);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Execute<TRows>(int fromUnit, int toUnit) where TRows : struct, ICacheRows
    {
        int hidden = _heads * _headDim;
        var scores = t_scores is { } s && s.Length >= _maxLength ? s : t_scores = new float[Math.Max(_maxLength, 64)];
        fixed (float* p = scores)
        {
            int tokens = _tokens;
            for (int unit = fromUnit; unit < toUnit; unit++)
            {
                // Tokens in zig-zag order (first, last, second, second last, ...): a prompt chunk's later tokens
                // attend over more keys, and participants claim ranges of units in order, so in plain order the last
                // claims would be the costliest and one participant would finish them while the other waits.
                int k = unit / _heads, h = unit % _heads;
                int t = (k & 1) == 0 ? k >> 1 : tokens - 1 - (k >> 1);
                int position = _positions[t];
                int first = _window is int w ? Math.Max(0, position - w) : 0;
                int length = position - first + 1;
                float* q = _qkv + (long)t * 3 * hidden + h * _headDim;
                long at = Offset(_slots[t], h, first);
                float max = Scores<TRows>(q, _keys, at, length, p);
                float sum = ExpShifted(p, length, max);
                WeightedValues<TRows>(p, _values, at, length, 1f / sum, _output + (long)t * hidden + h * _headDim);
            }
        }
    }

    /// <summary>p[j] = q . K[j] * scale for the <paramref name="length"/> cached rows from <paramref name="at"/>;
    /// returns the largest. Four rows at a time: four independent FMA chains instead of one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private float Scores<TRows>(float* q, void* keys, long at, int length, float* p) where TRows : struct, ICacheRows
    {
        int d = _headDim;
        float max = float.NegativeInfinity;
        int j = 0;
        for (; j + 4 <= length; j += 4)
        {
            long k0 = at + (long)j * d, k1 = k0 + d, k2 = k1 + d, k3 = k2 + d;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            int c = 0;
            for (; c + 8 <= d; c += 8)
            {
                var qv = Vector256.Load(q + c);
                a0 = Vector256.FusedMultiplyAdd(qv, TRows.Load8(keys, k0 + c), a0);
                a1 = Vector256.FusedMultiplyAdd(qv, TRows.Load8(keys, k1 + c), a1);
                a2 = Vector256.FusedMultiplyAdd(qv, TRows.Load8(keys, k2 + c), a2);
                a3 = Vector256.FusedMultiplyAdd(qv, TRows.Load8(keys, k3 + c), a3);
            }
            float s0 = Vector256.Sum(a0), s1 = Vector256.Sum(a1), s2 = Vector256.Sum(a2), s3 = Vector256.Sum(a3);
            for (; c < d; c++)
            {
                s0 += q[c] * TRows.Load1(keys, k0 + c);
                s1 += q[c] * TRows.Load1(keys, k1 + c);
                s2 += q[c] * TRows.Load1(keys, k2 + c);
                s3 += q[c] * TRows.Load1(keys, k3 + c);
            }
            p[j] = s0 * _scale;
            p[j + 1] = s1 * _scale;
            p[j + 2] = s2 * _scale;
            p[j + 3] = s3 * _scale;
            max = MathF.Max(max, MathF.Max(MathF.Max(p[j], p[j + 1]), MathF.Max(p[j + 2], p[j + 3])));
        }
        for (; j < length; j++)
        {
            long k0 = at + (long)j * d;
            var a0 = Vector256<float>.Zero;
            int c = 0;
            for (; c + 8 <= d; c += 8) a0 = Vector256.FusedMultiplyAdd(Vector256.Load(q + c), TRows.Load8(keys, k0 + c), a0);
            float s0 = Vector256.Sum(a0);
            for (; c < d; c++) s0 += q[c] * TRows.Load1(keys, k0 + c);
            p[j] = s0 * _scale;
            max = MathF.Max(max, p[j]);
        }
        return max;
    }

    /// <summary>o = inverse * sum_j p[j] V[j]: eight output values at a time, summed over the rows in registers
    /// (two chains), each value of V read once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void WeightedValues<TRows>(float* p, void* values, long at, int length, float inverse, float* o) where TRows : struct, ICacheRows
    {
        int d = _headDim;
        int c = 0;
        for (; c + 8 <= d; c += 8)
        {
            Vector256<float> a0 = default, a1 = default;
            long v = at + c;
            int j = 0;
            for (; j + 2 <= length; j += 2, v += 2L * d)
            {
                a0 = Vector256.FusedMultiplyAdd(Vector256.Create(p[j]), TRows.Load8(values, v), a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.Create(p[j + 1]), TRows.Load8(values, v + d), a1);
            }
            if (j < length) a0 = Vector256.FusedMultiplyAdd(Vector256.Create(p[j]), TRows.Load8(values, v), a0);
            ((a0 + a1) * inverse).Store(o + c);
        }
        for (; c < d; c++)
        {
            float sum = 0;
            for (int j = 0; j < length; j++) sum += p[j] * TRows.Load1(values, at + (long)j * d + c);
            o[c] = sum * inverse;
        }
    }

    private interface ICacheRows
    {
        static abstract Vector256<float> Load8(void* cache, long index);
        static abstract float Load1(void* cache, long index);
    }

    private readonly struct Float32Rows : ICacheRows
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(void* cache, long index) => Vector256.Load((float*)cache + index);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Load1(void* cache, long index) => ((float*)cache)[index];
    }

    private readonly struct BFloat16Rows : ICacheRows
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(void* cache, long index) =>
            Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((ushort*)cache + index), 16).AsSingle();
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Load1(void* cache, long index) => BitConverter.UInt32BitsToSingle((uint)((ushort*)cache)[index] << 16);
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

    /// <summary>p[j] = exp(p[j] - max) in place; returns their sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
