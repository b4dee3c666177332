using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using XGenMM.Model.Kernels;
using XGenMM.Model.Modules;
using static TorchSharp.torch;

namespace XGenMM.Model.Language;

/// <summary>Where one token of a serving step sits in the slot KV cache: its sequence's slot and its position there.</summary>
public readonly record struct StepToken(int Slot, int Position);

/// <summary>
/// The Phi-3 decoder stack of a serving step on the CPU kernels, without libtorch between the products: RMSNorm, RoPE,
/// the KV write, attention over each token's slot, SiLU gating and the residual adds run in C# over preallocated
/// float32 buffers, the four products of every layer in <see cref="PackedWeight"/>. A decode step through libtorch
/// makes about 40 calls per layer at 3-5 us each, which at the issue-19 bench shape was a third of a batch-1 token;
/// here a layer is four products and a handful of loops. Same arithmetic as <see cref="Phi3Model.Forward"/>
/// (activations in float32 whatever the model's dtype; the cache keeps its dtype). Exists only when every layer's
/// linear weights are packed (<see cref="XGenMMModel.PackDecoder"/>) and the model is on the CPU.
/// </summary>
public sealed unsafe class CpuDecoderStep
{
    private sealed record LayerWeights(float[] InputNorm, float[] PostAttentionNorm, PackedWeight Qkv, PackedWeight Out, PackedWeight GateUp, PackedWeight Down);

    private readonly LayerWeights[] _layers;
    private readonly float[] _finalNorm, _inverseFrequencies;
    private readonly int _hidden, _heads, _headDim, _intermediate;
    private readonly float _eps;
    private readonly int? _window;
    private readonly KernelWorkers _workers;
    private StepBuffers? _buffers;

    private CpuDecoderStep(LayerWeights[] layers, float[] finalNorm, float[] inverseFrequencies, Configuration.TextConfig config, KernelWorkers workers)
    {
        _layers = layers;
        _finalNorm = finalNorm;
        // The model's own RoPE frequencies, so that both paths rotate by the same numbers.
        _inverseFrequencies = inverseFrequencies;
        _hidden = config.HiddenSize;
        _heads = config.NumAttentionHeads;
        _headDim = config.HeadDim;
        _intermediate = config.IntermediateSize;
        _eps = (float)config.RmsNormEps;
        _window = config.SlidingWindow;
        _workers = workers;
    }

    /// <summary>The step for <paramref name="model"/>, or null when some layer is not packed or the model is not on the CPU.</summary>
    public static CpuDecoderStep? TryCreate(Phi3Model model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var config = model.Config;
        if (config.HiddenSize != config.NumAttentionHeads * config.HeadDim) return null;
        var layers = new LayerWeights[model.Layers.Count];
        for (int i = 0; i < layers.Length; i++)
        {
            var layer = model.Layers[i];
            if (layer.Attention.QkvProjection.Packed is not { } qkv || layer.Attention.OutProjection.Packed is not { } output
                || layer.Mlp.GateUpProjection.Packed is not { } gateUp || layer.Mlp.DownProjection.Packed is not { } down)
                return null;
            layers[i] = new LayerWeights(Floats(layer.InputNorm.Weight), Floats(layer.PostAttentionNorm.Weight), qkv, output, gateUp, down);
        }
        return new CpuDecoderStep(layers, Floats(model.Norm.Weight), Floats(model.Rope.InverseFrequencies), config, KernelWorkers.Shared);
    }

    private static float[] Floats(Tensor t)
    {
        using var f = t.detach().to_type(ScalarType.Float32).cpu().contiguous();
        return f.data<float>().ToArray();
    }

