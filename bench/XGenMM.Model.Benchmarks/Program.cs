using System.Diagnostics;
using TorchSharp;
using XGenMM.Model;
using XGenMM.Model.Checkpoints;
using XGenMM.Model.Configuration;
using XGenMM.Model.Generation;
using XGenMM.Model.Runtime;
using static TorchSharp.torch;

// Model-level benchmark (issue 3): load time and peak memory, vision encode per image, prefill and decode
// throughput, and memory across a long generation. Runs on a random "small" xGen-MM of the real architecture
// (Phi-3 side shaped like performance-notes.md's llama.cpp comparison: hidden 512, 8 layers, ff 1536, vocab 32064).
if (args.Length > 0 && args[0] is "parts" or "parts-child") return PartsBenchmark.Run(args);
if (args.Length > 0 && args[0] == "kernels") { TorchRuntime.EnsureLoaded(); return KernelBenchmark.Run(args); }
if (args.Length > 0 && args[0] == "bandwidth") return BandwidthBenchmark.Run(args);
if (args.Length > 0 && args[0] == "realsize") return RealSizeBenchmark.Run(args);
if (args.Length > 0 && args[0] == "step") { TorchRuntime.EnsureLoaded(); return StepBenchmark.Run(args); }
Console.WriteLine($"TorchSharp: {TorchRuntime.EnsureLoaded()}, threads {torch.get_num_threads()}, {Environment.ProcessorCount} cores");
int decodeTokens = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 128;
int longTokens = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 2000;

var config = new XGenMMConfig
{
    Vision = new VisionTowerConfig { HiddenSize = 384, IntermediateSize = 1536, NumHiddenLayers = 6, NumAttentionHeads = 6 },
    Resampler = new ResamplerConfig { VisFeatureDim = 384, LangEmbeddingDim = 512, NumVisTokens = 64, Depth = 2, Heads = 8, DimHead = 48 },
    Text = new TextConfig { HiddenSize = 512, IntermediateSize = 1536, NumHiddenLayers = 8, NumAttentionHeads = 8, NumKeyValueHeads = 8 },
};
config.Validate();

string dir = Directory.CreateTempSubdirectory("xgenmm-bench-").FullName;
try
{
    using (var fresh = new XGenMMModel(config))
    {
        ModelInitialization.InitializeRandom(fresh, seed: 1);
        SafeTensorsWriter.SaveModel(fresh, dir, ScalarType.Float32, maxShardBytes: 100L << 20);
        File.WriteAllText(Path.Combine(dir, "config.json"), "{}");
    }
    long paramBytes = Directory.GetFiles(dir, "*.safetensors").Sum(f => new FileInfo(f).Length);
    GC.Collect();
    Memory.ResetPeak();
    long rssBefore = Memory.Rss();
    var sw = Stopwatch.StartNew();
    var model = new XGenMMModel(config);
    var report = CheckpointLoader.Load(model, dir);
    model.eval();
    sw.Stop();
    Console.WriteLine();
    Console.WriteLine("| measure | value |");
    Console.WriteLine("|---|---|");
    Console.WriteLine($"| checkpoint | {report.Tensors} tensors, {paramBytes / 1e6:F1} MB fp32, {Directory.GetFiles(dir, "*.safetensors").Length} shards |");
    Console.WriteLine($"| load time | {sw.Elapsed.TotalMilliseconds:F0} ms |");
    Console.WriteLine($"| peak RSS growth during load | {(Memory.PeakRss() - rssBefore) / 1e6:F1} MB ({(double)(Memory.PeakRss() - rssBefore) / paramBytes:F2}x the checkpoint) |");

    // Vision: one 2x2-grid image = 5 views of 384x384 through SigLIP + resampler.
    var pixels = torch.rand([5, 3, 384, 384]).mul_(2).sub_(1);
    var index = torch.arange(5 * 729, ScalarType.Int64).view(5, 729);
    var mask = torch.ones([5, 729], ScalarType.Bool);
    Tensor Encode() { using var f = model.EncodeVision(pixels); return model.ResampleImage(f, index, mask); }
    Encode().Dispose();
    sw.Restart();
    const int visionRuns = 3;
    for (int i = 0; i < visionRuns; i++) Encode().Dispose();
    Console.WriteLine($"| vision encode, 5-view (2x2 anyres) image | {sw.Elapsed.TotalMilliseconds / visionRuns:F0} ms per image |");

    // Prefill: 512 text tokens, batch 1.
    var prompt = Enumerable.Range(0, 512).Select(i => 100 + (i * 37 % 20000)).ToArray();
    double Prefill()
    {
        using var batch = MultimodalInputs.Build(model, [prompt], [[]]);
        var timer = Stopwatch.StartNew();
        _ = new BatchGenerator(model).Generate(batch, [prompt], [new GenerationOptions { MaxNewTokens = 1, StopTokenIds = [] }]).Count();
        return prompt.Length / timer.Elapsed.TotalSeconds;
    }
    Prefill();
    Console.WriteLine($"| prefill, 512-token prompt, batch 1 | {Prefill():F0} tokens/s |");

    double Decode(int batchSize, int tokens)
    {
        var prompts = Enumerable.Range(0, batchSize).Select(b => prompt.Take(32 + b).ToArray()).ToArray();
        using var batch = MultimodalInputs.Build(model, prompts, prompts.Select(_ => (IReadOnlyList<Tensor>)[]).ToList());
        var options = prompts.Select(_ => new GenerationOptions { MaxNewTokens = tokens, StopTokenIds = [] }).ToList();
        var steps = new BatchGenerator(model).Generate(batch, prompts, options).GetEnumerator();
        steps.MoveNext(); // the prefill step is not decode
        var timer = Stopwatch.StartNew();
        int produced = 0;
        while (steps.MoveNext()) produced += steps.Current.Tokens.Count(t => t >= 0);
        return produced / timer.Elapsed.TotalSeconds;
    }
    Decode(1, 8);
    double d1 = Decode(1, decodeTokens);
    double d8 = Decode(8, decodeTokens);
    Console.WriteLine($"| decode, batch 1 ({decodeTokens} tokens) | {d1:F0} tokens/s |");
    Console.WriteLine($"| decode, batch 8 ({decodeTokens} tokens each), aggregate | {d8:F0} tokens/s ({d8 / d1:F1}x batch 1) |");

    GC.Collect();
    long before = Memory.Rss();
    double dl = Decode(1, longTokens);
    GC.Collect();
    long after = Memory.Rss();
    Console.WriteLine($"| RSS before / after generating {longTokens} tokens | {before / 1e6:F1} MB / {after / 1e6:F1} MB (delta {(after - before) / 1e6:+0.0;-0.0} MB, {dl:F0} tokens/s) |");
    model.Dispose();
}
finally
{
    Directory.Delete(dir, recursive: true);
}
return 0;

internal static class Memory
{
    public static long Rss() => Read("VmRSS:");
    public static long PeakRss() => Read("VmHWM:");

    /// <summary>Resets the kernel's peak-RSS counter (VmHWM) for this process.</summary>
    public static void ResetPeak()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    private static long Read(string key)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(key, StringComparison.Ordinal))
                return long.Parse(line[key.Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        return 0;
    }
}
