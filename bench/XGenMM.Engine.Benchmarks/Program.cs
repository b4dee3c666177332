using System.Diagnostics;
using System.Globalization;
using SkiaSharp;
using TorchSharp;
using XGenMM.Engine.Decoding;
using XGenMM.Engine.Vision;
using XGenMM.Model;
using XGenMM.Model.Configuration;
using XGenMM.Model.Runtime;
using XGenMM.Model.Tokenization;
using static TorchSharp.torch;

// Engine benchmark (issue 5): aggregate decode throughput and inter-token latency at 1/4/16/64 concurrent streams
// with the ratio to 1 stream; vision images/s at batch 1 and 8; TTFT of a request whose image is cached vs not.
// Random "small" xGen-MM (Phi-3 side: hidden 512, 8 layers, ff 1536, vocab 32064, about 50M parameters), the
// shapes of performance-notes.md's llama.cpp comparison: 32-token prompts, 64 new tokens per stream.
Console.WriteLine($"TorchSharp: {TorchRuntime.EnsureLoaded()}, threads {torch.get_num_threads()}, {Environment.ProcessorCount} cores");
// Arguments: a stream-count list (default 1,4,16,64) and/or section names (decode, sequential, vision; default all).
// --baseline: the decode section also runs the old separate-pass step policy (StepPolicy.Separate), alternating with
// mixed steps at each stream count, and prints the ratios. --max-tokens-per-step=N: the mixed steps' token budget.
// --threads=N: libtorch's intra-op threads (the side-by-side script passes what llama.cpp gets).
var options = args.Where(a => a.StartsWith("--", StringComparison.Ordinal)).ToList();
string? Option(string name) => options.FirstOrDefault(o => o.StartsWith($"--{name}=", StringComparison.Ordinal))?[(name.Length + 3)..];
bool baseline = options.Contains("--baseline");
int maxTokensPerStep = Option("max-tokens-per-step") is { } budget ? int.Parse(budget, CultureInfo.InvariantCulture) : new DecodeEngineOptions().MaxTokensPerStep;
if (Option("threads") is { } threads) torch.set_num_threads(int.Parse(threads, CultureInfo.InvariantCulture));
var positional = args.Where(a => !a.StartsWith("--", StringComparison.Ordinal)).ToList();
var numeric = positional.FirstOrDefault(a => char.IsDigit(a[0]));
var streamsToRun = numeric is not null ? numeric.Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray() : [1, 4, 16, 64];
var sections = positional.Where(a => !char.IsDigit(a[0])).ToHashSet(StringComparer.OrdinalIgnoreCase);
bool Run(string section) => sections.Count == 0 || sections.Contains(section);
const int PromptTokens = 32, NewTokens = 64;

var config = new XGenMMConfig
{
    Vision = new VisionTowerConfig { HiddenSize = 384, IntermediateSize = 1536, NumHiddenLayers = 6, NumAttentionHeads = 6 },
    Resampler = new ResamplerConfig { VisFeatureDim = 384, LangEmbeddingDim = 512, NumVisTokens = 64, Depth = 2, Heads = 8, DimHead = 48 },
    Text = new TextConfig { HiddenSize = 512, IntermediateSize = 1536, NumHiddenLayers = 8, NumAttentionHeads = 8, NumKeyValueHeads = 8 },
};
if (args.Length > 0 && args[0] == "weights")
{
    await WeightFormatBenchmark.Run(config, XGenMMTokenizer.FromDirectory(BenchmarkInputs.FindTokenizer()), args);
    return;
}
using var model = new XGenMMModel(config);
ModelInitialization.InitializeRandom(model, seed: 1);
model.eval();
long textParams = model.LanguageModel.parameters().Sum(p => p.numel());
var tokenizer = XGenMMTokenizer.FromDirectory(BenchmarkInputs.FindTokenizer());
Console.WriteLine($"model: {model.parameters().Sum(p => p.numel()) / 1e6:F1}M parameters ({textParams / 1e6:F1}M in the Phi-3 side), float32, CPU");

