using System.Diagnostics;
using System.Globalization;
using TorchSharp;
using XGenMM.Model;
using XGenMM.Model.Generation;
using XGenMM.Model.Imaging;
using XGenMM.Model.Kernels;
using XGenMM.Model.Language;
using XGenMM.Model.Runtime;
using static TorchSharp.torch;

/// <summary>
/// Real-size figures (issue 19): `realsize [--dir DIR] [--format bf16|int8|f32|torch] [--keep] [--layers N]` writes a
/// random bfloat16 checkpoint of the real xGen-MM v1.5 shapes (<see cref="RealSizeCheckpoint"/>), loads it the way a
/// silo with both roles does (XGenMMPipeline.Load in bfloat16, then PackDecoder in Model:WeightFormat), and measures
/// load time and resident memory, a 5-view image's vision encode, 512-token prefill, and decode at batch 1 and 8 set
/// against the memory-bandwidth bound measured in the same process. --layers N cuts every stack to N layers: a quick
/// check that the pipeline works, not a figure. --dry-run only checks the layout against the real index and prints the
/// checkpoint's size (no weights written, nothing measured).
/// </summary>
internal static class RealSizeBenchmark
{
    private const int PromptTokens = 32, DecodeTokens = 16, WarmupTokens = 2, PrefillTokens = 512, BandwidthMib = 1024;

    public static int Run(string[] args)
    {
        string? Option(string name)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
        }
        int? layers = Option("--layers") is { } l ? int.Parse(l, CultureInfo.InvariantCulture) : null;
        string formatName = Option("--format") ?? "bf16";
        WeightFormat? format = WeightFormats.Parse(formatName);
        bool keep = args.Contains("--keep"), dryRun = args.Contains("--dry-run");
        string dir = Option("--dir") ?? (layers is { } n ? $"/tmp/xgenmm-realsize-{n}layers" : "/tmp/xgenmm-realsize");

        var clock = Stopwatch.StartNew();
        void Log(string message) => Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[{clock.Elapsed.TotalSeconds,7:F1} s] {message}"));
        Log($"TorchSharp {TorchRuntime.EnsureLoaded()}, {torch.get_num_threads()} torch threads, {Environment.ProcessorCount} cores, "
            + $"load average {File.ReadAllText("/proc/loadavg").Trim()}");
        Log($"checkpoint {dir}, decoder format {formatName}" + (layers is { } m ? $", LIMITED to {m} layers (pipeline check, not a real-size figure)" : ""));

