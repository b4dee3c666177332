using SkiaSharp;

namespace XGenMM.Model.Imaging;

/// <summary>Limits applied before an image is decoded.</summary>
public sealed record ImageLimits
{
    /// <summary>Largest encoded size accepted.</summary>
    public long MaxBytes { get; init; } = 20L * 1024 * 1024;
    /// <summary>Largest width*height accepted, checked from the header before decoding (decompression bombs).</summary>
    public long MaxPixels { get; init; } = 40_000_000;
    /// <summary>Largest width or height accepted.</summary>
    public int MaxSide { get; init; } = 16384;

    public static ImageLimits Default { get; } = new();
}

/// <summary>What an image header says: size in pixels and the encoded format (jpeg, png, webp, bmp, gif).</summary>
public readonly record struct ImageHeader(int Width, int Height, string Format);

/// <summary>Why an image was refused.</summary>
public enum ImageErrorReason
{
    Empty,
    TooLarge,
    UnsupportedFormat,
    Corrupt,
    ZeroSize,
    TooManyPixels,
}

/// <summary>An image could not be used; <see cref="Reason"/> says why, the message says what to do.</summary>
public sealed class ImageDecodeException(ImageErrorReason reason, string message) : Exception(message)
{
    public ImageErrorReason Reason { get; } = reason;
}

/// <summary>
/// Decodes JPEG, PNG, WebP, BMP and GIF (first frame) with SkiaSharp into RGB. Alpha is dropped without compositing,
/// as PIL's <c>convert("RGB")</c> does. The EXIF orientation tag is ignored unless asked for: the original pipeline
/// (PIL <c>Image.open</c> + <c>convert("RGB")</c>, then the HF processor) never applies it, so the model was trained and
/// evaluated on the stored pixels.
/// </summary>
public static class ImageDecoder
{
    private static readonly HashSet<SKEncodedImageFormat> Supported =
        [SKEncodedImageFormat.Jpeg, SKEncodedImageFormat.Png, SKEncodedImageFormat.Webp, SKEncodedImageFormat.Bmp, SKEncodedImageFormat.Gif];

    /// <summary>Reads only the header: format and size, with every limit checked, without decoding pixels. Lets a
    /// gateway refuse a bad or oversized image before it travels anywhere.</summary>
    public static ImageHeader Probe(ReadOnlySpan<byte> bytes, ImageLimits? limits = null)
    {
        using var stream = new SKMemoryStream(bytes.ToArray());
        using var codec = Open(bytes, stream, limits ?? ImageLimits.Default);
        return new ImageHeader(codec.Info.Width, codec.Info.Height, codec.EncodedFormat.ToString().ToLowerInvariant());
    }

    /// <param name="applyExifOrientation">Rotate/flip by the EXIF orientation tag so the image is upright as a viewer shows
    /// it; false (the default) keeps the stored pixels, as the original implementation does.</param>
    public static RgbImage Decode(ReadOnlySpan<byte> bytes, ImageLimits? limits = null, bool applyExifOrientation = false)
    {
        using var stream = new SKMemoryStream(bytes.ToArray());
        using var codec = Open(bytes, stream, limits ?? ImageLimits.Default);
        var info = codec.Info;
        var target = new SKImageInfo(info.Width, info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul, info.ColorSpace);
        using var bitmap = new SKBitmap(target);
        var result = codec.GetPixels(target, bitmap.GetPixels());
        if (result is not (SKCodecResult.Success or SKCodecResult.IncompleteInput))
            throw new ImageDecodeException(ImageErrorReason.Corrupt, $"The image could not be decoded ({result}); the file is corrupt.");
        if (result == SKCodecResult.IncompleteInput)
            throw new ImageDecodeException(ImageErrorReason.Corrupt, "The image is truncated: its data ends before the last row.");

        var rgba = bitmap.GetPixelSpan();
        var rgb = new byte[info.Width * info.Height * 3];
        var gifFill = codec.EncodedFormat == SKEncodedImageFormat.Gif ? GifTransparency.FirstFrameColor(bytes) : null;
        for (int i = 0, j = 0; j < rgb.Length; i += 4, j += 3)
        {
            if (gifFill is { } fill && rgba[i + 3] == 0)
            {
                (rgb[j], rgb[j + 1], rgb[j + 2]) = fill;
                continue;
            }
            rgb[j] = rgba[i];
            rgb[j + 1] = rgba[i + 1];
            rgb[j + 2] = rgba[i + 2];
        }
        var image = new RgbImage(info.Width, info.Height, rgb);
        return applyExifOrientation ? Orient(image, codec.EncodedOrigin) : image;
    }

