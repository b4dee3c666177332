using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using XGenMM.Model.Configuration;
using XGenMM.Model.Kernels;

namespace XGenMM.LlamaCpp.Export;

/// <summary>
/// A Phi-3-mini-shaped GGUF (the real xGen-MM v1.5 text side: hidden 3072, 32 layers, 32 heads, ff 8192, vocab
/// 32064) of random weights, streamed: one block of N(0, 0.02) values repeated through every matrix (norms 1), as
/// `XGenMM.Model.Benchmarks realsize` writes our checkpoint. Nothing is held in memory but the block, so a 4-8 GB
/// file is written in a minute or two. For llama.cpp's side of the real-size figures (bench/README.md).
/// </summary>
internal static class RealSize
{
    private const int BlockValues = 1 << 20;

    public static void Write(string outDir, GgmlType type)
    {
        var text = new TextConfig(); // the defaults are Phi-3-mini's (spec 3.3) and the fixtures' config.json
        var block = RandomBlock(seed: 5);
        var encoded = Encode(block, type);
        var ones = Enumerable.Repeat(1f, text.HiddenSize).ToArray();

        var gguf = new GgufWriter();
        Phi3Gguf.AddMetadata(gguf, text, type, "xgenmm-real-random");
        foreach (var tensor in Phi3Gguf.Tensors(text))
        {
            if (tensor.IsNorm)
            {
                gguf.AddTensor(tensor.GgufName, [text.HiddenSize], GgmlType.F32, s => s.Write(MemoryMarshal.AsBytes(ones.AsSpan())));
                continue;
            }
            long[] dims = [tensor.Shape[1], tensor.Shape[0]];
            long bytes = GgufWriter.Bytes(dims, type);
            gguf.AddTensor(tensor.GgufName, dims, type, s =>
            {
                for (long left = bytes; left > 0; left -= encoded.Length) s.Write(encoded, 0, (int)Math.Min(left, encoded.Length));
            });
        }
        string path = Path.Combine(outDir, $"xgenmm-real-{Phi3Gguf.TypeName(type)}.gguf");
        var clock = Stopwatch.StartNew();
        gguf.Write(path);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {path}: {new FileInfo(path).Length / 1e9:F2} GB in {clock.Elapsed.TotalSeconds:F1} s"));
    }

    private static float[] RandomBlock(int seed)
    {
        var random = new Random(seed);
        var values = new float[BlockValues];
        for (int i = 0; i < values.Length; i += 2)
        {
            // Box-Muller: two normal values per pair of uniforms.
            double u = 1 - random.NextDouble(), w = random.NextDouble();
            double r = Math.Sqrt(-2 * Math.Log(u)) * 0.02;
            values[i] = (float)(r * Math.Cos(2 * Math.PI * w));
            values[i + 1] = (float)(r * Math.Sin(2 * Math.PI * w));
        }
        return values;
    }

    /// <summary>The block in the file's encoding; every matrix size here is a multiple of the block's 32-value groups.</summary>
    private static byte[] Encode(float[] block, GgmlType type)
    {
        using var buffer = new MemoryStream();
        switch (type)
        {
            case GgmlType.F32: buffer.Write(MemoryMarshal.AsBytes(block.AsSpan())); break;
            case GgmlType.F16: buffer.Write(MemoryMarshal.AsBytes(block.Select(x => (Half)x).ToArray().AsSpan())); break;
            case GgmlType.BF16: buffer.Write(MemoryMarshal.AsBytes(block.Select(PackedWeight.ToBFloat16).ToArray().AsSpan())); break;
            default: Q8Block.Write(buffer, block); break;
        }
        return buffer.ToArray();
    }
}
