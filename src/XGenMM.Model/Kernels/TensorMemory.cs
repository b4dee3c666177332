using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace XGenMM.Model.Kernels;

/// <summary>Raw access to a CPU tensor's memory for the kernels: TorchSharp exposes no data pointer, its native glue
/// does (the same call its own <c>data&lt;T&gt;()</c> accessor makes).</summary>
public static unsafe partial class TensorMemory
{
    [LibraryImport("LibTorchSharp")]
    private static partial IntPtr THSTensor_data(IntPtr tensor);

    /// <summary>The first element of a contiguous CPU tensor of any dtype (storage offset included).</summary>
    public static void* Data(Tensor t)
    {
        if (t.device_type != DeviceType.CPU || !t.is_contiguous())
            throw new ArgumentException($"expected a contiguous CPU tensor, got one on {t.device} (contiguous: {t.is_contiguous()}).", nameof(t));
        var p = THSTensor_data(t.Handle);
        if (p == IntPtr.Zero && t.numel() > 0) throw new InvalidOperationException("libtorch returned no data pointer for a non-empty tensor.");
        return (void*)p;
    }

    /// <summary>The first element of a contiguous float32 CPU tensor (storage offset included).</summary>
    public static float* Floats(Tensor t)
    {
        if (t.device_type != DeviceType.CPU || t.dtype != ScalarType.Float32 || !t.is_contiguous())
            throw new ArgumentException($"expected a contiguous float32 CPU tensor, got {t.dtype} on {t.device} (contiguous: {t.is_contiguous()}).", nameof(t));
        var p = THSTensor_data(t.Handle);
        if (p == IntPtr.Zero && t.numel() > 0) throw new InvalidOperationException("libtorch returned no data pointer for a non-empty tensor.");
        return (float*)p;
    }
}
