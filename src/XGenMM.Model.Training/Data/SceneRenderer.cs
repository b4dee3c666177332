using SkiaSharp;
using XGenMM.Model.Imaging;

namespace XGenMM.Model.Training.Data;

/// <summary>Draws a <see cref="Scene"/> with anti-aliased shapes on a plain or lightly noisy grey background.</summary>
public static class SceneRenderer
{
    public static RgbImage Render(Scene scene)
    {
        using var bitmap = Draw(scene, new SKColor(scene.Background, scene.Background, scene.Background), s => new SKColor(s.Color.R, s.Color.G, s.Color.B), antialias: true);
        var rgba = bitmap.GetPixelSpan();
        var image = new RgbImage(scene.Width, scene.Height);
        var noise = new Random(scene.NoiseSeed);
        for (int i = 0, j = 0; j < image.Pixels.Length; i += 4, j += 3)
        {
            int n = scene.Noisy ? noise.Next(-14, 15) : 0;
            image.Pixels[j] = Clamp(rgba[i] + n);
            image.Pixels[j + 1] = Clamp(rgba[i + 1] + n);
            image.Pixels[j + 2] = Clamp(rgba[i + 2] + n);
        }
        return image;
    }

    /// <summary>Code of "no shape" in a label image; kind k is <c>(k + 1) * KindStep</c> in red, colour c <c>(c + 1) * ColorStep</c> in green.</summary>
    public const int KindStep = 50, ColorStep = 28;

    /// <summary>
    /// The scene's label map as an image (no anti-aliasing, no noise, black background): red codes the shape kind and
    /// green the colour of the shape that covers each pixel. Sent through the same anyres preprocessing as the picture,
    /// it tells which shape each patch of each view shows (<see cref="Training.PatchLabels"/>).
    /// </summary>
    public static RgbImage RenderLabels(Scene scene)
    {
        using var bitmap = Draw(scene, SKColors.Black,
            s => new SKColor((byte)(((int)s.Kind + 1) * KindStep), (byte)((Array.IndexOf(ShapeColor.All, s.Color) + 1) * ColorStep), 0), antialias: false);
        var rgba = bitmap.GetPixelSpan();
        var image = new RgbImage(scene.Width, scene.Height);
        for (int i = 0, j = 0; j < image.Pixels.Length; i += 4, j += 3)
        {
            image.Pixels[j] = rgba[i];
            image.Pixels[j + 1] = rgba[i + 1];
        }
        return image;
    }

    private static SKBitmap Draw(Scene scene, SKColor background, Func<SceneShape, SKColor> color, bool antialias)
    {
        var bitmap = new SKBitmap(new SKImageInfo(scene.Width, scene.Height, SKColorType.Rgba8888, SKAlphaType.Premul));
        using (var canvas = new SKCanvas(bitmap))
        {
            canvas.Clear(background);
            using var paint = new SKPaint { IsAntialias = antialias, Style = SKPaintStyle.Fill };
            foreach (var s in scene.Shapes)
            {
                paint.Color = color(s);
                switch (s.Kind)
                {
                    case ShapeKind.Circle:
                        canvas.DrawCircle(s.X, s.Y, s.Radius, paint);
                        break;
                    case ShapeKind.Square:
                        canvas.DrawRect(s.X - s.Radius * 0.85f, s.Y - s.Radius * 0.85f, s.Radius * 1.7f, s.Radius * 1.7f, paint);
                        break;
                    default:
                        using (var path = Polygon(s))
                            canvas.DrawPath(path, paint);
                        break;
                }
            }
        }
        return bitmap;
    }

    public static byte[] RenderPng(Scene scene)
    {
        var image = Render(scene);
        using var bitmap = new SKBitmap(new SKImageInfo(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var dst = bitmap.GetPixelSpan();
        for (int i = 0, j = 0; j < image.Pixels.Length; i += 4, j += 3)
        {
            dst[i] = image.Pixels[j]; dst[i + 1] = image.Pixels[j + 1]; dst[i + 2] = image.Pixels[j + 2]; dst[i + 3] = 255;
        }
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    private static byte Clamp(int v) => (byte)Math.Clamp(v, 0, 255);

    private static SKPath Polygon(SceneShape s)
    {
        var path = new SKPath();
        if (s.Kind == ShapeKind.Triangle)
        {
            path.MoveTo(s.X, s.Y - s.Radius);
            path.LineTo(s.X + s.Radius * 0.95f, s.Y + s.Radius * 0.8f);
            path.LineTo(s.X - s.Radius * 0.95f, s.Y + s.Radius * 0.8f);
        }
        else
        {
            for (int k = 0; k < 10; k++)
            {
                double angle = -Math.PI / 2 + k * Math.PI / 5;
                float r = k % 2 == 0 ? s.Radius : s.Radius * 0.45f;
                float x = s.X + (float)(r * Math.Cos(angle)), y = s.Y + (float)(r * Math.Sin(angle));
                if (k == 0) path.MoveTo(x, y); else path.LineTo(x, y);
            }
        }
        path.Close();
        return path;
    }
}
