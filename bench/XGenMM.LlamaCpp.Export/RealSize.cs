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
        gguf.Add("general.architecture", "phi3");
        gguf.Add("general.name", "xgenmm-real-random");
        gguf.Add("general.file_type", type switch { GgmlType.F32 => 0u, GgmlType.F16 => 1u, GgmlType.Q8_0 => 7u, _ => 32u });
        gguf.Add("phi3.context_length", (uint)text.MaxPositionEmbeddings);
        gguf.Add("phi3.embedding_length", (uint)text.HiddenSize);
        gguf.Add("phi3.feed_forward_length", (uint)text.IntermediateSize);
        gguf.Add("phi3.block_count", (uint)text.NumHiddenLayers);
        gguf.Add("phi3.attention.head_count", (uint)text.NumAttentionHeads);
        gguf.Add("phi3.attention.head_count_kv", (uint)text.NumKeyValueHeads);
        gguf.Add("phi3.attention.layer_norm_rms_epsilon", (float)text.RmsNormEps);
        gguf.Add("phi3.rope.dimension_count", (uint)text.HeadDim);
        gguf.Add("phi3.rope.freq_base", (float)text.RopeTheta);
        // Phi-3's window (llama.cpp of early 2025 refuses a phi3 model that is not 32/40 layers with 4k context without it).
        if (text.SlidingWindow is int window) gguf.Add("phi3.attention.sliding_window", (uint)window);
        gguf.Add("tokenizer.ggml.model", "no_vocab");
        gguf.Add("phi3.vocab_size", (uint)text.VocabSize);

        void Matrix(string name, long rows, long cols)
        {
            long[] dims = [cols, rows];
            long bytes = GgufWriter.Bytes(dims, type);
            gguf.AddTensor(name, dims, type, s =>
            {
                for (long left = bytes; left > 0; left -= encoded.Length) s.Write(encoded, 0, (int)Math.Min(left, encoded.Length));
            });
        }
        void Norm(string name) => gguf.AddTensor(name, [text.HiddenSize], GgmlType.F32, s => s.Write(MemoryMarshal.AsBytes(ones.AsSpan())));

        long d = text.HiddenSize, f = text.IntermediateSize, v = text.VocabSize;
        Matrix("token_embd.weight", v, d);
        Norm("output_norm.weight");
        Matrix("output.weight", v, d);
        for (int i = 0; i < text.NumHiddenLayers; i++)
        {
            Norm($"blk.{i}.attn_norm.weight");
            Matrix($"blk.{i}.attn_qkv.weight", 3 * d, d);
            Matrix($"blk.{i}.attn_output.weight", d, d);
            Norm($"blk.{i}.ffn_norm.weight");
            Matrix($"blk.{i}.ffn_up.weight", 2 * f, d);
            Matrix($"blk.{i}.ffn_down.weight", d, f);
        }
        string name = type switch { GgmlType.F32 => "f32", GgmlType.F16 => "f16", GgmlType.BF16 => "bf16", _ => "q8_0" };
        string path = Path.Combine(outDir, $"xgenmm-real-{name}.gguf");
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
