using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using TorchSharp;
using XGenMM.Model;
using XGenMM.Model.Checkpoints;
using XGenMM.Model.Configuration;
using XGenMM.Model.Kernels;
using static TorchSharp.torch;

/// <summary>
/// Writes a random-weight bfloat16 checkpoint of the real xGen-MM v1.5 shapes in the Hugging Face layout the real
/// loader reads (config, tokenizer files, shards + index). Initialising a real-size torch model takes minutes on two
/// cores, so tensors are never built: every weight streams to disk as one precomputed block of random bf16 values,
/// tiled. Decode speed does not depend on the values, only on their count; the block only has to keep activations
/// finite (std 0.02, norms 1, biases 0, as HF's initialisation).
/// </summary>
internal static partial class RealSizeCheckpoint
{
    private const string MarkerFile = "realsize-complete.txt";
    private const long MaxShardBytes = 2L << 30;
    private const int RandomBlockValues = 2 << 20;   // 4 MiB of bf16: far more than any row, so tiling leaves no visible period per row
    private const ushort BF16One = 0x3F80;
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>True when <paramref name="dir"/> holds a checkpoint this class finished writing for the same layer
    /// limit: the marker is written last and lists every shard's length.</summary>
    public static bool IsComplete(string dir, int? layers)
    {
        string marker = Path.Combine(dir, MarkerFile);
        if (!File.Exists(marker)) return false;
        var lines = File.ReadAllLines(marker);
        if (lines.Length < 2 || lines[0] != Signature(layers)) return false;
        foreach (var line in lines.Skip(1))
        {
            var parts = line.Split(' ');
            string file = Path.Combine(dir, parts[0]);
            if (!File.Exists(file) || new FileInfo(file).Length != long.Parse(parts[1], CultureInfo.InvariantCulture)) return false;
        }
        return File.Exists(Path.Combine(dir, CheckpointLoader.IndexFileName)) && File.Exists(Path.Combine(dir, "config.json"));
    }

