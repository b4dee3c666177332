using TorchSharp;
using XGenMM.Model.Configuration;
using static TorchSharp.torch;

namespace XGenMM.Model.Imaging;

/// <summary>One image ready for the vision tower: views (global first, then crops) as uint8 CHW planes.</summary>
public sealed record PreprocessedImage
{
    /// <summary>[Views, 3, S, S] RGB, CHW, view-major.</summary>
    public required byte[] PixelsU8 { get; init; }
    public required int Views { get; init; }
    public required int ImageSize { get; init; }
    public required int GridCols { get; init; }
    public required int GridRows { get; init; }
    public required (int Width, int Height) BestResolution { get; init; }
    public required (int Width, int Height) OriginalSize { get; init; }
    public required float[] Mean { get; init; }
    public required float[] Std { get; init; }

    /// <summary>(u8 / 255 - mean) / std in float32, as torchvision ToTensor + Normalize: [Views, 3, S, S].</summary>
    public Tensor ToTensor()
    {
        var values = new float[PixelsU8.Length];
        int plane = ImageSize * ImageSize;
        for (int i = 0; i < values.Length; i++)
        {
            int channel = i / plane % 3;
            values[i] = (PixelsU8[i] / 255f - Mean[channel]) / Std[channel];
        }
        return torch.tensor(values, [Views, 3, ImageSize, ImageSize]);
    }
}

/// <summary>
/// xGen-MM v1.5 "anyres" preprocessing (LAVIS any_res_data_utils / HF Blip3ImageProcessor): pick the grid that keeps
/// the most of the image, resize to fit it and pad with black, cut 384x384 crops row-major, and put the whole image
/// squashed to 384x384 first as the global view. Without grids, one squashed view per image (the base model).
/// </summary>
public sealed class AnyResPreprocessor(PreprocessorConfig config)
{
    public PreprocessorConfig Config { get; } = config;

    /// <summary>LLaVA's select_best_resolution: most effective pixels, then least waste; the first listed wins ties.</summary>
    public static (int Width, int Height) SelectBestResolution((int Width, int Height) original, IReadOnlyList<(int Width, int Height)> grids)
    {
        (int, int) best = grids[0];
        long maxEffective = 0;
        long minWasted = long.MaxValue;
        var (w, h) = original;
        foreach (var (gw, gh) in grids)
        {
            double scale = Math.Min((double)gw / w, (double)gh / h);
            long dw = (long)(w * scale), dh = (long)(h * scale);
            long effective = Math.Min(dw * dh, (long)w * h);
            long wasted = (long)gw * gh - effective;
            if (effective > maxEffective || (effective == maxEffective && wasted < minWasted))
            {
                maxEffective = effective;
                minWasted = wasted;
                best = (gw, gh);
            }
        }
        return best;
    }

    public PreprocessedImage Process(RgbImage image)
    {
        int s = Config.ImageSize;
        var views = new List<RgbImage> { PillowBicubic.Resize(image, s, s) };
        (int, int) best = (s, s);
        int cols = 1, rows = 1;
        if (Config.AnyResGrids is { } grids)
        {
            best = SelectBestResolution((image.Width, image.Height), grids);
            var canvas = ResizeAndPad(image, best.Item1, best.Item2);
            cols = best.Item1 / s;
            rows = best.Item2 / s;
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++)
                    views.Add(Crop(canvas, c * s, r * s, s));
        }
        int plane = s * s;
        var pixels = new byte[views.Count * 3 * plane];
        for (int v = 0; v < views.Count; v++)
        {
            var src = views[v].Pixels;
            int baseOffset = v * 3 * plane;
            for (int p = 0; p < plane; p++)
            {
                pixels[baseOffset + p] = src[p * 3];
                pixels[baseOffset + plane + p] = src[p * 3 + 1];
                pixels[baseOffset + 2 * plane + p] = src[p * 3 + 2];
            }
        }
        return new PreprocessedImage
        {
            PixelsU8 = pixels,
            Views = views.Count,
            ImageSize = s,
            GridCols = Config.AnyResGrids is null ? 0 : cols,
            GridRows = Config.AnyResGrids is null ? 0 : rows,
            BestResolution = best,
            OriginalSize = (image.Width, image.Height),
            Mean = Config.ImageMean,
            Std = Config.ImageStd,
        };
    }

    /// <summary>Where <see cref="ResizeAndPad"/> puts an image of <paramref name="original"/> size on a (width, height)
    /// canvas: its scaled size and top-left corner.</summary>
    public static (int Width, int Height, int X0, int Y0) FitInside((int Width, int Height) original, int width, int height)
    {
        double scaleW = (double)width / original.Width, scaleH = (double)height / original.Height;
        int newW, newH;
        if (scaleW < scaleH)
        {
            newW = width;
            newH = Math.Min((int)Math.Ceiling(original.Height * scaleW), height);
        }
        else
        {
            newH = height;
            newW = Math.Min((int)Math.Ceiling(original.Width * scaleH), width);
        }
        return (newW, newH, (width - newW) / 2, (height - newH) / 2);
    }

    /// <summary>Fits the image inside (width, height) keeping its aspect (ceil on the scaled side), centred on black.</summary>
    public static RgbImage ResizeAndPad(RgbImage image, int width, int height)
    {
        var (newW, newH, x0, y0) = FitInside((image.Width, image.Height), width, height);
        var resized = PillowBicubic.Resize(image, newW, newH);
        var canvas = new RgbImage(width, height);
        for (int y = 0; y < newH; y++)
            Array.Copy(resized.Pixels, y * newW * 3, canvas.Pixels, ((y0 + y) * width + x0) * 3, newW * 3);
        return canvas;
    }

    private static RgbImage Crop(RgbImage image, int x0, int y0, int size)
    {
        var crop = new RgbImage(size, size);
        for (int y = 0; y < size; y++)
            Array.Copy(image.Pixels, ((y0 + y) * image.Width + x0) * 3, crop.Pixels, y * size * 3, size * 3);
        return crop;
    }
}