    /// <summary>
    /// Runs every layer over the step's tokens and returns the final-normed hidden state of the
    /// <paramref name="sampled"/> tokens. Each token's key and value go to the cache at its slot and position, and
    /// it attends over that slot (positions up to its own, within the sliding window).
    /// </summary>
    /// <param name="embeddings">[N, D] the tokens' input embeddings (CPU, any float dtype).</param>
    /// <param name="tokens">N placements, in the order of <paramref name="embeddings"/>; no two alike.</param>
    /// <param name="keys">Per layer [Slots, H, MaxLength, d], float32 or bfloat16, contiguous.</param>
    /// <param name="values">Per layer, like <paramref name="keys"/>.</param>
    /// <param name="sampled">Indices of the tokens whose output is wanted.</param>
    /// <returns>[sampled, D] float32.</returns>
    public Tensor Forward(Tensor embeddings, ReadOnlySpan<StepToken> tokens, IReadOnlyList<Tensor> keys, IReadOnlyList<Tensor> values, ReadOnlySpan<int> sampled)
    {
        int n = tokens.Length;
        if (embeddings.dim() != 2 || embeddings.shape[0] != n || embeddings.shape[1] != _hidden)
            throw new ArgumentException($"expected [{n}, {_hidden}] embeddings, got [{string.Join(", ", embeddings.shape)}].", nameof(embeddings));
        if (keys.Count != _layers.Length || values.Count != _layers.Length)
            throw new ArgumentException($"the cache has {keys.Count} layers, the model {_layers.Length}.", nameof(keys));
        var cacheType = keys[0].dtype;
        int maxLength = (int)keys[0].shape[2];
        var attention = new CachedAttention(_heads, _headDim, maxLength, _window, cacheType);
        var b = Buffers(n);
        for (int t = 0; t < n; t++)
        {
            var (slot, position) = tokens[t];
            if ((uint)slot >= (ulong)keys[0].shape[0] || (uint)position >= (uint)maxLength)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token {t} at slot {slot}, position {position} is outside the cache.");
            b.Slots[t] = slot;
            b.Positions[t] = position;
        }
        using (var input = embeddings.to_type(ScalarType.Float32).contiguous())
            new ReadOnlySpan<float>(TensorMemory.Floats(input), n * _hidden).CopyTo(b.Hidden.AsSpan(0, n * _hidden));
        RotaryTables(b, n);

        fixed (float* h = b.Hidden, normed = b.Normed, qkv = b.Qkv, attended = b.Attended, projected = b.Projected, gateUp = b.GateUp, gated = b.Gated)
        {
            for (int l = 0; l < _layers.Length; l++)
            {
                var layer = _layers[l];
                void* k = TensorMemory.Data(keys[l]), v = TensorMemory.Data(values[l]);
                // h = h + o(attention(rope(qkv(norm(h)))))
                RmsNorm(h, normed, n, layer.InputNorm);
                layer.Qkv.Multiply(normed, qkv, n, _workers);
                Rotate(b, qkv, n);
                attention.Store(qkv, b.Slots, b.Positions, n, k, v);
                attention.Run(_workers, qkv, attended, b.Slots, b.Positions, n, k, v);
                layer.Out.Multiply(attended, projected, n, _workers);
                Add(h, projected, (long)n * _hidden);
                // h = h + down(up * silu(gate)), gate_up rows [gate | up]
                RmsNorm(h, normed, n, layer.PostAttentionNorm);
                layer.GateUp.Multiply(normed, gateUp, n, _workers);
                Gate(gateUp, gated, n);
                layer.Down.Multiply(gated, projected, n, _workers);
                Add(h, projected, (long)n * _hidden);
            }
            var output = torch.empty([sampled.Length, _hidden], ScalarType.Float32);
            float* o = TensorMemory.Floats(output);
            for (int i = 0; i < sampled.Length; i++)
            {
                int t = sampled[i];
                if ((uint)t >= (uint)n) { output.Dispose(); throw new ArgumentOutOfRangeException(nameof(sampled), $"token {t} of {n}."); }
                RmsNorm(h + (long)t * _hidden, o + (long)i * _hidden, 1, _finalNorm);
            }
            return output;
        }
    }

    /// <summary>Phi-3 RMSNorm in float32: w * (x * rsqrt(mean(x^2) + eps)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RmsNorm(float* x, float* y, int rows, float[] weight)
    {
        int d = _hidden;
        fixed (float* w = weight)
            for (int r = 0; r < rows; r++)
            {
                float* xr = x + (long)r * d, yr = y + (long)r * d;
                var acc = Vector256<float>.Zero;
                int i = 0;
                for (; i + 8 <= d; i += 8) { var v = Vector256.Load(xr + i); acc = Vector256.FusedMultiplyAdd(v, v, acc); }
                float sum = Vector256.Sum(acc);
                for (; i < d; i++) sum += xr[i] * xr[i];
                float inverse = 1f / MathF.Sqrt(sum / d + _eps);
                var s = Vector256.Create(inverse);
                for (i = 0; i + 8 <= d; i += 8) (Vector256.Load(w + i) * (Vector256.Load(xr + i) * s)).Store(yr + i);
                for (; i < d; i++) yr[i] = w[i] * (xr[i] * inverse);
            }
    }