// ---------------------------------------------------------------- decode
var rng = new Random(7);
int[] RandomPrompt() => Enumerable.Range(0, PromptTokens).Select(_ => rng.Next(100, 30000)).ToArray();
if (Run("decode"))
{
    // Decode-only throughput is streams / ITL p50, what llama-batched-bench reports as S_TG: it leaves out the
    // prefill steps that the closed-loop output tok/s includes.
    var policies = baseline ? new[] { StepPolicy.Separate, StepPolicy.Mixed } : [StepPolicy.Mixed];
    var rows = new List<(StepPolicy Policy, int Streams, double TokensPerSecond, double ItlP50, double ItlP99, double TtftP50)>();
    var engines = policies.ToDictionary(p => p, p => new DecodeEngine(model, tokenizer, new DecodeEngineOptions
    {
        MaxSlots = 64, MaxSequenceLength = 256, PrefixReuse = false, KvCacheBytes = 2L << 30, StepPolicy = p, MaxTokensPerStep = maxTokensPerStep,
    }));
    try
    {
        var itl = new List<double>();
        var ttft = new List<double>();
        foreach (var engine in engines.Values)
            engine.Completed += c => { lock (itl) { itl.AddRange(c.InterTokenSeconds); ttft.Add(c.Timings.TimeToFirstTokenSeconds); } };
        async Task<int> Stream(DecodeEngine engine, int id) =>
            await engine.Submit(new DecodeRequest { RequestId = $"b{id}", PromptIds = RandomPrompt(), MaxNewTokens = NewTokens, StopTokenIds = [] })
                .CountAsync(e => !e.IsFinal);
        foreach (var engine in engines.Values) await Task.WhenAll(Enumerable.Range(0, 4).Select(i => Stream(engine, i))); // warm-up
        foreach (int streams in streamsToRun)
            foreach (var (policy, engine) in engines)
            {
                lock (itl) { itl.Clear(); ttft.Clear(); }
                var clock = Stopwatch.StartNew();
                int tokens = (await Task.WhenAll(Enumerable.Range(0, streams).Select(i => Stream(engine, i)))).Sum();
                double seconds = clock.Elapsed.TotalSeconds;
                double[] sorted, sortedTtft;
                lock (itl) { sorted = itl.Order().ToArray(); sortedTtft = ttft.Order().ToArray(); }
                rows.Add((policy, streams, tokens / seconds, BenchmarkInputs.Percentile(sorted, 0.5), BenchmarkInputs.Percentile(sorted, 0.99), BenchmarkInputs.Percentile(sortedTtft, 0.5)));
                Console.WriteLine($"  {policy}, {streams} streams: {tokens} tokens in {seconds:F2} s");
            }
    }
    finally
    {
        foreach (var engine in engines.Values) engine.Dispose();
    }
    Console.WriteLine();
    Console.WriteLine($"Decode, {PromptTokens}-token prompts, {NewTokens} new tokens per stream (closed loop), {torch.get_num_threads()} threads, mixed steps of at most {maxTokensPerStep} tokens:");
    Console.WriteLine("| step policy | streams | output tok/s | ratio to 1 stream | decode-only tok/s (streams / ITL p50) | ITL p50 ms | ITL p99 ms | p99 / p50 | TTFT p50 ms |");
    Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
    foreach (var r in rows)
    {
        double single = rows.FirstOrDefault(x => x.Streams == 1 && x.Policy == r.Policy).TokensPerSecond;
        Console.WriteLine($"| {r.Policy} | {r.Streams} | {r.TokensPerSecond:F0} | {(single > 0 ? r.TokensPerSecond / single : double.NaN):F2}x | {r.Streams / r.ItlP50:F0} | {r.ItlP50 * 1000:F1} | {r.ItlP99 * 1000:F1} | {r.ItlP99 / r.ItlP50:F2} | {r.TtftP50 * 1000:F0} |");
    }
    if (baseline)
    {
        Console.WriteLine();
        Console.WriteLine("Mixed / separate at each stream count:");
        Console.WriteLine("| streams | output tok/s | decode-only tok/s | ITL p50 | ITL p99 |");
        Console.WriteLine("|---|---|---|---|---|");
        foreach (int streams in streamsToRun)
        {
            var a = rows.First(r => r.Streams == streams && r.Policy == StepPolicy.Separate);
            var b = rows.First(r => r.Streams == streams && r.Policy == StepPolicy.Mixed);
            Console.WriteLine($"| {streams} | {b.TokensPerSecond / a.TokensPerSecond:F2}x | {a.ItlP50 / b.ItlP50:F2}x | {b.ItlP50 / a.ItlP50:F2}x | {b.ItlP99 / a.ItlP99:F2}x |");
        }
    }
    // One line per row for scripts (bench/llamacpp/side-by-side.sh reads these).
    foreach (var r in rows)
        Console.WriteLine(FormattableString.Invariant($"RESULT decode policy={r.Policy} streams={r.Streams} output_tps={r.TokensPerSecond:F2} decode_tps={r.Streams / r.ItlP50:F2} itl_p50_ms={r.ItlP50 * 1000:F2} itl_p99_ms={r.ItlP99 * 1000:F2}"));
}