        if (dryRun)
        {
            string scratch = Directory.CreateTempSubdirectory("xgenmm-realsize-layout-").FullName;
            try
            {
                var (count, total, _) = RealSizeCheckpoint.Write(scratch, PartsBenchmark.FindRealConfig(), layers, Log, dryRun: true);
                Log($"layout checked: {count} tensors, {total / 1e9:F2} GB in bf16; no weights written");
            }
            finally
            {
                Directory.Delete(scratch, recursive: true);
            }
            return 0;
        }
        string checkpointNote;
        if (RealSizeCheckpoint.IsComplete(dir, layers))
        {
            checkpointNote = "reused";
            Log($"reusing the complete checkpoint already in {dir}");
        }
        else
        {
            var writeClock = Stopwatch.StartNew();
            var (tensors, bytes, shards) = RealSizeCheckpoint.Write(dir, PartsBenchmark.FindRealConfig(), layers, Log);
            checkpointNote = string.Create(CultureInfo.InvariantCulture, $"written in {writeClock.Elapsed.TotalSeconds:F0} s");
            Log($"checkpoint complete: {tensors} tensors, {bytes / 1e9:F2} GB bf16, {shards} shards");
        }
        try
        {
            Measure(dir, format, formatName, checkpointNote, Log);
        }
        finally
        {
            if (!keep)
            {
                Directory.Delete(dir, recursive: true);
                Log($"deleted {dir} (--keep keeps it)");
            }
        }
        return 0;
    }

    private static void Measure(string dir, WeightFormat? format, string formatName, string checkpointNote, Action<string> log)
    {
        long checkpointBytes = Directory.GetFiles(dir, "*.safetensors").Sum(f => new FileInfo(f).Length);
        GC.Collect();
        long rssBefore = Memory.Rss();
        Memory.ResetPeak();
        var clock = Stopwatch.StartNew();
        // What EngineHost does for a silo with both roles on the CPU: one pipeline of all parts, then the decoder packed.
        using var pipeline = XGenMMPipeline.Load(dir, torch.CPU, ScalarType.BFloat16);
        double loadSeconds = clock.Elapsed.TotalSeconds;
        log($"loaded in {loadSeconds:F1} s");
        clock.Restart();
        var model = pipeline.Model;
        var packed = format is { } f ? model.PackDecoder(f) : default;
        double packSeconds = clock.Elapsed.TotalSeconds;
        if (format is not null && packed.Layers == 0) log($"WARNING: nothing packed (no AVX2+FMA?): the decoder runs on libtorch, not {formatName}");
        else if (format is not null) log($"packed {packed.Layers} layers in {formatName} ({packed.Bytes / 1e9:F2} GB) in {packSeconds:F1} s");
        GC.Collect();
        long rssAfter = Memory.Rss(), peak = Memory.PeakRss();

        // Bytes a decode step reads: the packed linear layers and head, plus whatever the decoder still holds as
        // tensors (norms; every linear layer when not packed). Embeddings are gathered a row per token, not read.
        long tensorBytes = model.LanguageModel.named_parameters()
            .Where(p => !p.name.Contains("embed_tokens", StringComparison.Ordinal))
            .Sum(p => p.parameter.NumberOfElements * p.parameter.ElementSize);
        long bytesPerToken = packed.Bytes + tensorBytes;

        // Vision: a 768x768 picture is anyres grid 2x2, four tiles and the global view, as the vision engine encodes it.
        var picture = new RgbImage(768, 768);
        for (int i = 0; i < picture.Pixels.Length; i++) picture.Pixels[i] = (byte)(i * 7 % 251);
        var image = pipeline.Preprocessor.Process(picture);
        var visionSeconds = new List<double>();
        for (int run = 0; run < 2; run++)
        {
            clock.Restart();
            using (var scope = torch.NewDisposeScope()) model.EncodeImage(image);
            visionSeconds.Add(clock.Elapsed.TotalSeconds);
            log($"vision encode {run + 1}/2 ({image.Views} views): {visionSeconds[^1]:F1} s");
        }

        var rng = new Random(7);
        int[] Prompt(int length) => Enumerable.Range(0, length).Select(_ => rng.Next(100, 30000)).ToArray();
        double Decode(int batchSize)
        {
            using var scope = torch.NewDisposeScope();
            var prompts = Enumerable.Range(0, batchSize).Select(_ => Prompt(PromptTokens)).ToArray();
            using var batch = MultimodalInputs.Build(model, prompts, prompts.Select(_ => (IReadOnlyList<Tensor>)[]).ToList());
            var options = prompts.Select(_ => new GenerationOptions { MaxNewTokens = 1 + WarmupTokens + DecodeTokens, StopTokenIds = [] }).ToList();
            using var steps = new BatchGenerator(model).Generate(batch, prompts, options).GetEnumerator();
            // The first step is the prefill; the next few warm the decode path (KV cache growth, first-touch pages).
            for (int i = 0; i < 1 + WarmupTokens; i++) steps.MoveNext();
            var timer = Stopwatch.StartNew();
            int produced = 0;
            while (steps.MoveNext()) produced += steps.Current.Tokens.Count(t => t >= 0);
            double rate = produced / timer.Elapsed.TotalSeconds;
            log($"decode batch {batchSize}: {produced} tokens, {rate:F2} tokens/s");
            return rate;
        }
        double decode1 = Decode(1);
        double decode8 = Decode(8);

        var prefillPrompt = Prompt(PrefillTokens);
        double prefill;
        using (var scope = torch.NewDisposeScope())
        {
            using var batch = MultimodalInputs.Build(model, [prefillPrompt], [[]]);
            clock.Restart();
            _ = new BatchGenerator(model).Generate(batch, [prefillPrompt], [new GenerationOptions { MaxNewTokens = 1, StopTokenIds = [] }]).Count();
            prefill = PrefillTokens / clock.Elapsed.TotalSeconds;
        }
        log($"prefill {PrefillTokens} tokens: {prefill:F1} tokens/s");

        // The serving path of a packed decoder: the engine runs every mixed step in CpuDecoderStep. Same shapes as
        // above: one prompt chunk, then decode steps of all rows; greedy tokens fed back.
        var cpuStep = CpuDecoderStep.TryCreate(model.LanguageModel.Model);
        (double Prefill, double Decode1, double Decode8)? serving = null;
        if (cpuStep is not null)
        {
            var text = model.Config.Text;
            int positions = Math.Max(PrefillTokens, PromptTokens + 1 + WarmupTokens + DecodeTokens) + 1;
            var keys = Enumerable.Range(0, text.NumHiddenLayers).Select(_ => torch.zeros([8, text.NumAttentionHeads, positions, text.HeadDim], model.DType)).ToList();
            var values = Enumerable.Range(0, text.NumHiddenLayers).Select(_ => torch.zeros([8, text.NumAttentionHeads, positions, text.HeadDim], model.DType)).ToList();
            long[] Greedy(Tensor hidden)
            {
                using var logits = model.Logits(hidden.to_type(model.DType));
                using var ids = logits.argmax(-1);
                return ids.data<long>().ToArray();
            }
            double StepPrefill(int[] prompt)
            {
                using var scope = torch.NewDisposeScope();
                var timer = Stopwatch.StartNew();
                var x = model.Embed(torch.tensor(prompt.Select(t => (long)t).ToArray()));
                var hidden = cpuStep.Forward(x, prompt.Select((_, i) => new StepToken(0, i)).ToArray(), keys, values, [prompt.Length - 1]);
                Greedy(hidden);
                return prompt.Length / timer.Elapsed.TotalSeconds;
            }
            double StepDecode(int batchSize)
            {
                using var scope = torch.NewDisposeScope();
                var prompts = Enumerable.Range(0, batchSize).Select(_ => Prompt(PromptTokens)).ToArray();
                var tokens = prompts.SelectMany((p, slot) => p.Select((_, i) => new StepToken(slot, i))).ToArray();
                var x = model.Embed(torch.tensor(prompts.SelectMany(p => p).Select(t => (long)t).ToArray()));
                var next = Greedy(cpuStep.Forward(x, tokens, keys, values, Enumerable.Range(0, batchSize).Select(b => (b + 1) * PromptTokens - 1).ToArray()));
                var timer = new Stopwatch();
                int produced = 0;
                for (int step = 0; step < WarmupTokens + DecodeTokens; step++)
                {
                    if (step == WarmupTokens) timer.Start();
                    using var stepScope = torch.NewDisposeScope();
                    var rows = Enumerable.Range(0, batchSize).Select(b => new StepToken(b, PromptTokens + step)).ToArray();
                    next = Greedy(cpuStep.Forward(model.Embed(torch.tensor(next)), rows, keys, values, Enumerable.Range(0, batchSize).ToArray()));
                    if (timer.IsRunning) produced += batchSize;
                }
                double rate = produced / timer.Elapsed.TotalSeconds;
                log($"CpuDecoderStep decode batch {batchSize}: {produced} tokens, {rate:F2} tokens/s");
                return rate;
            }
            StepPrefill(Prompt(64)); // first use: buffers, pages
            double stepPrefill = StepPrefill(Prompt(PrefillTokens));
            log($"CpuDecoderStep prefill {PrefillTokens} tokens: {stepPrefill:F1} tokens/s");
            serving = (stepPrefill, StepDecode(1), StepDecode(8));
            foreach (var t in keys.Concat(values)) t.Dispose();
        }

        var (copy, read) = BandwidthBenchmark.Measure(BandwidthMib, Environment.ProcessorCount);
        log($"memory bandwidth: read {read / 1e9:F1} GB/s, copy {copy / 1e9:F1} GB/s");
        double bound1 = read / bytesPerToken, bound8 = 8 * bound1;   // batch 8 reads the weights once per step too

        string Row(string measure, string value) => $"| {measure} | {value} |";
        var c = CultureInfo.InvariantCulture;
        Console.WriteLine();
        Console.WriteLine($"Real-size figures, decoder format {formatName}, {Environment.ProcessorCount} cores, load average {File.ReadAllText("/proc/loadavg").Trim()}");
        Console.WriteLine("| measure | value |");
        Console.WriteLine("|---|---|");
        Console.WriteLine(Row("checkpoint (bf16, random)", string.Create(c, $"{checkpointBytes / 1e9:F2} GB, {checkpointNote}")));
        Console.WriteLine(Row("load (XGenMMPipeline.Load, bfloat16)", string.Create(c, $"{loadSeconds:F1} s")));
        Console.WriteLine(Row($"pack decoder ({formatName})", format is null ? "not packed (libtorch)" : string.Create(c, $"{packSeconds:F1} s, {packed.Layers} layers, {packed.Bytes / 1e9:F2} GB")));
        Console.WriteLine(Row("RSS added by load + pack", string.Create(c, $"{(rssAfter - rssBefore) / 1e9:F2} GB (peak {(peak - rssBefore) / 1e9:F2} GB above the start)")));
        Console.WriteLine(Row($"vision encode, {image.Views}-view image (768x768)", string.Create(c, $"{visionSeconds[1]:F2} s (first call {visionSeconds[0]:F2} s)")));
        Console.WriteLine(Row($"prefill, {PrefillTokens}-token prompt, batch 1", string.Create(c, $"{prefill:F1} tokens/s")));
        Console.WriteLine(Row("decoder weights read per token", string.Create(c, $"{bytesPerToken / 1e9:F2} GB")));
        Console.WriteLine(Row($"memory bandwidth ({BandwidthMib} MiB, {Environment.ProcessorCount} threads)", string.Create(c, $"read {read / 1e9:F1} GB/s, copy {copy / 1e9:F1} GB/s")));
        Console.WriteLine(Row($"decode, batch 1 ({DecodeTokens} tokens after a {PromptTokens}-token prompt)",
            string.Create(c, $"{decode1:F2} tokens/s; bound {bound1:F2} tokens/s; measured/bound {decode1 / bound1:F2}")));
        Console.WriteLine(Row($"decode, batch 8 ({DecodeTokens} tokens each), aggregate",
            string.Create(c, $"{decode8:F2} tokens/s; bound {bound8:F2} tokens/s; measured/bound {decode8 / bound8:F2}")));
        if (serving is var (sp, s1, s8))
        {
            Console.WriteLine(Row($"CpuDecoderStep (the engine's path): prefill, {PrefillTokens}-token prompt in one chunk", string.Create(c, $"{sp:F1} tokens/s")));
            Console.WriteLine(Row("CpuDecoderStep: decode, batch 1", string.Create(c, $"{s1:F2} tokens/s; bound {bound1:F2}; measured/bound {s1 / bound1:F2}")));
            Console.WriteLine(Row("CpuDecoderStep: decode, batch 8 aggregate", string.Create(c, $"{s8:F2} tokens/s; bound {bound8:F2}; measured/bound {s8 / bound8:F2}")));
        }
        Console.WriteLine();
    }
}
