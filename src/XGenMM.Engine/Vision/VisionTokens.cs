using TorchSharp;
using static TorchSharp.torch;

namespace XGenMM.Engine.Vision;

/// <summary>Element type of <see cref="VisionTokens.Data"/> on the wire.</summary>
#pragma warning disable CA1720 // the members name the element types on purpose
public enum VisionTokenFormat
{
    Float16 = 0,
    BFloat16 = 1,
    Float32 = 2,
}
#pragma warning restore CA1720

/// <summary>
/// The resampled vision tokens of one image in a compact, transferable form: raw little-endian elements plus the
/// shape [Rows, Dim]. <see cref="ContentKey"/> identifies the image content (and preprocessing) so that prefix reuse
/// never matches different images behind the same placeholder ids.
/// </summary>
public sealed record VisionTokens(byte[] Data, int Rows, int Dim, VisionTokenFormat Format, string ContentKey)
{
    public static int ElementSize(VisionTokenFormat format) => format == VisionTokenFormat.Float32 ? 4 : 2;

    /// <summary>Checks that the byte count matches the shape; a corrupt payload must never reach the model.</summary>
    public void Validate(int expectedDim)
    {
        if (Rows <= 0) throw new ArgumentException($"Vision tokens have {Rows} rows; at least one is required.");
        if (Dim != expectedDim) throw new ArgumentException($"Vision tokens have width {Dim}; the model's embedding width is {expectedDim}.");
        long expected = (long)Rows * Dim * ElementSize(Format);
        if (Data.LongLength != expected)
            throw new ArgumentException($"Vision tokens hold {Data.LongLength} bytes; {Rows}x{Dim} {Format} needs {expected}.");
        if (string.IsNullOrEmpty(ContentKey)) throw new ArgumentException("Vision tokens need a content key.");
    }

    /// <summary>[Rows, Dim] tensor -> compact form.</summary>
    public static VisionTokens FromTensor(Tensor tokens, VisionTokenFormat format, string contentKey)
    {
        using var scope = torch.NewDisposeScope();
        var type = format switch
        {
            VisionTokenFormat.Float16 => ScalarType.Float16,
            VisionTokenFormat.BFloat16 => ScalarType.BFloat16,
            _ => ScalarType.Float32,
        };
        var cpu = tokens.detach().to_type(type).cpu().contiguous();
        var bytes = cpu.bytes.ToArray();
        return new VisionTokens(bytes, (int)tokens.shape[0], (int)tokens.shape[1], format, contentKey);
    }

    /// <summary>Compact form -> [Rows, Dim] tensor of <paramref name="dtype"/> on <paramref name="device"/>.</summary>
    public Tensor ToTensor(Device device, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        var type = Format switch
        {
            VisionTokenFormat.Float16 => ScalarType.Float16,
            VisionTokenFormat.BFloat16 => ScalarType.BFloat16,
            _ => ScalarType.Float32,
        };
        var raw = torch.empty([Rows, Dim], type);
        Data.AsSpan().CopyTo(raw.bytes);
        return raw.to(device).to_type(dtype).MoveToOuterDisposeScope();
    }
}
