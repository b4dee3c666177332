using System.Diagnostics;
using System.Globalization;
using SkiaSharp;
using TorchSharp;
using XGenMM.Engine.Decoding;
using XGenMM.Engine.Vision;
using XGenMM.Model;
using XGenMM.Model.Checkpoints;
using XGenMM.Model.Configuration;
using XGenMM.Model.Runtime;
using XGenMM.Model.Tokenization;
using static TorchSharp.torch;

// Device check and benchmark: runs the same engines on CPU and on a CUDA device when libtorch sees one.
//   parity  a small random xGen-MM with identical weights on both devices: greedy tokens of 8 streams and the vision
//           tokens of a 5-view image compared, CPU against CUDA (the device code paths of the engines, not a kernel)
//   speed   decode tok/s at 1/16/64 streams of that model on the device
//   real    random weights in the real v1.5 shapes (config.json of the real checkpoint) in bfloat16 on the device:
//           batch-1 and batch-8 decode tok/s, 512-token prefill tok/s, one 5-view image encode
// Arguments: section names (default all); --config DIR (a checkpoint directory with config.json) for the real shapes.
Console.WriteLine($"TorchSharp: {TorchRuntime.EnsureLoaded()}, threads {torch.get_num_threads()}, {Environment.ProcessorCount} cores");
string? realConfig = args.SkipWhile(a => a != "--config").Skip(1).FirstOrDefault();
var sections = args.Where(a => a != "--config" && a != realConfig).ToHashSet(StringComparer.OrdinalIgnoreCase);
bool Run(string section) => sections.Count == 0 || sections.Contains(section);
if (!torch.cuda.is_available())
{
    Console.WriteLine("no CUDA device: nothing to compare (this benchmark needs a CUDA build of libtorch and a GPU)");
    return 1;
}
var gpu = torch.CUDA;
Console.WriteLine($"CUDA devices: {torch.cuda.device_count()}");
var tokenizer = XGenMMTokenizer.FromDirectory(BenchmarkInputs.FindTokenizer());

var small = new XGenMMConfig
{
    Vision = new VisionTowerConfig { HiddenSize = 384, IntermediateSize = 1536, NumHiddenLayers = 6, NumAttentionHeads = 6 },
    Resampler = new ResamplerConfig { VisFeatureDim = 384, LangEmbeddingDim = 512, NumVisTokens = 64, Depth = 2, Heads = 8, DimHead = 48 },
    Text = new TextConfig { HiddenSize = 512, IntermediateSize = 1536, NumHiddenLayers = 8, NumAttentionHeads = 8, NumKeyValueHeads = 8 },
};
var rng = new Random(7);
int[] RandomPrompt(int length) => Enumerable.Range(0, length).Select(_ => rng.Next(100, 30000)).ToArray();
int failures = 0;

if (Run("parity") || Run("speed"))
{
    using var cpuModel = new XGenMMModel(small);
    ModelInitialization.InitializeRandom(cpuModel, seed: 1);
    ModelInitialization.InitializeVisionPositions(cpuModel);
    cpuModel.eval();
    using var gpuModel = new XGenMMModel(small, gpu);
    CopyWeights(cpuModel, gpuModel);
    gpuModel.eval();

    if (Run("parity"))
    {
        var prompts = Enumerable.Range(0, 8).Select(i => RandomPrompt(24 + 5 * i)).ToArray();
        var cpuTokens = await Greedy(cpuModel, prompts, 32);
        var gpuTokens = await Greedy(gpuModel, prompts, 32);
        Console.WriteLine();
        Console.WriteLine("Parity, greedy decode of 8 concurrent streams (32 new tokens), float32, identical weights:");
        Console.WriteLine("| stream | prompt tokens | tokens equal before the first difference (of 32) |");
        Console.WriteLine("|---|---|---|");
        for (int i = 0; i < prompts.Length; i++)
        {
            int same = cpuTokens[i].Zip(gpuTokens[i]).TakeWhile(p => p.First == p.Second).Count();
            Console.WriteLine($"| {i} | {prompts[i].Length} | {same} |");
            if (same < 8) failures++;
        }

        var image = BenchmarkInputs.Png(768, 768, 3);
        using var cpuVision = new VisionEngine(cpuModel, new VisionEngineOptions());
        using var gpuVision = new VisionEngine(gpuModel, new VisionEngineOptions());
        var a = (await cpuVision.EncodeAsync(image, "parity")).Tokens;
        var b = (await gpuVision.EncodeAsync(image, "parity")).Tokens;
        using var ta = a.ToTensor(torch.CPU, ScalarType.Float32);
        using var tb = b.ToTensor(torch.CPU, ScalarType.Float32);
        double maxDiff = ta.sub(tb).abs().max().item<float>();
        double scale = ta.abs().max().item<float>();
        Console.WriteLine();
        Console.WriteLine($"Parity, vision tokens of a 768x768 image ({a.Rows} x {a.Dim}): max |cpu - cuda| = {maxDiff:G3} (max |value| {scale:G3})");
        if (maxDiff > 1e-2 * Math.Max(1, scale)) failures++;
    }

    if (Run("speed"))
    {
        Console.WriteLine();
        Console.WriteLine("Decode on the device, small model (50M, float32), 32-token prompts, 64 new tokens:");
        Console.WriteLine("| streams | output tok/s | ITL p50 ms | ITL p99 ms |");
        Console.WriteLine("|---|---|---|---|");
        using var engine = new DecodeEngine(gpuModel, tokenizer, new DecodeEngineOptions { MaxSlots = 64, MaxSequenceLength = 256, PrefixReuse = false, KvCacheBytes = 2L << 30, Name = "cuda:0" });
        await Streams(engine, 4, 32, 64);
        foreach (int streams in new[] { 1, 16, 64 })
        {
            var (tps, p50, p99) = await Streams(engine, streams, 32, 64);
            Console.WriteLine($"| {streams} | {tps:F0} | {p50 * 1000:F2} | {p99 * 1000:F2} |");
        }
    }
}

