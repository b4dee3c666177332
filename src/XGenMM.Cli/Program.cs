using System.Diagnostics;
using System.Globalization;
using SkiaSharp;
using XGenMM.Model;
using XGenMM.Model.Checkpoints;
using XGenMM.Model.Configuration;
using XGenMM.Model.Generation;
using XGenMM.Model.Imaging;
using XGenMM.Model.Runtime;
using XGenMM.Model.Tokenization;

// xgenmm: run one prompt (with images) against an xGen-MM checkpoint directory and stream the answer.
//   xgenmm --model DIR [--image FILE]... [--max-tokens N] [--temperature T] [--top-p P] [--seed S] "question"
//   xgenmm           the embedded xgenmm-nano answers a question about a generated picture
//   xgenmm demo      a small random-weight model of the real architecture, written and reloaded in HF layout
const string Usage = """
    usage: xgenmm [--model DIR] [--image FILE]... [--max-tokens N] [--temperature T] [--top-p P] [--seed S] "question"
           xgenmm            (the embedded xgenmm-nano model answers a question about a generated picture)
           xgenmm demo       (random weights: shows the loading and generation path only)
    """;

try
{
    Console.WriteLine($"TorchSharp: {TorchRuntime.EnsureLoaded()}");
    if (args.Length > 0 && args[0] == "demo") return Demo();
    if (args.Length == 0) return Sample();
    return Run(args);
}
catch (Exception ex) when (ex is CheckpointException or ConfigException or TokenizerException or ImageDecodeException
                               or PromptException or TorchLoadException or ArgumentException or IOException)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return 1;
}

static int Run(string[] args)
{
    string? model = null;
    var images = new List<string>();
    var prompt = new List<string>();
    int maxTokens = 256;
    var sampling = SamplingOptions.Greedy;
    for (int i = 0; i < args.Length; i++)
    {
        string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.\n{Usage}");
        switch (args[i])
        {
            case "--model": model = Next(); break;
            case "--image": images.Add(Next()); break;
            case "--max-tokens": maxTokens = int.Parse(Next(), CultureInfo.InvariantCulture); break;
            case "--temperature": sampling = sampling with { Temperature = float.Parse(Next(), CultureInfo.InvariantCulture) }; break;
            case "--top-p": sampling = sampling with { TopP = float.Parse(Next(), CultureInfo.InvariantCulture) }; break;
            case "--seed": sampling = sampling with { Seed = ulong.Parse(Next(), CultureInfo.InvariantCulture) }; break;
            case "-h" or "--help": Console.WriteLine(Usage); return 0;
            default: prompt.Add(args[i]); break;
        }
    }
    if (prompt.Count == 0) throw new ArgumentException(Usage);
    using var pipeline = LoadWithProgress(DefaultModel.Resolve(model));
    return Answer(pipeline, string.Join(' ', prompt), images.Select(File.ReadAllBytes).ToList(),
        new GenerationOptions { MaxNewTokens = maxTokens, Sampling = sampling });
}

static int Demo()
{
    Console.WriteLine("demo: a small xGen-MM (SigLIP -> perceiver -> Phi-3) with RANDOM weights; the answer is noise by design.");
    var config = new XGenMMConfig
    {
        Vision = new VisionTowerConfig { HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 2, NumAttentionHeads = 4 },
        Resampler = new ResamplerConfig { VisFeatureDim = 64, LangEmbeddingDim = 96, NumVisTokens = 16, Depth = 2, Heads = 4, DimHead = 16 },
        Text = new TextConfig { HiddenSize = 96, IntermediateSize = 256, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 4 },
    };
    string dir = Directory.CreateTempSubdirectory("xgenmm-demo-").FullName;
    try
    {
        using (var fresh = new XGenMMModel(config))
        {
            ModelInitialization.InitializeRandom(fresh, seed: 7);
            SafeTensorsWriter.SaveModel(fresh, dir, TorchSharp.torch.ScalarType.Float16, maxShardBytes: 4L << 20);
        }
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJson());
        foreach (var f in Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "models", "tokenizer")))
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        Console.WriteLine($"wrote a Hugging Face style checkpoint to {dir}: {string.Join(", ", Directory.GetFiles(dir).Select(Path.GetFileName).Order())}");

        using var pipeline = LoadWithProgress(dir);
        byte[] image = DemoImage();
        return Answer(pipeline, "<image>\nWhat color is the circle?", [image], new GenerationOptions { MaxNewTokens = 24 });
    }
    finally
    {
        Directory.Delete(dir, recursive: true);
    }
}

