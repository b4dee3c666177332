using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace XGenMM.Model.Kernels;

/// <summary>How the decoder's linear weights are held on CPU.</summary>
public enum WeightFormat
{
    /// <summary>float32, packed for the AVX2 kernel (same numbers as the checkpoint loaded in float32).</summary>
    F32,
    /// <summary>bfloat16 (the float32 value rounded to its top 16 bits), widened to float32 in the kernel: half the
    /// bytes per token.</summary>
    BF16,
    /// <summary>int8 with one float32 scale per group of <see cref="PackedWeight.DefaultGroupSize"/> input
    /// features per output (llama.cpp's q8_0 layout choice): about a quarter of the bytes per token. The product runs
    /// in integers: each input row is rounded to int16 with one scale per row (error at most max|x| / 65534 per
    /// value, far below the weights' own rounding), then multiplied pairwise with the int8 weights.</summary>
    Q8,
}

/// <summary>The configuration names of the decoder weight formats (Model:WeightFormat).</summary>
public static class WeightFormats
{
    /// <summary>The names accepted, first the canonical ones.</summary>
    public const string Names = "torch, f32, bf16, int8";

    /// <summary>"torch" (libtorch's mat-mul over the loaded tensors: null), "f32", "bf16" or "int8" (also the long
    /// spellings float32, bfloat16, q8_0).</summary>
    /// <exception cref="ArgumentException">Any other name.</exception>
    public static WeightFormat? Parse(string name) => name.Trim().ToLowerInvariant() switch
    {
        "torch" => null,
        "f32" or "float32" or "fp32" => WeightFormat.F32,
        "bf16" or "bfloat16" => WeightFormat.BF16,
        "int8" or "q8" or "q8_0" => WeightFormat.Q8,
        _ => throw new ArgumentException($"Weight format '{name}' is not one of {Names}.", nameof(name)),
    };
}

/// <summary>A column segment of a source weight stored [in, out] row-major: <paramref name="Columns"/> columns
/// starting at <paramref name="Data"/>, rows <paramref name="RowStride"/> floats apart.</summary>
internal readonly unsafe struct WeightSource(float* data, long rowStride, int columns)
{
    public float* Data { get; } = data;
    public long RowStride { get; } = rowStride;
    public int Columns { get; } = columns;
}

/// <summary>
/// A linear layer's weight repacked once at load for <see cref="Multiply"/>: blocks of 16 output columns, each
/// block's K x 16 values contiguous (k-major), so the kernel streams every block front to back and a weight vector
/// loaded once serves up to six input rows. int8 blocks hold pairs of k side by side per column (k, k+1 for columns
/// 0..15, then k+2, k+3...), the order <c>vpmaddwd</c> multiplies in. Held in native memory on 2 MiB pages where
/// the kernel grants them (fewer TLB misses while a step streams gigabytes); the caller drops the tensor.
/// </summary>
public sealed unsafe partial class PackedWeight : IDisposable
{
    public const int BlockColumns = 16;
    public const int DefaultGroupSize = 32;
    private const int MaxTileRows = 6;

    private byte* _weights;
    private float* _scales;
    private float* _bias;
    private readonly int _blocks;
    private readonly int _groups;
    private readonly long _blockBytes;

    public int InFeatures { get; }
    public int OutFeatures { get; }
    public WeightFormat Format { get; }
    /// <summary>Input features sharing one scale (int8 only; equal to <see cref="InFeatures"/> for per-channel).</summary>
    public int GroupSize { get; }
    /// <summary>Native bytes held (weights, scales, bias).</summary>
    public long ByteLength { get; }

