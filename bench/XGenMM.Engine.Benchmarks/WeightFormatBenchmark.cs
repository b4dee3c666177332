using System.Diagnostics;
using System.Globalization;
using TorchSharp;
using XGenMM.Engine.Decoding;
using XGenMM.Model;
using XGenMM.Model.Configuration;
using XGenMM.Model.Kernels;
using XGenMM.Model.Tokenization;

/// <summary>
/// `weights` section (issue 19): the decode engine with the decoder's linears and head on libtorch ("torch", the
/// baseline) and on our CPU kernels (f32, bf16, int8), same random weights, alternating rounds in one process.
/// Per format: closed-loop decode at 1/4/16 streams (output tok/s and decode-only tok/s = streams / ITL p50, the
/// figure llama-batched-bench's S_TG compares with) and the prefill rate of one 512-token prompt.
/// Arguments: `weights` [formats=torch,f32,int8] [streams=1,4,16] [rounds=2] [budget=MaxTokensPerStep] [slowdown=MixedStepSlowdown] [stagger=ms between stream starts] [prefills=3] [warmup=2: unmeasured passes of each point first; 0: cold]. A format may carry its own MixedStepSlowdown after '@' (formats=f32@0,f32@0.8 alternates the two on one model). A format name ending in "-ops" (f32-ops,
/// int8-ops) runs the same packed weights with <see cref="DecodeEngineOptions.CpuStep"/> off: libtorch's operators
/// between the products, as before CpuDecoderStep.
/// </summary>
internal static class WeightFormatBenchmark
{
    public static async Task Run(XGenMMConfig config, XGenMMTokenizer tokenizer, string[] args)
    {
        string Arg(string name, string fallback) => args.FirstOrDefault(a => a.StartsWith(name + "=", StringComparison.Ordinal))?[(name.Length + 1)..] ?? fallback;
        var formats = Arg("formats", "torch,f32,int8").Split(',');
        var streams = Arg("streams", "1,4,16").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        int rounds = int.Parse(Arg("rounds", "2"), CultureInfo.InvariantCulture);
        // Stream i starts i * stagger ms after the first: arrivals while others decode, so that ITL includes the
        // mixed steps that carry a new prompt's chunk (0 = all at once: the first step prefills every prompt).
        int stagger = int.Parse(Arg("stagger", "0"), CultureInfo.InvariantCulture);
        // Prefill measurements per round (median kept): one 512-token prompt is a quarter of a second.
        int prefills = int.Parse(Arg("prefills", "3"), CultureInfo.InvariantCulture);
        int warmups = int.Parse(Arg("warmup", "2"), CultureInfo.InvariantCulture);
        int budget = int.Parse(Arg("budget", new DecodeEngineOptions().MaxTokensPerStep.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        double slowdown = double.Parse(Arg("slowdown", new DecodeEngineOptions().MixedStepSlowdown.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        const int PromptTokens = 32, NewTokens = 64, PrefillTokens = 512;
        var results = new Dictionary<(string Format, int Streams), List<(double Output, double DecodeOnly, double ItlP50, double ItlP99, double TtftP50, double TtftP99)>>();
        var prefill = new Dictionary<string, List<double>>();
        var models = new Dictionary<string, XGenMMModel>();
        try
        {
            foreach (var format in formats.Select(BaseOf).Distinct())
            {
                var model = new XGenMMModel(config);
                ModelInitialization.InitializeRandom(model, seed: 1);
                model.eval();
                var packed = WeightFormats.Parse(WeightsOf(format)) is { } f ? model.PackDecoder(f) : default;
                models[format] = model;
                Console.WriteLine($"{format}: {packed.Layers} layers packed, {packed.Bytes / 1e6:F1} MB of kernel weights");
            }
            var rng = new Random(7);
            int[] Prompt(int length) => Enumerable.Range(0, length).Select(_ => rng.Next(100, 30000)).ToArray();
            for (int round = 0; round < rounds; round++)
                foreach (var format in formats)
                {
                    using var engine = new DecodeEngine(models[BaseOf(format)], tokenizer, new DecodeEngineOptions { MaxSlots = 32, MaxSequenceLength = 640, PrefixReuse = false, KvCacheBytes = 1L << 30, MaxTokensPerStep = budget, MixedStepSlowdown = SlowdownOf(format, slowdown), CpuStep = !BaseOf(format).EndsWith(OpsSuffix, StringComparison.Ordinal) });
                    var itl = new List<double>();
                    var ttft = new List<double>();
                    int completions = 0;
                    engine.Completed += c => { lock (itl) { itl.AddRange(c.InterTokenSeconds); ttft.Add(c.Timings.TimeToFirstTokenSeconds); completions++; } };
                    async Task<int> Stream(int id, int promptLength, int newTokens) =>
                        await engine.Submit(new DecodeRequest { RequestId = $"w{id}", PromptIds = Prompt(promptLength), MaxNewTokens = newTokens, StopTokenIds = [] })
                            .CountAsync(e => !e.IsFinal);
                    async Task<int> Point(int n)
                    {
                        int target;
                        lock (itl) target = completions + n;
                        int tokens = (await Task.WhenAll(Enumerable.Range(0, n).Select(async i =>
                        {
                            if (stagger > 0) await Task.Delay(i * stagger);
                            return await Stream(i, PromptTokens, NewTokens);
                        }))).Sum();
                        // A stream's end reaches its reader before the engine reports its completion (a 1-stream point
                        // once found its ITL list empty): the point ends with every completion counted.
                        for (var wait = Stopwatch.StartNew(); wait.Elapsed < TimeSpan.FromSeconds(2);)
                        {
                            lock (itl) if (completions >= target) break;
                            await Task.Delay(1);
                        }
                        return tokens;
                    }
                    foreach (int n in streams)
                    {
                        // Each point runs unmeasured first (twice by default), as a serving process is warm: the first passes of a
                        // shape run code the JIT has not yet tiered up (cold, the first pass of a point measures up to 40% lower, the second up to 30%).
                        for (int w = 0; w < warmups; w++) await Point(n);
                        lock (itl) { itl.Clear(); ttft.Clear(); }
                        var clock = Stopwatch.StartNew();
                        int tokens = await Point(n);
                        double seconds = clock.Elapsed.TotalSeconds;
                        double p50, p99, ttftP50, ttftP99;
                        lock (itl)
                        {
                            var sorted = itl.Order().ToArray();
                            p50 = BenchmarkInputs.Percentile(sorted, 0.5);
                            p99 = BenchmarkInputs.Percentile(sorted, 0.99);
                            var first = ttft.Order().ToArray();
                            ttftP50 = BenchmarkInputs.Percentile(first, 0.5);
                            ttftP99 = BenchmarkInputs.Percentile(first, 0.99);
                        }
                        var key = (format, n);
                        if (!results.TryGetValue(key, out var list)) results[key] = list = [];
                        list.Add((tokens / seconds, n / p50, p50, p99, ttftP50, ttftP99));
                        // One line per point for scripts (bench/llamacpp/side-by-side.sh).
                        Console.WriteLine(FormattableString.Invariant($"RESULT weights round={round + 1} format={format} streams={n} output_tps={tokens / seconds:F2} decode_tps={n / p50:F2} itl_p50_ms={p50 * 1000:F2} itl_p99_ms={p99 * 1000:F2} ttft_p50_ms={ttftP50 * 1000:F2} ttft_p99_ms={ttftP99 * 1000:F2}"));
                    }
                    await Stream(0, PrefillTokens, 1); // warm the 512-row shapes
                    var rates = new List<double>();
                    for (int i = 0; i < prefills; i++)
                    {
                        var sw = Stopwatch.StartNew();
                        await Stream(1, PrefillTokens, 1);
                        rates.Add(PrefillTokens / sw.Elapsed.TotalSeconds);
                    }
                    double rate = Median(rates);
                    if (!prefill.TryGetValue(format, out var pl)) prefill[format] = pl = [];
                    pl.Add(rate);
                    Console.WriteLine(FormattableString.Invariant($"RESULT prefill round={round + 1} format={format} tokens={PrefillTokens} tps={rate:F2}"));
                }
        }
        finally
        {
            foreach (var m in models.Values) m.Dispose();
        }
        string baseline = formats[0];
        Console.WriteLine();
        Console.WriteLine($"Decode by weight format ({PromptTokens}-token prompts, {NewTokens} new tokens, median of {rounds} alternating rounds; ratios to {baseline}):");
        Console.WriteLine("| format | streams | output tok/s | decode-only tok/s | decode-only ratio | ITL p50 ms | ITL p99 ms | p99 / p50 | TTFT p50 ms | TTFT p99 ms |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|");
        foreach (int n in streams)
            foreach (var format in formats)
            {
                var points = results[(format, n)];
                double output = Median(points.Select(r => r.Output)), decodeOnly = Median(points.Select(r => r.DecodeOnly));
                double p50 = Median(points.Select(r => r.ItlP50)), p99 = Median(points.Select(r => r.ItlP99));
                double ttft50 = Median(points.Select(r => r.TtftP50)), ttft99 = Median(points.Select(r => r.TtftP99));
                double baseDecode = Median(results[(baseline, n)].Select(r => r.DecodeOnly));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {format} | {n} | {output:F1} | {decodeOnly:F1} | {decodeOnly / baseDecode:F2}x | {p50 * 1000:F1} | {p99 * 1000:F1} | {p99 / p50:F2} | {ttft50 * 1000:F1} | {ttft99 * 1000:F1} |"));
            }
        Console.WriteLine();
        Console.WriteLine($"| format | prefill {PrefillTokens} tok/s (TTFT of one prompt) | ratio |");
        Console.WriteLine("|---|---|---|");
        foreach (var format in formats)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {format} | {Median(prefill[format]):F0} | {Median(prefill[format]) / Median(prefill[baseline]):F2}x |"));
    }

    private const string OpsSuffix = "-ops";

    private static string WeightsOf(string format)
    {
        format = BaseOf(format);
        return format.EndsWith(OpsSuffix, StringComparison.Ordinal) ? format[..^OpsSuffix.Length] : format;
    }

    /// <summary>The format of a variant "f32@0.8" (the part before '@'): variants of one format share its model.</summary>
    private static string BaseOf(string variant) => variant.Split('@')[0];

    /// <summary>The MixedStepSlowdown of a variant "f32@0.8", else <paramref name="fallback"/>.</summary>
    private static double SlowdownOf(string variant, double fallback) =>
        variant.Split('@') is [_, var value] ? double.Parse(value, CultureInfo.InvariantCulture) : fallback;

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? double.NaN : sorted[sorted.Length / 2];
    }

}
