namespace XGenMM.Model.Imaging;

/// <summary>An 8-bit RGB image, pixels interleaved row-major: Pixels[(y * Width + x) * 3 + channel].</summary>
public sealed class RgbImage
{
    public int Width { get; }
    public int Height { get; }
    public byte[] Pixels { get; }

    public RgbImage(int width, int height, byte[]? pixels = null)
    {
        if (width <= 0 || height <= 0) throw new ArgumentOutOfRangeException(nameof(width), $"image size {width}x{height} must be positive");
        Width = width;
        Height = height;
        Pixels = pixels ?? new byte[checked(width * height * 3)];
        if (Pixels.Length != width * height * 3) throw new ArgumentException("pixel buffer does not match the size", nameof(pixels));
    }
}