    /// <summary>Whether this CPU runs the kernels (x86-64 with AVX2 and FMA).</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    private PackedWeight(int inFeatures, int outFeatures, WeightFormat format, int groupSize, bool hasBias)
    {
        if (!IsSupported) throw new PlatformNotSupportedException("The packed CPU kernels need AVX2 and FMA.");
        ArgumentOutOfRangeException.ThrowIfLessThan(inFeatures, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(outFeatures, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(groupSize, 1);
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Format = format;
        GroupSize = format == WeightFormat.Q8 ? Math.Min(groupSize, inFeatures) : inFeatures;
        // Integer pairs never straddle two groups' scales.
        if (format == WeightFormat.Q8 && GroupSize % 2 != 0 && GroupSize < inFeatures)
            throw new ArgumentException($"An int8 group of {groupSize} input features is odd; groups hold pairs of features.", nameof(groupSize));
        _blocks = (outFeatures + BlockColumns - 1) / BlockColumns;
        _groups = (inFeatures + GroupSize - 1) / GroupSize;
        int bytesPerWeight = format switch { WeightFormat.F32 => 4, WeightFormat.BF16 => 2, _ => 1 };
        // int8 pads k to an even count with zero weights (the pair of the last odd feature).
        long storedK = format == WeightFormat.Q8 ? (inFeatures + 1) & ~1 : inFeatures;
        _blockBytes = storedK * BlockColumns * bytesPerWeight;
        long weightBytes = _blockBytes * _blocks;
        _weights = (byte*)LargePages.Allocate(weightBytes);
        long total = weightBytes;
        if (format == WeightFormat.Q8)
        {
            long scaleBytes = (long)_blocks * _groups * BlockColumns * sizeof(float);
            _scales = (float*)NativeMemory.AlignedAlloc((nuint)scaleBytes, 64);
            total += scaleBytes;
        }
        if (hasBias)
        {
            long biasBytes = (long)_blocks * BlockColumns * sizeof(float);
            _bias = (float*)NativeMemory.AlignedAlloc((nuint)biasBytes, 64);
            NativeMemory.Clear(_bias, (nuint)biasBytes);
            total += biasBytes;
        }
        ByteLength = total;
    }

    /// <summary>Packs the column segments <paramref name="sources"/> (side by side, in order) of a weight stored
    /// [in, out] into one packed weight of their summed width.</summary>
    internal static PackedWeight Pack(int inFeatures, ReadOnlySpan<WeightSource> sources, ReadOnlySpan<float> bias, WeightFormat format,
        int groupSize = DefaultGroupSize)
    {
        int outFeatures = 0;
        foreach (var s in sources) outFeatures += s.Columns;
        if (!bias.IsEmpty && bias.Length != outFeatures)
            throw new ArgumentException($"bias has {bias.Length} values for {outFeatures} outputs.", nameof(bias));
        var packed = new PackedWeight(inFeatures, outFeatures, format, groupSize, !bias.IsEmpty);
        try
        {
            packed.Fill(sources, bias);
        }
        catch
        {
            packed.Dispose();
            throw;
        }
        return packed;
    }

    private void Fill(ReadOnlySpan<WeightSource> sources, ReadOnlySpan<float> bias)
    {
        int k = InFeatures;
        // Output column n -> (source, column within it).
        var columnSource = new (int Source, int Column)[OutFeatures];
        for (int s = 0, n = 0; s < sources.Length; s++)
            for (int c = 0; c < sources[s].Columns; c++) columnSource[n++] = (s, c);
        Span<float> block = new float[k * BlockColumns];
        for (int b = 0; b < _blocks; b++)
        {
            block.Clear();
            for (int c = 0; c < BlockColumns; c++)
            {
                int n = b * BlockColumns + c;
                if (n >= OutFeatures) break;
                var (s, column) = columnSource[n];
                var src = sources[s];
                for (int i = 0; i < k; i++) block[i * BlockColumns + c] = src.Data[i * src.RowStride + column];
            }
            StoreBlock(b, block);
        }
        if (_bias is not null) bias.CopyTo(new Span<float>(_bias, OutFeatures));
    }

    private void StoreBlock(int b, ReadOnlySpan<float> block)
    {
        byte* dst = _weights + b * _blockBytes;
        switch (Format)
        {
            case WeightFormat.F32:
                block.CopyTo(new Span<float>(dst, block.Length));
                break;
            case WeightFormat.BF16:
                var halves = new Span<ushort>(dst, block.Length);
                // Per k: columns i and i + 8 side by side, so that one 32-byte load holds all 16 and a shift and a
                // mask widen them (BF16Weights.Load).
                for (int row = 0; row < block.Length; row += BlockColumns)
                    for (int c = 0; c < BlockColumns / 2; c++)
                    {
                        halves[row + 2 * c] = ToBFloat16(block[row + c]);
                        halves[row + 2 * c + 1] = ToBFloat16(block[row + c + BlockColumns / 2]);
                    }
                break;
            default:
                var q = new Span<sbyte>(dst, (int)_blockBytes);
                q.Clear();
                for (int g = 0; g < _groups; g++)
                {
                    int k0 = g * GroupSize, k1 = Math.Min(InFeatures, k0 + GroupSize);
                    float* scales = _scales + ((long)b * _groups + g) * BlockColumns;
                    for (int c = 0; c < BlockColumns; c++)
                    {
                        float max = 0;
                        for (int i = k0; i < k1; i++) max = MathF.Max(max, MathF.Abs(block[i * BlockColumns + c]));
                        float scale = max / 127f;
                        scales[c] = scale;
                        float inverse = scale == 0 ? 0 : 1f / scale;
                        for (int i = k0; i < k1; i++)
                            q[(int)Q8Index(i, c)] = (sbyte)Math.Clamp(MathF.Round(block[i * BlockColumns + c] * inverse, MidpointRounding.ToEven), -127, 127);
                    }
                }
                break;
        }
    }

    /// <summary>Packs a weight tensor stored [in, out] (any float dtype, CPU) and an optional bias [out].</summary>
    public static PackedWeight FromTensor(TorchSharp.torch.Tensor weight, TorchSharp.torch.Tensor? bias, WeightFormat format, int groupSize = DefaultGroupSize)
    {
        if (weight.dim() != 2) throw new ArgumentException($"expected a 2-D [in, out] weight, got {weight.dim()}-D.", nameof(weight));
        using var scope = TorchSharp.torch.NewDisposeScope();
        var w = PackedLinear.AsFloat32(weight);
        var b = bias is null ? null : PackedLinear.AsFloat32(bias);
        int columns = (int)w.shape[1];
        var source = new WeightSource(TensorMemory.Floats(w), columns, columns);
        return Pack((int)w.shape[0], [source], b is null ? ReadOnlySpan<float>.Empty : new ReadOnlySpan<float>(TensorMemory.Floats(b), (int)b.numel()), format, groupSize);
    }

    /// <summary>x [..., in] (CPU) -> x W + bias, [..., out] in x's dtype, over every core.</summary>
    public TorchSharp.torch.Tensor Forward(TorchSharp.torch.Tensor x) => PackedLinear.Forward(this, x);

    /// <summary>float32 -> bfloat16 rounded to nearest even (NaN stays NaN).</summary>
    public static ushort ToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    /// <summary>The value the kernel multiplies with for weight (k, n): what packing kept of the original.</summary>
    public float Dequantized(int k, int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(k, InFeatures);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(n, OutFeatures);
        int b = n / BlockColumns, c = n % BlockColumns;
        long index = (long)k * BlockColumns + c;
        byte* block = _weights + b * _blockBytes;
        return Format switch
        {
            WeightFormat.F32 => ((float*)block)[index],
            WeightFormat.BF16 => BitConverter.UInt32BitsToSingle((uint)((ushort*)block)[(long)k * BlockColumns + (c < 8 ? 2 * c : 2 * (c - 8) + 1)] << 16),
            _ => ((sbyte*)block)[Q8Index(k, c)] * _scales[((long)b * _groups + k / GroupSize) * BlockColumns + c],
        };
    }

    /// <summary>y[M, out] = x[M, in] W (+ bias), both row-major and contiguous, over every core of
    /// <paramref name="workers"/> (the shared pool when null).</summary>
    internal void Multiply(float* x, float* y, int rows, KernelWorkers? workers = null)
    {
        ObjectDisposedException.ThrowIf(_weights is null, this);
        if (rows <= 0) return;
        var job = new MatMulJob { Weight = this, X = x, Y = y, Rows = rows, Units = _blocks };
        if (Format == WeightFormat.Q8)
        {
            // Rounded once here for every participant's share.
            var activations = Int16Activations.ForThisThread(rows, (InFeatures + 1) & ~1);
            activations.Quantize(x, rows, InFeatures);
            job.Activations = activations;
        }
        (workers ?? KernelWorkers.Shared).Run(job);
    }

    /// <summary>Single-threaded share of a product: output column blocks [from, to) for all rows.</summary>
    internal void MultiplyBlocks(float* x, Int16Activations? activations, float* y, int rows, int fromBlock, int toBlock)
    {
        switch (Format)
        {
            case WeightFormat.F32: Blocks<F32Weights>(x, y, rows, fromBlock, toBlock); break;
            case WeightFormat.BF16: Blocks<BF16Weights>(x, y, rows, fromBlock, toBlock); break;
            default: Q8Blocks(activations ?? throw new InvalidOperationException("int8 products take rounded activations."), y, rows, fromBlock, toBlock); break;
        }
    }

    private void Blocks<TFormat>(float* x, float* y, int rows, int fromBlock, int toBlock) where TFormat : struct, IFormat
    {
        // More rows than one tile: widen each bfloat16 block once into float32 and run the float32 tiles over it,
        // rather than widen it again for every tile of rows (a 64-token prompt chunk would widen it 11 times).
        if (typeof(TFormat) == typeof(BF16Weights) && rows > MaxTileRows)
        {
            WidenedBlocks(x, y, rows, fromBlock, toBlock);
            return;
        }
        float* tail = stackalloc float[MaxTileRows * BlockColumns];
        for (int b = fromBlock; b < toBlock; b++) BlockRows<TFormat>(x, _weights + b * _blockBytes, y, rows, b, tail);
    }

    [ThreadStatic] private static float[]? t_widened;

    private void WidenedBlocks(float* x, float* y, int rows, int fromBlock, int toBlock)
    {
        long values = (long)InFeatures * BlockColumns;
        var widened = t_widened is { } buffer && buffer.Length >= values ? buffer : t_widened = GC.AllocateUninitializedArray<float>((int)values, pinned: true);
        float* tail = stackalloc float[MaxTileRows * BlockColumns];
        fixed (float* block = widened)
            for (int b = fromBlock; b < toBlock; b++)
            {
                byte* source = _weights + b * _blockBytes;
                for (long i = 0; i < values; i += BlockColumns)
                {
                    var (lo, hi) = BF16Weights.Load(source, i);
                    lo.Store(block + i);
                    hi.Store(block + i + 8);
                }
                BlockRows<F32Weights>(x, (byte*)block, y, rows, b, tail);
            }
    }

    /// <summary>All rows of x against block <paramref name="b"/> (its weights at <paramref name="w"/> in
    /// <typeparamref name="TFormat"/>), a tile of rows at a time. A partial last block computes into
    /// <paramref name="tail"/> and copies the valid columns out.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void BlockRows<TFormat>(float* x, byte* w, float* y, int rows, int b, float* tail) where TFormat : struct, IFormat
    {
        int k = InFeatures, n = OutFeatures;
        float* bias = _bias is null ? null : _bias + b * BlockColumns;
        int columns = Math.Min(BlockColumns, n - b * BlockColumns);
        bool partial = columns < BlockColumns;
        for (int r = 0; r < rows;)
        {
            int tile = Math.Min(MaxTileRows, rows - r);
            float* xr = x + (long)r * k;
            float* yr = partial ? tail : y + (long)r * n + b * BlockColumns;
            int ldy = partial ? BlockColumns : n;
            switch (tile)
            {
                case 6: Tile<TFormat, R6>(xr, w, bias, yr, ldy); break;
                case 5: Tile<TFormat, R5>(xr, w, bias, yr, ldy); break;
                case 4: Tile<TFormat, R4>(xr, w, bias, yr, ldy); break;
                case 3: Tile<TFormat, R3>(xr, w, bias, yr, ldy); break;
                case 2: Tile<TFormat, R2>(xr, w, bias, yr, ldy); break;
                default: Tile<TFormat, R1>(xr, w, bias, yr, ldy); break;
            }
            if (partial)
                for (int i = 0; i < tile; i++)
                    new ReadOnlySpan<float>(tail + i * BlockColumns, columns).CopyTo(new Span<float>(y + (long)(r + i) * n + b * BlockColumns, columns));
            r += tile;
        }
    }

    // One tile: TRows input rows x 16 output columns over all K, accumulators in registers. Generic over structs so
    // the JIT compiles one specialised body per (format, rows) with the unused rows' code removed.
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private void Tile<TFormat, TRows>(float* x, byte* w, float* bias, float* y, int ldy)
        where TFormat : struct, IFormat where TRows : struct, IRows
    {
        int rows = TRows.Count;
        int k = InFeatures;
        long x1 = k, x2 = 2L * k, x3 = 3L * k, x4 = 4L * k, x5 = 5L * k;
        Vector256<float> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default,
            a3 = default, b3 = default, a4 = default, b4 = default, a5 = default, b5 = default;
        int i = 0;
        if (rows <= 2)
        {
            // One or two rows are bound by the FMA latency, not by throughput: a second set of accumulators for
            // odd k (the unused rows' registers) keeps two independent chains per output vector.
            for (; i + 1 < k; i += 2)
            {
                var (w0, w1) = TFormat.Load(w, (long)i * BlockColumns);
                var (w2, w3) = TFormat.Load(w, (long)(i + 1) * BlockColumns);
                var v = Vector256.Create(x[i]);
                a0 = Fma.MultiplyAdd(v, w0, a0);
                b0 = Fma.MultiplyAdd(v, w1, b0);
                v = Vector256.Create(x[i + 1]);
                a2 = Fma.MultiplyAdd(v, w2, a2);
                b2 = Fma.MultiplyAdd(v, w3, b2);
                if (rows > 1)
                {
                    v = Vector256.Create(x[x1 + i]);
                    a1 = Fma.MultiplyAdd(v, w0, a1);
                    b1 = Fma.MultiplyAdd(v, w1, b1);
                    v = Vector256.Create(x[x1 + i + 1]);
                    a3 = Fma.MultiplyAdd(v, w2, a3);
                    b3 = Fma.MultiplyAdd(v, w3, b3);
                }
            }
        }
        for (; i < k; i++)
        {
            var (w0, w1) = TFormat.Load(w, (long)i * BlockColumns);
            var v = Vector256.Create(x[i]);
            a0 = Fma.MultiplyAdd(v, w0, a0);
            b0 = Fma.MultiplyAdd(v, w1, b0);
            if (rows > 1) { v = Vector256.Create(x[x1 + i]); a1 = Fma.MultiplyAdd(v, w0, a1); b1 = Fma.MultiplyAdd(v, w1, b1); }
            if (rows > 2) { v = Vector256.Create(x[x2 + i]); a2 = Fma.MultiplyAdd(v, w0, a2); b2 = Fma.MultiplyAdd(v, w1, b2); }
            if (rows > 3) { v = Vector256.Create(x[x3 + i]); a3 = Fma.MultiplyAdd(v, w0, a3); b3 = Fma.MultiplyAdd(v, w1, b3); }
            if (rows > 4) { v = Vector256.Create(x[x4 + i]); a4 = Fma.MultiplyAdd(v, w0, a4); b4 = Fma.MultiplyAdd(v, w1, b4); }
            if (rows > 5) { v = Vector256.Create(x[x5 + i]); a5 = Fma.MultiplyAdd(v, w0, a5); b5 = Fma.MultiplyAdd(v, w1, b5); }
        }
        if (rows <= 2)
        {
            a0 = Avx.Add(a0, a2);
            b0 = Avx.Add(b0, b2);
            a1 = Avx.Add(a1, a3);
            b1 = Avx.Add(b1, b3);
        }
        Vector256<float> c0 = default, c1 = default;
        bool hasBias = bias is not null;
        if (hasBias) { c0 = Avx.LoadVector256(bias); c1 = Avx.LoadVector256(bias + 8); }
        Store(y, a0, b0, hasBias, c0, c1);
        if (rows > 1) Store(y + ldy, a1, b1, hasBias, c0, c1);
        if (rows > 2) Store(y + 2L * ldy, a2, b2, hasBias, c0, c1);
        if (rows > 3) Store(y + 3L * ldy, a3, b3, hasBias, c0, c1);
        if (rows > 4) Store(y + 4L * ldy, a4, b4, hasBias, c0, c1);
        if (rows > 5) Store(y + 5L * ldy, a5, b5, hasBias, c0, c1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* y, Vector256<float> lo, Vector256<float> hi, bool hasBias, Vector256<float> biasLo, Vector256<float> biasHi)
    {
        if (hasBias)
        {
            lo = Avx.Add(lo, biasLo);
            hi = Avx.Add(hi, biasHi);
        }
        Avx.Store(y, lo);
        Avx.Store(y + 8, hi);
    }

    private interface IFormat
    {
        /// <summary>The 16 weights of one k of a block (element <paramref name="index"/> = k * 16), widened to float32:
        /// columns 0-7 and 8-15.</summary>
        static abstract (Vector256<float> Lo, Vector256<float> Hi) Load(byte* block, long index);
    }

    private readonly struct F32Weights : IFormat
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static (Vector256<float> Lo, Vector256<float> Hi) Load(byte* block, long index) =>
            (Avx.LoadVector256((float*)block + index), Avx.LoadVector256((float*)block + index + 8));
    }

    private readonly struct BF16Weights : IFormat
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static (Vector256<float> Lo, Vector256<float> Hi) Load(byte* block, long index)
        {
            // Lane i holds columns i (low half) and i + 8 (high half): a bfloat16 is a float32's top 16 bits.
            var v = Avx.LoadVector256((uint*)((ushort*)block + index));
            return (Avx2.ShiftLeftLogical(v, 16).AsSingle(), Avx2.And(v, Vector256.Create(0xFFFF0000u)).AsSingle());
        }
    }

    private interface IRows { static abstract int Count { get; } }
    private readonly struct R1 : IRows { public static int Count => 1; }
    private readonly struct R2 : IRows { public static int Count => 2; }
    private readonly struct R3 : IRows { public static int Count => 3; }
    private readonly struct R4 : IRows { public static int Count => 4; }
    private readonly struct R5 : IRows { public static int Count => 5; }
    private readonly struct R6 : IRows { public static int Count => 6; }

    public void Dispose()
    {
        LargePages.Free(_weights);
        NativeMemory.AlignedFree(_scales);
        NativeMemory.AlignedFree(_bias);
        _weights = null;
        _scales = null;
        _bias = null;
    }
}