    /// <summary>cos/sin of position x inverse frequency, per token: [N, d/2] each.</summary>
    private void RotaryTables(StepBuffers b, int n)
    {
        int half = _headDim / 2;
        for (int t = 0; t < n; t++)
        {
            float position = b.Positions[t];
            for (int i = 0; i < half; i++)
            {
                float angle = position * _inverseFrequencies[i];
                b.Cos[t * half + i] = MathF.Cos(angle);
                b.Sin[t * half + i] = MathF.Sin(angle);
            }
        }
    }

    /// <summary>RoPE ("rotate_half" layout) on the Q and K thirds of each qkv row, in place.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Rotate(StepBuffers b, float* qkv, int n)
    {
        int half = _headDim / 2;
        fixed (float* cos = b.Cos, sin = b.Sin)
            for (int t = 0; t < n; t++)
            {
                float* c = cos + (long)t * half, s = sin + (long)t * half;
                float* row = qkv + (long)t * 3 * _hidden;
                // Q and K heads are adjacent: 2H heads of d from the start of the row.
                for (int head = 0; head < 2 * _heads; head++)
                {
                    float* x1 = row + head * _headDim, x2 = x1 + half;
                    int i = 0;
                    for (; i + 8 <= half; i += 8)
                    {
                        var a = Vector256.Load(x1 + i);
                        var z = Vector256.Load(x2 + i);
                        var cv = Vector256.Load(c + i);
                        var sv = Vector256.Load(s + i);
                        (a * cv - z * sv).Store(x1 + i);
                        (z * cv + a * sv).Store(x2 + i);
                    }
                    for (; i < half; i++)
                    {
                        float a = x1[i], z = x2[i];
                        x1[i] = a * c[i] - z * s[i];
                        x2[i] = z * c[i] + a * s[i];
                    }
                }
            }
    }

    /// <summary>gated[t] = up * silu(gate) for gate_up rows [gate | up].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Gate(float* gateUp, float* gated, int n)
    {
        int f = _intermediate;
        for (int t = 0; t < n; t++)
        {
            float* g = gateUp + (long)t * 2 * f, u = g + f, o = gated + (long)t * f;
            int i = 0;
            for (; i + 8 <= f; i += 8)
            {
                var x = Vector256.Load(g + i);
                (Vector256.Load(u + i) * (x / (Vector256<float>.One + Vector256.Exp(-x)))).Store(o + i);
            }
            for (; i < f; i++) o[i] = u[i] * (g[i] / (1f + MathF.Exp(-g[i])));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Add(float* h, float* delta, long count)
    {
        long i = 0;
        for (; i + 8 <= count; i += 8) (Vector256.Load(h + i) + Vector256.Load(delta + i)).Store(h + i);
        for (; i < count; i++) h[i] += delta[i];
    }

    private StepBuffers Buffers(int tokens)
    {
        if (_buffers is null || _buffers.Tokens < tokens)
            _buffers = new StepBuffers(Math.Max(tokens, 2 * (_buffers?.Tokens ?? 0)), _hidden, _intermediate, _headDim);
        return _buffers;
    }

    /// <summary>Every float32 buffer a step needs, pinned, grown only when a step has more tokens than any before.</summary>
    private sealed class StepBuffers
    {
        public StepBuffers(int tokens, int hidden, int intermediate, int headDim)
        {
            Tokens = tokens;
            Hidden = Pinned(tokens * hidden);
            Normed = Pinned(tokens * hidden);
            Qkv = Pinned(tokens * 3 * hidden);
            Attended = Pinned(tokens * hidden);
            Projected = Pinned(tokens * hidden);
            GateUp = Pinned(tokens * 2 * intermediate);
            Gated = Pinned(tokens * intermediate);
            Cos = new float[tokens * (headDim / 2)];
            Sin = new float[tokens * (headDim / 2)];
            Slots = new int[tokens];
            Positions = new int[tokens];
        }

        public int Tokens { get; }
        public float[] Hidden { get; }
        public float[] Normed { get; }
        public float[] Qkv { get; }
        public float[] Attended { get; }
        public float[] Projected { get; }
        public float[] GateUp { get; }
        public float[] Gated { get; }
        public float[] Cos { get; }
        public float[] Sin { get; }
        public int[] Slots { get; }
        public int[] Positions { get; }

        private static float[] Pinned(int length) => GC.AllocateUninitializedArray<float>(length, pinned: true);
    }
}
