using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace XGenMM.Model.Kernels;

/// <summary>The int8 product in integers: int8 weights times int16 activations, pairwise (<c>vpmaddwd</c>: two
/// products and their sum per 32-bit lane), accumulated in int32 per group and scaled to float at the group's end.
/// Per 16 weights that is one widening load and one multiply-add per row, where a float kernel widens, converts and
/// scales each weight before its FMA.</summary>
public sealed unsafe partial class PackedWeight
{
    private const int MaxQ8TileRows = 4;
    /// <summary>Pairs summed in int32 before a flush to float: 256 x 2 x 127 x 32767 stays below 2^31.</summary>
    private const int MaxPairsPerFlush = 256;

    /// <summary>Byte offset of weight (k, column c) within its block: pairs of k side by side per column.</summary>
    private static long Q8Index(int k, int c) => (long)(k >> 1) * 2 * BlockColumns + c * 2 + (k & 1);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Q8Blocks(Int16Activations activations, float* y, int rows, int fromBlock, int toBlock)
    {
        int n = OutFeatures;
        float* tail = stackalloc float[MaxQ8TileRows * BlockColumns];
        for (int b = fromBlock; b < toBlock; b++)
        {
            var w = (sbyte*)(_weights + b * _blockBytes);
            float* scales = _scales + (long)b * _groups * BlockColumns;
            float* bias = _bias is null ? null : _bias + b * BlockColumns;
            int columns = Math.Min(BlockColumns, n - b * BlockColumns);
            bool partial = columns < BlockColumns;
            for (int r = 0; r < rows;)
            {
                int tile = Math.Min(MaxQ8TileRows, rows - r);
                short* xr = activations.Values + (long)r * activations.Stride;
                float* xScales = activations.Scales + r;
                float* yr = partial ? tail : y + (long)r * n + b * BlockColumns;
                int ldy = partial ? BlockColumns : n;
                switch (tile)
                {
                    case 4: Q8Tile<R4>(xr, activations.Stride, xScales, w, scales, bias, yr, ldy); break;
                    case 3: Q8Tile<R3>(xr, activations.Stride, xScales, w, scales, bias, yr, ldy); break;
                    case 2: Q8Tile<R2>(xr, activations.Stride, xScales, w, scales, bias, yr, ldy); break;
                    default: Q8Tile<R1>(xr, activations.Stride, xScales, w, scales, bias, yr, ldy); break;
                }
                if (partial)
                    for (int i = 0; i < tile; i++)
                        new ReadOnlySpan<float>(tail + i * BlockColumns, columns).CopyTo(new Span<float>(y + (long)(r + i) * n + b * BlockColumns, columns));
                r += tile;
            }
        }
    }

    // TRows activation rows x 16 output columns over all K. Each step takes one k pair: 32 weight bytes (16 columns x
    // 2 k) widened to two int16 vectors, and per row the pair (x[k], x[k+1]) broadcast as one int32.
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private void Q8Tile<TRows>(short* x, int ldx, float* xScales, sbyte* w, float* scales, float* bias, float* y, int ldy)
        where TRows : struct, IRows
    {
        int rows = TRows.Count;
        int k = InFeatures, groupSize = GroupSize;
        long x1 = ldx, x2 = 2L * ldx, x3 = 3L * ldx;
        Vector256<float> f0 = default, g0 = default, f1 = default, g1 = default, f2 = default, g2 = default, f3 = default, g3 = default;
        for (int k0 = 0; k0 < k; k0 += groupSize)
        {
            int pairEnd = (Math.Min(k, k0 + groupSize) + 1) >> 1;
            var s0 = Avx.LoadVector256(scales);
            var s1 = Avx.LoadVector256(scales + 8);
            scales += BlockColumns;
            for (int p = k0 >> 1; p < pairEnd;)
            {
                int flushAt = Math.Min(pairEnd, p + MaxPairsPerFlush);
                Vector256<int> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
                for (; p < flushAt; p++)
                {
                    sbyte* wp = w + (long)p * 2 * BlockColumns;
                    var lo = Avx2.ConvertToVector256Int16(wp);
                    var hi = Avx2.ConvertToVector256Int16(wp + 16);
                    long xi = 2L * p;
                    var v = Vector256.Create(*(int*)(x + xi)).AsInt16();
                    a0 = Avx2.Add(a0, Avx2.MultiplyAddAdjacent(lo, v));
                    b0 = Avx2.Add(b0, Avx2.MultiplyAddAdjacent(hi, v));
                    if (rows > 1)
                    {
                        v = Vector256.Create(*(int*)(x + x1 + xi)).AsInt16();
                        a1 = Avx2.Add(a1, Avx2.MultiplyAddAdjacent(lo, v));
                        b1 = Avx2.Add(b1, Avx2.MultiplyAddAdjacent(hi, v));
                    }
                    if (rows > 2)
                    {
                        v = Vector256.Create(*(int*)(x + x2 + xi)).AsInt16();
                        a2 = Avx2.Add(a2, Avx2.MultiplyAddAdjacent(lo, v));
                        b2 = Avx2.Add(b2, Avx2.MultiplyAddAdjacent(hi, v));
                    }
                    if (rows > 3)
                    {
                        v = Vector256.Create(*(int*)(x + x3 + xi)).AsInt16();
                        a3 = Avx2.Add(a3, Avx2.MultiplyAddAdjacent(lo, v));
                        b3 = Avx2.Add(b3, Avx2.MultiplyAddAdjacent(hi, v));
                    }
                }
                f0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a0), s0, f0);
                g0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(b0), s1, g0);
                if (rows > 1) { f1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a1), s0, f1); g1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(b1), s1, g1); }
                if (rows > 2) { f2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a2), s0, f2); g2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(b2), s1, g2); }
                if (rows > 3) { f3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a3), s0, f3); g3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(b3), s1, g3); }
            }
        }
        Vector256<float> c0 = default, c1 = default;
        bool hasBias = bias is not null;
        if (hasBias) { c0 = Avx.LoadVector256(bias); c1 = Avx.LoadVector256(bias + 8); }
        var r0 = Vector256.Create(xScales[0]);
        Store(y, Avx.Multiply(f0, r0), Avx.Multiply(g0, r0), hasBias, c0, c1);
        if (rows > 1) { var r1 = Vector256.Create(xScales[1]); Store(y + ldy, Avx.Multiply(f1, r1), Avx.Multiply(g1, r1), hasBias, c0, c1); }
        if (rows > 2) { var r2 = Vector256.Create(xScales[2]); Store(y + 2L * ldy, Avx.Multiply(f2, r2), Avx.Multiply(g2, r2), hasBias, c0, c1); }
        if (rows > 3) { var r3 = Vector256.Create(xScales[3]); Store(y + 3L * ldy, Avx.Multiply(f3, r3), Avx.Multiply(g3, r3), hasBias, c0, c1); }
    }
}
