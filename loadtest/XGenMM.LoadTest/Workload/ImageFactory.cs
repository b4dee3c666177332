using System.Globalization;
using SkiaSharp;

namespace XGenMM.LoadTest.Workload;

/// <summary>
/// PNG images drawn with SkiaSharp: a gradient, a few shapes and a stamp of the image's number, so that every seed gives
/// different bytes (a vision-cache miss) while a repeated seed gives the very same bytes (a hit).
/// </summary>
public static class ImageFactory
{
    /// <summary>
    /// One size per anyres grid of xGen-MM v1.5 (384x768, 768x384, 768x768, 1152x384, 384x1152, width x height): none is a
    /// grid's exact size, so the server also resizes and pads. LLaVA's select_best_resolution picks a different grid for each.
    /// </summary>
    public static readonly IReadOnlyList<(int Width, int Height)> AnyResSizes = [(300, 640), (640, 300), (500, 500), (900, 280), (280, 900)];

    public static (int Width, int Height) ParseSize(string text)
    {
        var parts = text.Trim().ToLowerInvariant().Split('x');
        if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int w) ||
            !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int h) || w < 1 || h < 1 || w > 8192 || h > 8192)
            throw new FormatException($"'{text}' is not an image size WIDTHxHEIGHT (1..8192).");
        return (w, h);
    }

    public static byte[] Png(int width, int height, int seed)
    {
        var random = new Random(seed);
        using var surface = SKSurface.Create(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul));
        var canvas = surface.Canvas;
        using (var shader = SKShader.CreateLinearGradient(new SKPoint(0, 0), new SKPoint(width, height),
                   [RandomColor(random), RandomColor(random)], SKShaderTileMode.Clamp))
        using (var paint = new SKPaint { Shader = shader })
            canvas.DrawRect(0, 0, width, height, paint);
        using (var paint = new SKPaint { IsAntialias = true })
        {
            for (int i = 0; i < 4; i++)
            {
                paint.Color = RandomColor(random);
                float x = random.NextSingle() * width, y = random.NextSingle() * height, r = (0.08f + random.NextSingle() * 0.2f) * Math.Min(width, height);
                if (random.Next(2) == 0) canvas.DrawCircle(x, y, r, paint);
                else canvas.DrawRect(x - r, y - r, 2 * r, 2 * r, paint);
            }
            // The seed in binary as a row of squares: distinct bytes for distinct seeds, whatever the shapes did.
            float cell = Math.Max(2, Math.Min(width, height) / 40f);
            for (int bit = 0; bit < 32; bit++)
            {
                paint.Color = ((seed >> bit) & 1) == 1 ? SKColors.Black : SKColors.White;
                canvas.DrawRect(bit * cell % width, height - cell, cell, cell, paint);
            }
        }
        using var image = surface.Snapshot();
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    private static SKColor RandomColor(Random random) => new((byte)random.Next(256), (byte)random.Next(256), (byte)random.Next(256));
}
