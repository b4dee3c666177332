using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using TorchSharp;
using XGenMM.LlamaCpp.Export;
using XGenMM.Model;
using XGenMM.Model.Checkpoints;
using XGenMM.Model.Configuration;
using XGenMM.Model.Kernels;
using XGenMM.Model.Runtime;
using static TorchSharp.torch;

// Writes the random "small" xGen-MM text side that bench/XGenMM.Engine.Benchmarks and bench/XGenMM.Model.Benchmarks
// build in memory (same config, same seed, so the same weights) as GGUF files for llama.cpp (architecture phi3) and
// as our checkpoint (safetensors), for bench/llamacpp/side-by-side.sh.
//   XGenMM.LlamaCpp.Export <out-dir> [--types=f32,q8_0,f16,bf16] [--checkpoint]
//   XGenMM.LlamaCpp.Export <out-dir> --real [--types=bf16,q8_0]   Phi-3-mini shapes, random (xgenmm-real-TYPE.gguf)
// Differences from our model, all outside the timed work's shape: llama.cpp's head has no bias (ours adds a [V] bias),
// and our decoupled head's extra columns for added tokens are left out (the GGUF vocab is config.VocabSize wide).
if (args.Length < 1 || args[0].StartsWith("--", StringComparison.Ordinal))
{
    Console.Error.WriteLine("usage: XGenMM.LlamaCpp.Export <out-dir> [--types=f32,q8_0,f16,bf16] [--checkpoint]");
    return 2;
}
string outDir = args[0];
var types = (args.FirstOrDefault(a => a.StartsWith("--types=", StringComparison.Ordinal))?["--types=".Length..] ?? "f32,q8_0")
    .Split(',', StringSplitOptions.RemoveEmptyEntries).Select(ParseType).ToList();
Directory.CreateDirectory(outDir);
if (args.Contains("--real"))
{
    // Phi-3-mini shapes with random weights, for the real-size figures next to `XGenMM.Model.Benchmarks realsize`.
    foreach (var type in types) RealSize.Write(outDir, type);
    return 0;
}
Console.WriteLine($"TorchSharp: {TorchRuntime.EnsureLoaded()}");

// The benchmarks' model (keep in step with bench/XGenMM.Engine.Benchmarks/Program.cs).
var config = new XGenMMConfig
{
    Vision = new VisionTowerConfig { HiddenSize = 384, IntermediateSize = 1536, NumHiddenLayers = 6, NumAttentionHeads = 6 },
    Resampler = new ResamplerConfig { VisFeatureDim = 384, LangEmbeddingDim = 512, NumVisTokens = 64, Depth = 2, Heads = 8, DimHead = 48 },
    Text = new TextConfig { HiddenSize = 512, IntermediateSize = 1536, NumHiddenLayers = 8, NumAttentionHeads = 8, NumKeyValueHeads = 8 },
};
config.Validate();
using var model = new XGenMMModel(config);
ModelInitialization.InitializeRandom(model, seed: 1);
var text = config.Text;

if (args.Contains("--checkpoint"))
{
    string dir = Path.Combine(outDir, "xgenmm-small");
    SafeTensorsWriter.SaveModel(model, dir, ScalarType.Float32, maxShardBytes: 100L << 20);
    Console.WriteLine($"wrote {dir}");
}

// Checkpoint-layout ([out, in]) tensors of the text side, by their name below the language model.
var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
foreach (var (name, (p, transposed)) in CheckpointLoader.ExpectedTensors(model))
{
    const string prefix = "lang_model.";
    int at = name.IndexOf(prefix, StringComparison.Ordinal);
    if (at < 0) continue;
    tensors[name[(at + prefix.Length)..]] = transposed ? p.detach().t() : p.detach();
}

foreach (var type in types)
{
    var gguf = new GgufWriter();
    Phi3Gguf.AddMetadata(gguf, text, type, "xgenmm-small-random");
    foreach (var tensor in Phi3Gguf.Tensors(text))
    {
        var t = tensors[tensor.OurName];
        if (tensor.IsNorm)
        {
            // Norms stay f32, as llama.cpp keeps 1-D tensors.
            gguf.AddTensor(tensor.GgufName, [t.shape[0]], GgmlType.F32, s => WriteValues(s, t, GgmlType.F32));
            continue;
        }
        // The embedding and head rows beyond the vocabulary (our decoupled extras) are left out.
        if (t.shape[0] > tensor.Shape[0]) t = t.narrow(0, 0, tensor.Shape[0]);
        long rows = t.shape[0], cols = t.shape[1];
        gguf.AddTensor(tensor.GgufName, [cols, rows], type, s => WriteValues(s, t, type));
    }
    string path = Path.Combine(outDir, $"xgenmm-small-{Phi3Gguf.TypeName(type)}.gguf");
    var clock = Stopwatch.StartNew();
    gguf.Write(path);
    Console.WriteLine($"wrote {path}: {new FileInfo(path).Length / 1048576.0:F1} MiB in {clock.Elapsed.TotalSeconds:F1} s");
}
Q8Check(tensors["model.layers.0.self_attn.qkv_proj.weight"]);
return 0;

static void WriteValues(Stream s, Tensor t, GgmlType type)
{
    var values = t.contiguous().to_type(ScalarType.Float32).data<float>().ToArray();
    switch (type)
    {
        case GgmlType.F32:
            s.Write(MemoryMarshal.AsBytes(values.AsSpan()));
            break;
        case GgmlType.F16:
            var halves = values.Select(v => (Half)v).ToArray();
            s.Write(MemoryMarshal.AsBytes(halves.AsSpan()));
            break;
        case GgmlType.BF16:
            var bf = values.Select(PackedWeight.ToBFloat16).ToArray();
            s.Write(MemoryMarshal.AsBytes(bf.AsSpan()));
            break;
        case GgmlType.Q8_0:
            Q8Block.Write(s, values);
            break;
    }
}

// The round trip of one matrix through q8_0: every value within half a step of its block's scale.
static void Q8Check(Tensor t)
{
    var values = t.contiguous().to_type(ScalarType.Float32).data<float>().ToArray();
    using var buffer = new MemoryStream();
    Q8Block.Write(buffer, values);
    var back = Q8Block.Dequantize(buffer.ToArray());
    double worst = 0, amax = values.Max(Math.Abs);
    for (int i = 0; i < values.Length; i++) worst = Math.Max(worst, Math.Abs(values[i] - back[i]));
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"q8_0 round trip of layer 0 qkv: max error {worst:E2} (max |w| {amax:E2})"));
    if (worst > amax / 127 * 0.51 + 1e-6) throw new InvalidOperationException("q8_0 round trip error above half a quantization step.");
}

static GgmlType ParseType(string s) => s switch
{
    "f32" => GgmlType.F32,
    "f16" => GgmlType.F16,
    "bf16" => GgmlType.BF16,
    "q8_0" => GgmlType.Q8_0,
    _ => throw new ArgumentException($"unknown type '{s}' (f32, f16, bf16, q8_0)"),
};

