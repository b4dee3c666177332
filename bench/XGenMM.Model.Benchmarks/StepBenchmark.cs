using System.Diagnostics;
using System.Globalization;
using TorchSharp;
using XGenMM.Model;
using XGenMM.Model.Configuration;
using XGenMM.Model.Kernels;
using XGenMM.Model.Language;
using static TorchSharp.torch;

/// <summary>
/// `step [formats=f32,int8] [rows=1,4,16]`: one decode step of <see cref="CpuDecoderStep"/> at the issue-19 bench shape
/// (hidden 512, 8 layers, ff 1536, vocab 32064), rows in different slots at about 64-164 cached positions: the
/// layers apart from the head, and the time of the products alone (every packed weight multiplied at the same rows,
/// back to back) in the same process, so the part of a step that is not the products can be read off.
/// </summary>
internal static class StepBenchmark
{
    public static int Run(string[] args)
    {
        string Arg(string name, string fallback) => args.FirstOrDefault(a => a.StartsWith(name + "=", StringComparison.Ordinal))?[(name.Length + 1)..] ?? fallback;
        var formats = Arg("formats", "f32,int8").Split(',');
        var rowCounts = Arg("rows", "1,4,16").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        var config = new XGenMMConfig
        {
            Vision = new VisionTowerConfig { HiddenSize = 384, IntermediateSize = 1536, NumHiddenLayers = 1, NumAttentionHeads = 6 },
            Resampler = new ResamplerConfig { VisFeatureDim = 384, LangEmbeddingDim = 512, NumVisTokens = 64, Depth = 1, Heads = 8, DimHead = 48 },
            Text = new TextConfig { HiddenSize = 512, IntermediateSize = 1536, NumHiddenLayers = 8, NumAttentionHeads = 8, NumKeyValueHeads = 8 },
        };
        var text = config.Text;
        Console.WriteLine($"load average {File.ReadAllText("/proc/loadavg").Trim()}");
        Console.WriteLine("| format | rows | step ms (layers + head) | layers ms | head ms | products alone ms | not products ms | tok/s |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (var formatName in formats)
        {
            using var model = new XGenMMModel(config);
            ModelInitialization.InitializeRandom(model, seed: 1);
            model.eval();
            model.PackDecoder(WeightFormats.Parse(formatName) ?? throw new ArgumentException("step needs a packed format"));
            var step = CpuDecoderStep.TryCreate(model.LanguageModel.Model)!;
            var weights = model.LanguageModel.modules().OfType<XGenMM.Model.Modules.Linear>().Distinct().Where(l => l.Packed is not null).Select(l => l.Packed!).ToList();
            weights.Add(model.LanguageModel.LmHead.Packed!);
            int slots = rowCounts.Max();
            var keys = Enumerable.Range(0, text.NumHiddenLayers).Select(_ => torch.zeros([slots, text.NumAttentionHeads, 200, text.HeadDim])).ToList();
            var values = Enumerable.Range(0, text.NumHiddenLayers).Select(_ => torch.zeros([slots, text.NumAttentionHeads, 200, text.HeadDim])).ToList();
            foreach (int rows in rowCounts)
            {
                var layerTimes = new List<double>();
                var headTimes = new List<double>();
                var productTimes = new List<double>();
                for (int it = 0; it < 220; it++)
                {
                    using var scope = torch.NewDisposeScope();
                    var x = torch.randn([rows, text.HiddenSize]);
                    var tokens = Enumerable.Range(0, rows).Select(r => new StepToken(r, 64 + it % 100)).ToArray();
                    var clock = Stopwatch.StartNew();
                    var hidden = step.Forward(x, tokens, keys, values, Enumerable.Range(0, rows).ToArray());
                    double layers = clock.Elapsed.TotalMilliseconds;
                    model.Logits(hidden);
                    double all = clock.Elapsed.TotalMilliseconds;
                    var inputs = weights.Select(w => torch.randn([rows, w.InFeatures])).ToList();
                    clock.Restart();
                    for (int i = 0; i < weights.Count; i++) weights[i].Forward(inputs[i]).Dispose();
                    double products = clock.Elapsed.TotalMilliseconds;
                    if (it < 20) continue;
                    layerTimes.Add(layers);
                    headTimes.Add(all - layers);
                    productTimes.Add(products);
                }
                double l = Median(layerTimes), h = Median(headTimes), p = Median(productTimes);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {formatName} | {rows} | {l + h:F2} | {l:F2} | {h:F2} | {p:F2} | {l + h - p:F2} | {rows / (l + h) * 1000:F0} |"));
            }
            foreach (var t in keys.Concat(values)) t.Dispose();
        }
        return 0;
    }

    private static double Median(List<double> values)
    {
        values.Sort();
        return values[values.Count / 2];
    }
}
