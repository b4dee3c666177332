using SkiaSharp;
using XGenMM.Model.Imaging;

namespace XGenMM.Model.Tests.Imaging;

public sealed class ImageDecoderTests
{
    private static byte[] Encode(SKEncodedImageFormat format, int w = 40, int h = 30)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                bitmap.SetPixel(x, y, x < w / 2 ? new SKColor(220, 20, 30) : new SKColor(10, 30, 200));
        using var data = bitmap.Encode(format, 95);
        return data.ToArray();
    }

    /// <summary>A minimal 24-bit BMP written by hand (Skia cannot encode BMP).</summary>
    private static byte[] Bmp(int w, int h, (byte R, byte G, byte B) color)
    {
        int rowBytes = (w * 3 + 3) & ~3;
        var bytes = new byte[54 + rowBytes * h];
        bytes[0] = (byte)'B'; bytes[1] = (byte)'M';
        BitConverter.GetBytes(bytes.Length).CopyTo(bytes, 2);
        BitConverter.GetBytes(54).CopyTo(bytes, 10);
        BitConverter.GetBytes(40).CopyTo(bytes, 14);
        BitConverter.GetBytes(w).CopyTo(bytes, 18);
        BitConverter.GetBytes(h).CopyTo(bytes, 22);
        BitConverter.GetBytes((short)1).CopyTo(bytes, 26);
        BitConverter.GetBytes((short)24).CopyTo(bytes, 28);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int o = 54 + y * rowBytes + x * 3;
                bytes[o] = color.B; bytes[o + 1] = color.G; bytes[o + 2] = color.R;
            }
        return bytes;
    }

    // A 2x1 GIF: palette {red, blue}, pixels [0, 1] (LZW min code size 2), two frames are not needed for "first frame".
    private static readonly byte[] Gif =
    [
        0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x02, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00,
        0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF,
        0x2C, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00,
        0x02, 0x02, 0x44, 0x0A, 0x00, 0x3B,
    ];

    [Theory]
    [InlineData(SKEncodedImageFormat.Png)]
    [InlineData(SKEncodedImageFormat.Jpeg)]
    [InlineData(SKEncodedImageFormat.Webp)]
    public void Encoded_formats_decode_to_RGB(SKEncodedImageFormat format)
    {
        var image = ImageDecoder.Decode(Encode(format));
        Assert.Equal((40, 30), (image.Width, image.Height));
        int left = (15 * 40 + 5) * 3, right = (15 * 40 + 35) * 3;
        Assert.InRange(image.Pixels[left], 200, 240);
        Assert.InRange(image.Pixels[right + 2], 180, 220);
    }

    [Fact]
    public void BMP_decodes()
    {
        var image = ImageDecoder.Decode(Bmp(5, 4, (10, 200, 30)));
        Assert.Equal((5, 4), (image.Width, image.Height));
        Assert.Equal(new byte[] { 10, 200, 30 }, image.Pixels[..3]);
    }

    [Fact]
    public void GIF_decodes_its_first_frame()
    {
        var image = ImageDecoder.Decode(Gif);
        Assert.Equal((2, 1), (image.Width, image.Height));
        Assert.Equal(new byte[] { 255, 0, 0, 0, 0, 255 }, image.Pixels);
    }

    [Fact]
    public void A_transparent_GIF_pixel_shows_its_palette_colour_as_PIL_convert_RGB_does()
    {
        // Same GIF with a graphic control extension marking palette index 1 (blue) transparent.
        byte[] gce = [0x21, 0xF9, 0x04, 0x01, 0x00, 0x00, 0x01, 0x00];
        var gif = Gif[..19].Concat(gce).Concat(Gif[19..]).ToArray();
        var image = ImageDecoder.Decode(gif);
        Assert.Equal(new byte[] { 255, 0, 0, 0, 0, 255 }, image.Pixels);
    }

    /// <summary>A JPEG with an APP1 Exif segment (big-endian TIFF, one IFD entry: Orientation = 6, "rotate 90° clockwise
    /// to view") inserted right after SOI, and the same JPEG without it.</summary>
    private static (byte[] Tagged, byte[] Plain) JpegWithOrientation6()
    {
        var jpeg = Encode(SKEncodedImageFormat.Jpeg, 40, 30);
        byte[] exif =
        [
            0xFF, 0xE1, 0x00, 0x22, (byte)'E', (byte)'x', (byte)'i', (byte)'f', 0, 0,
            (byte)'M', (byte)'M', 0x00, 0x2A, 0x00, 0x00, 0x00, 0x08,
            0x00, 0x01, 0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
        ];
        return ([.. jpeg[..2], .. exif, .. jpeg[2..]], jpeg);
    }

    [Fact]
    public void EXIF_orientation_is_ignored_by_default_as_PIL_convert_RGB_does()
    {
        var (tagged, plain) = JpegWithOrientation6();
        var stored = ImageDecoder.Decode(plain);
        var image = ImageDecoder.Decode(tagged);
        // The original pipeline (PIL Image.open + convert("RGB")) sees the stored pixels: same size, same bytes.
        Assert.Equal((40, 30), (image.Width, image.Height));
        Assert.Equal(stored.Pixels, image.Pixels);
        Assert.Equal((40, 30), (ImageDecoder.Probe(tagged).Width, ImageDecoder.Probe(tagged).Height));
    }

    [Fact]
    public void EXIF_orientation_6_rotates_clockwise_when_asked()
    {
        var (tagged, plain) = JpegWithOrientation6();
        var stored = ImageDecoder.Decode(plain);
        var image = ImageDecoder.Decode(tagged, applyExifOrientation: true);
        Assert.Equal((30, 40), (image.Width, image.Height));
        // The red left half of the stored image is now the top half.
        Assert.InRange(image.Pixels[(5 * 30 + 15) * 3], 200, 240);
        Assert.InRange(image.Pixels[(35 * 30 + 15) * 3 + 2], 180, 220);
        // Pixel for pixel: shown (x, y) is stored (y, h - 1 - x), h = 30 the stored height.
        var expected = new byte[stored.Pixels.Length];
        for (int y = 0; y < 40; y++)
            for (int x = 0; x < 30; x++)
                for (int c = 0; c < 3; c++)
                    expected[(y * 30 + x) * 3 + c] = stored.Pixels[((30 - 1 - x) * 40 + y) * 3 + c];
        Assert.Equal(expected, image.Pixels);
    }

    [Fact]
    public void Empty_bytes_are_refused() =>
        Assert.Equal(ImageErrorReason.Empty, Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode([])).Reason);

    [Fact]
    public void Unknown_bytes_are_an_unsupported_format() =>
        Assert.Equal(ImageErrorReason.UnsupportedFormat,
            Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode("%PDF-1.4 not an image"u8)).Reason);

    [Fact]
    public void A_truncated_PNG_is_corrupt()
    {
        var png = Encode(SKEncodedImageFormat.Png, 200, 200);
        var ex = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(png.AsSpan(0, png.Length / 3)));
        Assert.Equal(ImageErrorReason.Corrupt, ex.Reason);
    }

    [Fact]
    public void A_decompression_bomb_is_refused_from_its_header()
    {
        var png = Encode(SKEncodedImageFormat.Png, 8, 8);
        // Patch the IHDR width/height to 100000 x 100000 (and its CRC, so the header itself is valid).
        BitConverter.GetBytes(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(100_000)).CopyTo(png, 16);
        BitConverter.GetBytes(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(100_000)).CopyTo(png, 20);
        uint crc = System.IO.Hashing.Crc32.HashToUInt32(png.AsSpan(12, 17));
        BitConverter.GetBytes(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(crc)).CopyTo(png, 29);
        var ex = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(png));
        Assert.Equal(ImageErrorReason.TooManyPixels, ex.Reason);
    }

    [Fact]
    public void Limits_are_configurable()
    {
        var png = Encode(SKEncodedImageFormat.Png, 100, 100);
        Assert.Equal(ImageErrorReason.TooManyPixels,
            Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(png, new ImageLimits { MaxPixels = 9_999 })).Reason);
        Assert.Equal(ImageErrorReason.TooLarge,
            Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(png, new ImageLimits { MaxBytes = 10 })).Reason);
    }
}