    /// <summary>Writes the checkpoint; <paramref name="layers"/> limits the decoder, SigLIP and resampler depth (a quick
    /// check of the pipeline, not a real-size figure).</summary>
    /// <returns>Tensors and bytes of tensor data written.</returns>
    /// <param name="dryRun">Stop after the layout check, before any weight is written (the shard count is then 0).</param>
    public static (int Tensors, long Bytes, int Shards) Write(string dir, string fixtureDir, int? layers, Action<string> log, bool dryRun = false)
    {
        Directory.CreateDirectory(dir);
        File.Delete(Path.Combine(dir, MarkerFile));
        foreach (var stale in Directory.GetFiles(dir, "model*.safetensors*")) File.Delete(stale);
        // Everything but the weights comes from the real repository's files: config, preprocessor, tokenizer, template.
        foreach (var file in Directory.GetFiles(fixtureDir))
        {
            string name = Path.GetFileName(file);
            if (name.EndsWith(".jpg", StringComparison.Ordinal) || name == "README.md" || name == CheckpointLoader.IndexFileName) continue;
            File.Copy(file, Path.Combine(dir, name), overwrite: true);
        }
        if (layers is { } n) LimitDepth(Path.Combine(dir, "config.json"), n);

        var tensors = Layout(XGenMMConfig.FromDirectory(dir));
        if (layers is null) CheckAgainstRealIndex(tensors, Path.Combine(fixtureDir, CheckpointLoader.IndexFileName));
        if (dryRun) return (tensors.Count, tensors.Sum(t => Bytes(t.Shape)), 0);

        var shards = new List<List<(string Name, long[] Shape)>> { new() };
        long current = 0;
        foreach (var t in tensors)
        {
            long bytes = Bytes(t.Shape);
            if (current > 0 && current + bytes > MaxShardBytes)
            {
                shards.Add([]);
                current = 0;
            }
            shards[^1].Add(t);
            current += bytes;
        }

        byte[] random = RandomBlock(seed: 19);
        byte[] ones = new byte[1 << 20];
        for (int i = 0; i < ones.Length; i += 2) BitConverter.TryWriteBytes(ones.AsSpan(i), BF16One);
        byte[] zeros = new byte[1 << 20];
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var marker = new StringBuilder(Signature(layers)).Append('\n');
        long total = 0;
        for (int s = 0; s < shards.Count; s++)
        {
            string file = $"model-{s + 1:D5}-of-{shards.Count:D5}.safetensors";
            string path = Path.Combine(dir, file);
            using (var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1 << 20))
            {
                SafeTensorsWriter.WriteHeader(stream, shards[s].Select(t => (t.Name, ScalarType.BFloat16, t.Shape)),
                    new Dictionary<string, string> { ["format"] = "pt" });
                foreach (var (name, shape) in shards[s])
                {
                    long bytes = Bytes(shape);
                    var fill = Fill(name);
                    byte[] block = fill switch { FillKind.Zero => zeros, FillKind.One => ones, _ => random };
                    // Each random tensor starts at its own (even) place in the block, so no two are copies of each other.
                    int offset = fill == FillKind.Random ? (int)((uint)StableHash(name) % (uint)block.Length) & ~1 : 0;
                    for (long left = bytes; left > 0;)
                    {
                        int chunk = (int)Math.Min(left, block.Length - offset);
                        stream.Write(block, offset, chunk);
                        left -= chunk;
                        offset = 0;
                    }
                    weightMap[name] = file;
                    total += bytes;
                }
            }
            marker.Append(file).Append(' ').Append(new FileInfo(path).Length.ToString(CultureInfo.InvariantCulture)).Append('\n');
            log($"wrote {file}: {shards[s].Count} tensors, {new FileInfo(path).Length / 1e9:F2} GB");
        }
        var index = new { metadata = new { total_size = total }, weight_map = weightMap };
        File.WriteAllText(Path.Combine(dir, CheckpointLoader.IndexFileName),
            JsonSerializer.Serialize(index, Indented), new UTF8Encoding(false));
        File.WriteAllText(Path.Combine(dir, MarkerFile), marker.ToString());
        return (tensors.Count, total, shards.Count);
    }

    private static string Signature(int? layers) => layers is { } n ? $"xgenmm-realsize bf16 layers={n}" : "xgenmm-realsize bf16 full";

    private static long Bytes(long[] shape) => shape.Aggregate(1L, (a, b) => a * b) * sizeof(ushort);

    /// <summary>Checkpoint names and [out, in] shapes, in module order, of the model this config builds (on the meta
    /// device: shapes without memory).</summary>
    private static List<(string Name, long[] Shape)> Layout(XGenMMConfig config)
    {
        using var meta = new XGenMMModel(config, new Device(DeviceType.META), ScalarType.BFloat16);
        return CheckpointLoader.ExpectedTensors(meta).Select(e => (e.Key, CheckpointLoader.CheckpointShape(e.Value.Parameter, e.Value.Transposed))).ToList();
    }

    /// <summary>The names must be the real repository's (its index), less SigLIP's pooling head, which the loader
    /// never reads: proof that this is the real layout and not just what our model happens to expect.</summary>
    private static void CheckAgainstRealIndex(List<(string Name, long[] Shape)> tensors, string indexPath)
    {
        if (!File.Exists(indexPath)) return;
        using var doc = JsonDocument.Parse(File.ReadAllText(indexPath));
        var real = doc.RootElement.GetProperty("weight_map").EnumerateObject().Select(p => p.Name).Where(n => !CheckpointLoader.IsKnownUnused(n)).ToHashSet(StringComparer.Ordinal);
        var ours = tensors.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        if (!real.SetEquals(ours))
            throw new InvalidOperationException($"The model's tensor names differ from the real index: {real.Except(ours).Count()} missing, {ours.Except(real).Count()} extra.");
    }

    private static void LimitDepth(string configPath, int layers)
    {
        var root = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        root["text_config"]!["num_hidden_layers"] = layers;
        // The reader takes SigLIP's sizes from siglip_vision_config (code defaults for the keys not given).
        root["vision_encoder_config"]!["siglip_vision_config"] = new JsonObject { ["num_hidden_layers"] = layers };
        root["vision_tokenizer_config"]!["perceiver_depth"] = Math.Min(layers, new ResamplerConfig().Depth);
        File.WriteAllText(configPath, root.ToJsonString(Indented));
    }

    private enum FillKind { Random, Zero, One }

    private static FillKind Fill(string name)
    {
        if (name.EndsWith(".bias", StringComparison.Ordinal) || name.EndsWith("_bias", StringComparison.Ordinal)) return FillKind.Zero;
        // The resampler's feed-forward is Sequential(LayerNorm, Linear, GELU, Linear): index 0 is a norm without "norm" in its name.
        if (name.Contains("norm", StringComparison.Ordinal) || PerceiverFeedForwardNorm().IsMatch(name)) return FillKind.One;
        return FillKind.Random;
    }

    [GeneratedRegex(@"vision_tokenizer\.layers\.\d+\.1\.0\.weight$")]
    private static partial Regex PerceiverFeedForwardNorm();

    /// <summary>N(0, 0.02) as bf16 (Box-Muller, rounded to nearest even).</summary>
    private static byte[] RandomBlock(int seed)
    {
        var rng = new Random(seed);
        var block = new byte[RandomBlockValues * sizeof(ushort)];
        for (int i = 0; i < RandomBlockValues; i += 2)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            double r = 0.02 * Math.Sqrt(-2 * Math.Log(u1));
            BitConverter.TryWriteBytes(block.AsSpan(i * 2), PackedWeight.ToBFloat16((float)(r * Math.Cos(2 * Math.PI * u2))));
            BitConverter.TryWriteBytes(block.AsSpan(i * 2 + 2), PackedWeight.ToBFloat16((float)(r * Math.Sin(2 * Math.PI * u2))));
        }
        return block;
    }

    // string.GetHashCode is randomised per process; a reused checkpoint and a fresh one should hold the same values.
    private static int StableHash(string s)
    {
        uint h = 2166136261;
        foreach (char c in s) h = (h ^ c) * 16777619;
        return (int)h;
    }
}