    private static SKCodec Open(ReadOnlySpan<byte> bytes, SKMemoryStream stream, ImageLimits limits)
    {
        if (bytes.IsEmpty) throw new ImageDecodeException(ImageErrorReason.Empty, "The image is empty (0 bytes).");
        if (bytes.Length > limits.MaxBytes)
            throw new ImageDecodeException(ImageErrorReason.TooLarge, $"The image is {bytes.Length} bytes; the limit is {limits.MaxBytes} bytes.");
        var codec = SKCodec.Create(stream, out var createResult);
        if (codec is null)
        {
            throw createResult == SKCodecResult.Unimplemented || !LooksLikeKnownFormat(bytes)
                ? new ImageDecodeException(ImageErrorReason.UnsupportedFormat, "The image format is not supported; send JPEG, PNG, WebP, BMP or GIF.")
                : new ImageDecodeException(ImageErrorReason.Corrupt, $"The image could not be read ({createResult}); the file is corrupt or truncated.");
        }
        try
        {
            if (!Supported.Contains(codec.EncodedFormat))
                throw new ImageDecodeException(ImageErrorReason.UnsupportedFormat, $"The image format {codec.EncodedFormat} is not supported; send JPEG, PNG, WebP, BMP or GIF.");
            var info = codec.Info;
            if (info.Width <= 0 || info.Height <= 0)
                throw new ImageDecodeException(ImageErrorReason.ZeroSize, $"The image has no pixels ({info.Width}x{info.Height}).");
            if ((long)info.Width * info.Height > limits.MaxPixels || info.Width > limits.MaxSide || info.Height > limits.MaxSide)
                throw new ImageDecodeException(ImageErrorReason.TooManyPixels,
                    $"The image is {info.Width}x{info.Height} pixels; the limits are {limits.MaxPixels} pixels and {limits.MaxSide} per side.");
            return codec;
        }
        catch
        {
            codec.Dispose();
            throw;
        }
    }

    private static bool LooksLikeKnownFormat(ReadOnlySpan<byte> b) =>
        (b.Length >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
        || (b.Length >= 8 && b[0] == 0x89 && b[1] == (byte)'P' && b[2] == (byte)'N' && b[3] == (byte)'G')
        || (b.Length >= 6 && b[0] == (byte)'G' && b[1] == (byte)'I' && b[2] == (byte)'F')
        || (b.Length >= 2 && b[0] == (byte)'B' && b[1] == (byte)'M')
        || (b.Length >= 12 && b[0] == (byte)'R' && b[1] == (byte)'I' && b[2] == (byte)'F' && b[3] == (byte)'F' && b[8] == (byte)'W' && b[9] == (byte)'E');

    /// <summary>Applies an EXIF orientation so the image is upright.</summary>
    public static RgbImage Orient(RgbImage image, SKEncodedOrigin origin)
    {
        if (origin is SKEncodedOrigin.TopLeft or 0) return image;
        bool swap = origin is SKEncodedOrigin.LeftTop or SKEncodedOrigin.RightTop or SKEncodedOrigin.RightBottom or SKEncodedOrigin.LeftBottom;
        int w = image.Width, h = image.Height;
        int ow = swap ? h : w, oh = swap ? w : h;
        var output = new RgbImage(ow, oh);
        for (int y = 0; y < oh; y++)
        {
            for (int x = 0; x < ow; x++)
            {
                // (sx, sy): the stored pixel shown at display position (x, y).
                (int sx, int sy) = origin switch
                {
                    SKEncodedOrigin.TopRight => (w - 1 - x, y),
                    SKEncodedOrigin.BottomRight => (w - 1 - x, h - 1 - y),
                    SKEncodedOrigin.BottomLeft => (x, h - 1 - y),
                    SKEncodedOrigin.LeftTop => (y, x),
                    SKEncodedOrigin.RightTop => (y, h - 1 - x),
                    SKEncodedOrigin.RightBottom => (w - 1 - y, h - 1 - x),
                    SKEncodedOrigin.LeftBottom => (w - 1 - y, x),
                    _ => (x, y),
                };
                int s = (sy * w + sx) * 3, d = (y * ow + x) * 3;
                output.Pixels[d] = image.Pixels[s];
                output.Pixels[d + 1] = image.Pixels[s + 1];
                output.Pixels[d + 2] = image.Pixels[s + 2];
            }
        }
        return output;
    }
}
