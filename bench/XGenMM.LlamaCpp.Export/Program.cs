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
    gguf.Add("general.architecture", "phi3");
    gguf.Add("general.name", "xgenmm-small-random");
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
    // No tokenizer: the benches feed token ids; llama.cpp then makes vocab_size placeholder tokens.
    gguf.Add("tokenizer.ggml.model", "no_vocab");
    gguf.Add("phi3.vocab_size", (uint)text.VocabSize);

    void Matrix(string gguName, string ours, bool vocabRows = false)
    {
        var t = tensors[ours];
        if (vocabRows) t = t.narrow(0, 0, text.VocabSize);
        long rows = t.shape[0], cols = t.shape[1];
        gguf.AddTensor(gguName, [cols, rows], type, s => WriteValues(s, t, type));
    }
    void Vector(string gguName, string ours)
    {
        var t = tensors[ours];
        gguf.AddTensor(gguName, [t.shape[0]], GgmlType.F32, s => WriteValues(s, t, GgmlType.F32)); // norms stay f32, as llama.cpp keeps 1-D tensors
    }
    Matrix("token_embd.weight", "model.embed_tokens.weight", vocabRows: true);
    Vector("output_norm.weight", "model.norm.weight");
    Matrix("output.weight", "lm_head.weight", vocabRows: true);
    for (int i = 0; i < text.NumHiddenLayers; i++)
    {
        string l = $"model.layers.{i}.";
        Vector($"blk.{i}.attn_norm.weight", l + "input_layernorm.weight");
        Matrix($"blk.{i}.attn_qkv.weight", l + "self_attn.qkv_proj.weight");
        Matrix($"blk.{i}.attn_output.weight", l + "self_attn.o_proj.weight");
        Vector($"blk.{i}.ffn_norm.weight", l + "post_attention_layernorm.weight");
        Matrix($"blk.{i}.ffn_up.weight", l + "mlp.gate_up_proj.weight");   // [gate | up], the split llama.cpp's phi3 expects
        Matrix($"blk.{i}.ffn_down.weight", l + "mlp.down_proj.weight");
    }
    string path = Path.Combine(outDir, $"xgenmm-small-{Name(type)}.gguf");
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

static string Name(GgmlType t) => t switch { GgmlType.F32 => "f32", GgmlType.F16 => "f16", GgmlType.BF16 => "bf16", _ => "q8_0" };