static int Sample()
{
    string dir = DefaultModel.Resolve(null);
    Console.WriteLine($"model: {DefaultModel.Name} ({dir}), a tiny xGen-MM trained on synthetic shapes; pass --model DIR for a real checkpoint.");
    using var pipeline = LoadWithProgress(dir);
    byte[] image = DemoImage();
    File.WriteAllBytes(Path.Combine(Path.GetTempPath(), "xgenmm-sample.png"), image);
    Console.WriteLine($"image: {Path.Combine(Path.GetTempPath(), "xgenmm-sample.png")} (a red circle and a blue square on grey)");
    Answer(pipeline, "<image>\nWhat color is the circle?", [image], new GenerationOptions { MaxNewTokens = 16 });
    Answer(pipeline, "<image>\nHow many shapes are there?", [image], new GenerationOptions { MaxNewTokens = 16 });
    return Answer(pipeline, "<image>\nIs the blue square left or right of the red circle?", [image], new GenerationOptions { MaxNewTokens = 16 });
}

static XGenMMPipeline LoadWithProgress(string dir)
{
    var sw = Stopwatch.StartNew();
    long lastPrint = 0;
    var progress = new Progress<CheckpointLoadProgress>(p =>
    {
        // Only loads that take more than a second get a progress line.
        if (p.Elapsed.TotalSeconds < 1 || p.Elapsed.Ticks - lastPrint < TimeSpan.TicksPerSecond / 2) return;
        lastPrint = p.Elapsed.Ticks;
        Console.Error.Write($"\rloading {p.BytesLoaded / 1e6:F0}/{p.TotalBytes / 1e6:F0} MB ({p.TensorsLoaded}/{p.TotalTensors} tensors)");
    });
    var pipeline = XGenMMPipeline.Load(dir, progress: progress);
    Console.Error.WriteLine($"\rloaded {dir} in {sw.Elapsed.TotalSeconds:F1} s                    ");
    return pipeline;
}

static int Answer(XGenMMPipeline pipeline, string question, IReadOnlyList<byte[]> images, GenerationOptions options)
{
    int placeholders = pipeline.Tokenizer.Encode(question).Count(id => id == SpecialTokens.Image);
    if (placeholders == 0 && images.Count > 0) question = string.Concat(Enumerable.Repeat("<image>\n", images.Count)) + question;
    Console.WriteLine($"user: {question}");
    Console.Write("assistant: ");
    var sw = Stopwatch.StartNew();
    int tokens = 0;
    FinishReason finish = FinishReason.None;
    foreach (var delta in pipeline.Chat([new ChatMessage("user", question)], images, options))
    {
        Console.Write(delta.Text);
        tokens++;
        finish = delta.Finish;
    }
    Console.WriteLine();
    Console.WriteLine($"[{tokens} tokens in {sw.Elapsed.TotalSeconds:F2} s, finish: {finish.ToString().ToLowerInvariant()}]");
    return 0;
}

static byte[] DemoImage()
{
    using var bitmap = new SKBitmap(640, 480);
    using (var canvas = new SKCanvas(bitmap))
    {
        canvas.Clear(new SKColor(140, 140, 140));
        using var paint = new SKPaint { Color = new SKColor(220, 40, 40), IsAntialias = true };
        canvas.DrawCircle(160, 250, 60, paint);
        paint.Color = new SKColor(40, 80, 225);
        canvas.DrawRect(430, 190, 110, 110, paint);
    }
    using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
    return data.ToArray();
}