if (Run("real") && realConfig is not null)
{
    var config = XGenMMConfig.FromDirectory(realConfig);
    var clock = Stopwatch.StartNew();
    using var model = new XGenMMModel(config, gpu, ScalarType.BFloat16);
    RandomOnDevice(model);
    model.eval();
    torch.cuda.synchronize();
    long parameters = model.parameters().Sum(p => p.numel());
    Console.WriteLine();
    Console.WriteLine($"Real v1.5 shapes, random weights, bfloat16 on the device: {parameters / 1e6:F0}M parameters, built in {clock.Elapsed.TotalSeconds:F1} s");
    using var engine = new DecodeEngine(model, tokenizer, new DecodeEngineOptions { MaxSlots = 16, MaxSequenceLength = 1024, PrefixReuse = false, KvCacheBytes = 8L << 30, Name = "cuda:0" });
    await Streams(engine, 2, 32, 16);
    Console.WriteLine("| measure | value |");
    Console.WriteLine("|---|---|");
    foreach (int streams in new[] { 1, 8 })
    {
        var (tps, p50, _) = await Streams(engine, streams, 32, 64);
        Console.WriteLine($"| batch-{streams} decode, output tok/s (ITL p50 ms) | {tps:F1} ({p50 * 1000:F1}) |");
    }
    var prompt = RandomPrompt(512);
    var prefill = Stopwatch.StartNew();
    await engine.Submit(new DecodeRequest { RequestId = "prefill", PromptIds = prompt, MaxNewTokens = 1, StopTokenIds = [] }).CountAsync();
    Console.WriteLine($"| prefill 512 tokens (+1 token), tok/s | {512 / prefill.Elapsed.TotalSeconds:F0} |");
    using var vision = new VisionEngine(model, new VisionEngineOptions());
    await vision.EncodeAsync(BenchmarkInputs.Png(768, 768, 1), "warm");
    var encode = Stopwatch.StartNew();
    var tokens = (await vision.EncodeAsync(BenchmarkInputs.Png(768, 768, 2), "timed")).Tokens;
    Console.WriteLine($"| vision encode, 768x768 image (5 views -> {tokens.Rows} tokens), ms | {encode.Elapsed.TotalMilliseconds:F0} |");
}

Console.WriteLine();
Console.WriteLine(failures == 0 ? "device check: passed" : $"device check: {failures} parity failure(s)");
return failures == 0 ? 0 : 2;

async Task<List<int>[]> Greedy(XGenMMModel model, int[][] prompts, int newTokens)
{
    using var engine = new DecodeEngine(model, tokenizer, new DecodeEngineOptions { MaxSlots = 16, MaxSequenceLength = 256, PrefixReuse = false });
    return await Task.WhenAll(prompts.Select(async (p, i) =>
    {
        var tokens = new List<int>();
        await foreach (var e in engine.Submit(new DecodeRequest { RequestId = $"p{i}", PromptIds = p, MaxNewTokens = newTokens, StopTokenIds = [] }))
            if (e.TokenId >= 0) tokens.Add(e.TokenId);
        return tokens;
    }));
}

async Task<(double TokensPerSecond, double ItlP50, double ItlP99)> Streams(DecodeEngine engine, int streams, int promptTokens, int newTokens)
{
    var itl = new List<double>();
    void OnCompleted(DecodeCompletion c) { lock (itl) itl.AddRange(c.InterTokenSeconds); }
    engine.Completed += OnCompleted;
    try
    {
        var clock = Stopwatch.StartNew();
        int tokens = (await Task.WhenAll(Enumerable.Range(0, streams).Select(i =>
            engine.Submit(new DecodeRequest { RequestId = $"s{i}", PromptIds = RandomPrompt(promptTokens), MaxNewTokens = newTokens, StopTokenIds = [] })
                .CountAsync(e => !e.IsFinal).AsTask()))).Sum();
        double seconds = clock.Elapsed.TotalSeconds;
        double[] sorted;
        lock (itl) sorted = itl.Order().ToArray();
        return (tokens / seconds, BenchmarkInputs.Percentile(sorted, 0.5), BenchmarkInputs.Percentile(sorted, 0.99));
    }
    finally { engine.Completed -= OnCompleted; }
}

static void CopyWeights(XGenMMModel from, XGenMMModel to)
{
    using var noGrad = torch.no_grad();
    var source = from.state_dict();
    foreach (var (name, tensor) in to.state_dict())
        tensor.copy_(source[name]);
}

static void RandomOnDevice(XGenMMModel model)
{
    // The CPU initialiser draws from a CPU generator; 4.3B normals on 2 cores take minutes, on the device milliseconds.
    using var noGrad = torch.no_grad();
    foreach (var (name, (p, _)) in CheckpointLoader.ExpectedTensors(model))
    {
        if (name.EndsWith(".bias", StringComparison.Ordinal)) p.zero_();
        else if (name.Contains("norm", StringComparison.Ordinal)) p.fill_(1);
        else p.normal_(0, 0.02);
    }
}