// ---------------------------------------------------------------- one user, many conversations
// With prefix reuse each finished conversation stays parked in its KV slot. The decode step computes the rows up to the
// highest running slot, so where the next conversation lands decides what a single user pays per token. Baseline in the
// same run: prefix reuse off (nothing parked, always slot 0).
if (Run("sequential"))
{
    Console.WriteLine();
    Console.WriteLine($"One user, 48 distinct conversations one after another ({PromptTokens}-token prompts, {NewTokens} new tokens), 64 slots:");
    Console.WriteLine("| prefix reuse | ITL p50 ms (last 16) | decode rows at the end | parked slots |");
    Console.WriteLine("|---|---|---|---|");
    var results = new Dictionary<bool, List<double>> { [false] = [], [true] = [] };
    // Alternating, twice each: the first engine of a process also pays for warming up.
    foreach (bool reuse in new[] { true, false, true, false })
    {
        using var engine = new DecodeEngine(model, tokenizer, new DecodeEngineOptions { MaxSlots = 64, MaxSequenceLength = 256, PrefixReuse = reuse, KvCacheBytes = 2L << 30 });
        var itl = new List<double>();
        int done = 0;
        engine.Completed += c => { if (Interlocked.Increment(ref done) > 32) lock (itl) itl.AddRange(c.InterTokenSeconds); };
        for (int i = 0; i < 48; i++)
            await engine.Submit(new DecodeRequest { RequestId = $"s{i}", PromptIds = RandomPrompt(), MaxNewTokens = NewTokens, StopTokenIds = [] }).CountAsync();
        var load = engine.GetLoad();
        double p50;
        lock (itl) p50 = BenchmarkInputs.Percentile(itl.Order().ToArray(), 0.5);
        results[reuse].Add(p50);
        Console.WriteLine($"| {(reuse ? "on" : "off (baseline)")} | {p50 * 1000:F1} | {load.DecodeRows} | {load.ParkedSlots} |");
    }
    Console.WriteLine($"ratio on/off (second run of each): {results[true][1] / results[false][1]:F2}x");
}

// ---------------------------------------------------------------- vision
if (Run("vision"))
using (var vision = new VisionEngine(model, new VisionEngineOptions { MaxBatchImages = 8, MaxBatchWaitMilliseconds = 10 }))
{
    var images = Enumerable.Range(0, 17).Select(i => BenchmarkInputs.Png(768, 768, i)).ToList();  // 2x2 anyres grid: 5 views each
    await vision.EncodeAsync(images[16], "warm");
    var clock = Stopwatch.StartNew();
    for (int i = 0; i < 4; i++) await vision.EncodeAsync(images[i], "b1");
    double batch1 = 4 / clock.Elapsed.TotalSeconds;
    clock.Restart();
    await Task.WhenAll(images.Skip(4).Take(8).Select(b => vision.EncodeAsync(b, "b8")));
    double batch8 = 8 / clock.Elapsed.TotalSeconds;
    Console.WriteLine();
    Console.WriteLine("Vision (768x768 images, 5 views each: SigLIP + resampler):");
    Console.WriteLine("| batch | images/s | ratio |");
    Console.WriteLine("|---|---|---|");
    Console.WriteLine($"| 1 | {batch1:F2} | 1.00x |");
    Console.WriteLine($"| 8 | {batch8:F2} | {batch8 / batch1:F2}x |");

    // TTFT with the image cached vs not: vision encode (or cache hit) + prefill + first token.
    using var engine = new DecodeEngine(model, tokenizer, new DecodeEngineOptions { MaxSlots = 4, MaxSequenceLength = 1024, PrefixReuse = false });
    var prompt = tokenizer.Encode(ChatTemplate.Render([new ChatMessage("user", "<image>\nWhat is this?")], true, true));
    async Task<double> Ttft(byte[] image)
    {
        var clock2 = Stopwatch.StartNew();
        var tokens = (await vision.EncodeAsync(image, "ttft")).Tokens;
        await foreach (var e in engine.Submit(new DecodeRequest { RequestId = "t", PromptIds = prompt, Images = [tokens], MaxNewTokens = 1 }))
            return clock2.Elapsed.TotalMilliseconds;
        return double.NaN;
    }
    await Ttft(images[16]);
    double uncached = (await Ttft(images[12]) + await Ttft(images[13]) + await Ttft(images[14])) / 3;
    double cached = (await Ttft(images[12]) + await Ttft(images[13]) + await Ttft(images[14])) / 3;
    Console.WriteLine();
    Console.WriteLine("TTFT of a one-image request (5 views, 320 vision tokens + prompt):");
    Console.WriteLine("| image | TTFT ms |");
    Console.WriteLine("|---|---|");
    Console.WriteLine($"| uncached | {uncached:F0} |");
    Console.WriteLine($"| cached | {cached:F0} ({uncached / cached:F1}x faster) |");
}
