namespace XGenMM.Model.Imaging;

/// <summary>
/// Bit-exact re-implementation of Pillow's <c>Image.resize(size, BICUBIC)</c> for 8-bit RGB (Pillow 9.4,
/// libImaging/Resample.c, no reducing gap), which the reference preprocessing uses: cubic kernel with a = -0.5,
/// support 2 x max(1, scale), per-pixel weights normalised to 1 then quantised to 22-bit fixed point; a horizontal
/// pass (only over the source rows the vertical pass reads) then a vertical pass, each rounded and clipped to uint8.
/// A pass is skipped when its dimension does not change.
/// </summary>
public static class PillowBicubic
{
    private const int PrecisionBits = 32 - 8 - 2;
    private const double Support = 2.0;

    public static RgbImage Resize(RgbImage source, int width, int height)
    {
        if (width <= 0 || height <= 0) throw new ArgumentOutOfRangeException(nameof(width), "target size must be positive");
        bool horizontal = width != source.Width;
        bool vertical = height != source.Height;
        var (vBounds, vWeights, vSize) = Coefficients(source.Height, height);
        if (!horizontal && !vertical) return new RgbImage(source.Width, source.Height, (byte[])source.Pixels.Clone());

        RgbImage temp = source;
        int firstRow = 0;
        if (horizontal)
        {
            firstRow = vBounds[0];
            int lastRow = vBounds[(height - 1) * 2] + vBounds[(height - 1) * 2 + 1];
            var (hBounds, hWeights, hSize) = Coefficients(source.Width, width);
            temp = new RgbImage(width, lastRow - firstRow);
            for (int y = 0; y < temp.Height; y++)
            {
                int srcRow = (y + firstRow) * source.Width * 3;
                int dstRow = y * width * 3;
                for (int x = 0; x < width; x++)
                {
                    int xmin = hBounds[x * 2], count = hBounds[x * 2 + 1];
                    int k = x * hSize;
                    int r = 1 << (PrecisionBits - 1), g = r, b = r;
                    for (int i = 0; i < count; i++)
                    {
                        int p = srcRow + (xmin + i) * 3;
                        int w = hWeights[k + i];
                        r += source.Pixels[p] * w;
                        g += source.Pixels[p + 1] * w;
                        b += source.Pixels[p + 2] * w;
                    }
                    int d = dstRow + x * 3;
                    temp.Pixels[d] = Clip8(r);
                    temp.Pixels[d + 1] = Clip8(g);
                    temp.Pixels[d + 2] = Clip8(b);
                }
            }
        }
        if (!vertical) return temp;

        var output = new RgbImage(width, height);
        int stride = width * 3;
        for (int y = 0; y < height; y++)
        {
            int ymin = vBounds[y * 2] - firstRow, count = vBounds[y * 2 + 1];
            int k = y * vSize;
            int dstRow = y * stride;
            for (int x = 0; x < stride; x++)
            {
                int acc = 1 << (PrecisionBits - 1);
                for (int i = 0; i < count; i++) acc += temp.Pixels[(ymin + i) * stride + x] * vWeights[k + i];
                output.Pixels[dstRow + x] = Clip8(acc);
            }
        }
        return output;
    }

    private static byte Clip8(int value)
    {
        int v = value >> PrecisionBits;
        return (byte)(v < 0 ? 0 : v > 255 ? 255 : v);
    }

    private static double Cubic(double x)
    {
        const double a = -0.5;
        if (x < 0) x = -x;
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
    }

    /// <summary>Per output pixel: first source index and count (bounds), and fixed-point weights (ksize per pixel).</summary>
    private static (int[] Bounds, int[] Weights, int KSize) Coefficients(int inSize, int outSize)
    {
        double scale = (double)inSize / outSize;
        double filterScale = Math.Max(scale, 1.0);
        double support = Support * filterScale;
        int ksize = (int)Math.Ceiling(support) * 2 + 1;
        var bounds = new int[outSize * 2];
        var weights = new int[outSize * ksize];
        var k = new double[ksize];
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = (xx + 0.5) * scale;
            double ss = 1.0 / filterScale;
            int xmin = (int)(center - support + 0.5);
            if (xmin < 0) xmin = 0;
            int xmax = (int)(center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            double ww = 0.0;
            for (int x = 0; x < xmax; x++)
            {
                double w = Cubic((x + xmin - center + 0.5) * ss);
                k[x] = w;
                ww += w;
            }
            for (int x = 0; x < xmax; x++)
            {
                double w = ww != 0.0 ? k[x] / ww : k[x];
                weights[xx * ksize + x] = (int)(w < 0 ? Math.Truncate(-0.5 + w * (1 << PrecisionBits)) : Math.Truncate(0.5 + w * (1 << PrecisionBits)));
            }
            bounds[xx * 2] = xmin;
            bounds[xx * 2 + 1] = xmax;
        }
        return (bounds, weights, ksize);
    }
}
