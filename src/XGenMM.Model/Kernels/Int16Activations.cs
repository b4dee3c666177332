using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace XGenMM.Model.Kernels;

/// <summary>
/// The input rows of an int8 product rounded to int16, one scale per row (max|x| / 32767): the integer kernel
/// multiplies int8 weights by these in pairs (<c>vpmaddwd</c>). The rounding error, at most max|x| / 65534 per value,
/// is about 250 times smaller than the int8 weights' own step, so the product's accuracy is the weights'. One buffer
/// per calling thread, grown as needed and reused by every product that thread starts.
/// </summary>
internal sealed unsafe class Int16Activations
{
    [ThreadStatic] private static Int16Activations? t_buffer;

    private short[] _values = [];
    private float[] _scales = [];

    /// <summary>Row r starts at <c>Values + r * Stride</c>; k is padded with zeros to <see cref="Stride"/>.</summary>
    public short* Values { get; private set; }
    public float* Scales { get; private set; }
    public int Stride { get; private set; }

    /// <summary>This thread's buffer, with room for <paramref name="rows"/> rows of <paramref name="stride"/> values.</summary>
    public static Int16Activations ForThisThread(int rows, int stride)
    {
        var buffer = t_buffer ??= new Int16Activations();
        buffer.Ensure(rows, stride);
        return buffer;
    }

    private void Ensure(int rows, int stride)
    {
        long values = (long)rows * stride;
        if (values > _values.Length)
        {
            _values = GC.AllocateUninitializedArray<short>(checked((int)Math.Max(values, 2L * _values.Length)), pinned: true);
            Values = (short*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_values));
        }
        if (rows > _scales.Length)
        {
            _scales = GC.AllocateUninitializedArray<float>(Math.Max(rows, 2 * _scales.Length), pinned: true);
            Scales = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_scales));
        }
        Stride = stride;
    }

    /// <summary>Rounds x[rows, k] (row-major) to nearest even; each row's largest magnitude becomes +-32767.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Quantize(float* x, int rows, int k)
    {
        for (int r = 0; r < rows; r++)
        {
            float* xr = x + (long)r * k;
            short* q = Values + (long)r * Stride;
            float max = MaxMagnitude(xr, k);
            float inverse = max > 0 && float.IsFinite(max) ? 32767f / max : 0f;
            // A NaN or infinity in the row makes the row's outputs NaN, as a float product would.
            Scales[r] = float.IsFinite(max) ? (inverse == 0 ? 0 : max / 32767f) : float.NaN;
            var scale = Vector256.Create(inverse);
            int i = 0;
            for (; i + 16 <= k; i += 16)
            {
                var lo = Avx.ConvertToVector256Int32(Avx.Multiply(Avx.LoadVector256(xr + i), scale));
                var hi = Avx.ConvertToVector256Int32(Avx.Multiply(Avx.LoadVector256(xr + i + 8), scale));
                // packssdw works within 128-bit lanes: put the four quarters back in order.
                var packed = Avx2.PackSignedSaturate(lo, hi);
                Avx.Store(q + i, Avx2.Permute4x64(packed.AsInt64(), 0b11_01_10_00).AsInt16());
            }
            for (; i < k; i++) q[i] = (short)Math.Clamp(MathF.Round(xr[i] * inverse, MidpointRounding.ToEven), -32767, 32767);
            for (; i < Stride; i++) q[i] = 0;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float MaxMagnitude(float* x, int k)
    {
        Vector256<float> max = Vector256<float>.Zero, nan = Vector256<float>.Zero;
        int i = 0;
        for (; i + 8 <= k; i += 8)
        {
            var v = Avx.LoadVector256(x + i);
            // maxps drops a NaN against a number: remember it on the side.
            nan = Avx.Or(nan, Avx.CompareUnordered(v, v));
            max = Avx.Max(max, Vector256.Abs(v));
        }
        if (!Vector256.EqualsAll(nan.AsInt32(), Vector256<int>.Zero)) return float.NaN;
        float m = 0;
        for (int j = 0; j < 8; j++) m = MathF.Max(m, max.GetElement(j));
        for (; i < k; i++) m = MathF.Max(m, MathF.Abs(x[i]));
        return m;
    }
}
