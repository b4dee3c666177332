using SkiaSharp;

/// <summary>What the engine and device benchmarks both need: test pictures, the repository's tokenizer, percentiles.
/// Linked into each benchmark project (Compile Include), not a project of its own.</summary>
internal static class BenchmarkInputs
{
    public static double Percentile(double[] sorted, double p) => sorted.Length == 0 ? double.NaN : sorted[(int)Math.Round(p * (sorted.Length - 1))];

    /// <summary>A PNG of a coloured background and a circle; each seed gives a different picture (and content hash).</summary>
    public static byte[] Png(int width, int height, int seed)
    {
        using var bitmap = new SKBitmap(width, height);
        using (var canvas = new SKCanvas(bitmap))
        {
            canvas.Clear(new SKColor((byte)(seed * 37 % 255), 140, 90));
            using var paint = new SKPaint { Color = SKColors.Blue };
            canvas.DrawCircle(width / 3f + seed, height / 2f, width / 6f, paint);
        }
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    /// <summary>models/tokenizer above the benchmark's binaries or the working directory.</summary>
    public static string FindTokenizer()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "models", "tokenizer");
                if (File.Exists(Path.Combine(candidate, "tokenizer.json"))) return candidate;
            }
        throw new DirectoryNotFoundException("models/tokenizer (the repository's tokenizer files) was not found above the benchmark or the working directory.");
    }
}
