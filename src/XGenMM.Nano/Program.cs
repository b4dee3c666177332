using System.Globalization;
using TorchSharp;
using XGenMM.Model;
using XGenMM.Model.Checkpoints;
using XGenMM.Model.Tokenization;
using XGenMM.Model.Training;
using XGenMM.Model.Training.Data;

// xgenmm-nano: reproduce, evaluate and inspect the embedded default model.
//   train --out DIR [--steps N] [--batch B] [--work DIR]   trains from scratch (resumes from --work if present)
//         [--lr X] [--vision-lr-scale X] [--vision-freeze-steps N] [--curriculum 0|1]
//         [--init DIR] [--data-offset K]                   continues from a checkpoint's weights with a new schedule,
//                                                          on samples K.. of the training seed (--curriculum 0)
//         [--reset positions,PREFIX..] [--fan-in 1] [--position-scale X]
//                                                          after --init: re-initialise the vision positions (sine-cos,
//                                                          times X) and the tensors under each name prefix
//         [--groups G --questions Q] [--patch-labels W]    G scenes a step with up to Q questions each (plus --batch
//                                                          samples of the mix); patch-label supervision with weight W
//         [--pairs P] [--focus 1] [--per-example 1]        P two-image questions a step on the step's scenes; where
//                                                          questions and every pair's relation; each answer's loss
//                                                          counts the same, however long
//         [--mentions W] [--heads-from WORK]               what the image says about each shape a question names,
//                                                          read from the decoder's upper layers at the name, with
//                                                          weight W; the training-only heads of an earlier run
//         [--restart-from WORK] [--stop-after N]           a new schedule from an earlier run's weights, optimizer
//                                                          moments and heads; stop after N of its steps
//         [--types T,U]                                    only these question types of the grouped data (probes)
//         [--origin W]                                     which image and view each vision token is of, read from
//                                                          the decoder's early layers, with weight W
//         [--carry W]                                      what each question named, read at every position of its
//                                                          answer from the decoder's last layer input, weight W
//   eval  --model DIR [--count N] [--seed S]               exact-match accuracy per question type, greedy
//         [--weights torch|f32|bf16|int8]                  the decoder's linears on libtorch or on the CPU kernels
//   preview --out DIR [--count N]                          writes sample images and conversations
//   probe [--types color,shape] [--simple 1] [--steps N] [--vision-lr-scale X]
//                                                          a short run that shows whether the decoder learns to read
//                                                          the image: loss, gradient norm per part, and how much the
//                                                          vision tokens of a red and a blue circle differ
//   patches [--patch P] [--layers L] [--target kind|color] [--easy 1] [--steps N] [--images B]
//                                                          trains the vision tower alone on one patch label and
//                                                          prints its loss on shape patches
//   pretrain-tower --out DIR [--init DIR] [--steps N] [--images B] [--lr X] [--save-every N]
//                                                          trains a fresh vision tower alone on all patch labels of the
//                                                          mix (the other parts from --init) and saves the whole model
//   compare [--model DIR]                                  how much a checkpoint's vision outputs and tokens change
//                                                          with a shape's colour and kind
var opts = new Dictionary<string, string>(StringComparer.Ordinal);
for (int i = 1; i + 1 < args.Length; i += 2) opts[args[i]] = args[i + 1];
string Opt(string name, string fallback) => opts.TryGetValue(name, out var v) ? v : fallback;
int IntOpt(string name, int fallback) => int.Parse(Opt(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
string tokenizerDir = Path.Combine(AppContext.BaseDirectory, "tokenizer");

switch (args.FirstOrDefault())
{
    case "train":
    {
        string output = Opt("--out", "models/xgenmm-nano");
        int steps = IntOpt("--steps", 1500), batchSize = IntOpt("--batch", 8);
        var tokenizer = XGenMMTokenizer.FromDirectory(tokenizerDir);
        torch.manual_seed(NanoRecipe.TrainSeed);
        using var model = new XGenMMModel(NanoRecipe.Config);
        ModelInitialization.InitializeRandom(model, NanoRecipe.TrainSeed);
        if (opts.TryGetValue("--init", out var init))
        {
            CheckpointLoader.Load(model, init);
            Console.WriteLine($"initialised from {init}");
            if (opts.TryGetValue("--reset", out var reset))
            {
                foreach (string prefix in reset.Split(','))
                {
                    if (prefix == "positions") ModelInitialization.InitializeVisionPositions(model, double.Parse(Opt("--position-scale", "1"), CultureInfo.InvariantCulture));
                    else ModelInitialization.InitializeRandom(model, NanoRecipe.TrainSeed, only: name => name.StartsWith(prefix, StringComparison.Ordinal),
                        fanIn: Opt("--fan-in", "0") != "0");
                    Console.WriteLine($"re-initialised {prefix}");
                }
            }
        }
        int offset = IntOpt("--data-offset", 0);
        long parameters = model.parameters().Sum(p => p.NumberOfElements);
        Console.WriteLine($"xgenmm-nano: {parameters:N0} parameters, {steps} steps x {batchSize} examples");
        var dataset = new VqaDataset(NanoRecipe.TrainSeed);
        var options = new TrainingOptions { Steps = steps, BatchSize = batchSize, LearningRate = double.Parse(Opt("--lr", "0.0005"), CultureInfo.InvariantCulture),
            VisionLearningRateScale = double.Parse(Opt("--vision-lr-scale", "1"), CultureInfo.InvariantCulture),
            VisionFreezeSteps = IntOpt("--vision-freeze-steps", 0), WarmupSteps = Math.Min(200, steps / 10),
            PatchLabelWeight = double.Parse(Opt("--patch-labels", "0"), CultureInfo.InvariantCulture), LossPerExample = Opt("--per-example", "0") != "0",
            OriginWeight = double.Parse(Opt("--origin", "0"), CultureInfo.InvariantCulture),
            MentionWeight = double.Parse(Opt("--mentions", "0"), CultureInfo.InvariantCulture), HeadsFrom = opts.GetValueOrDefault("--heads-from"),
            CarryWeight = double.Parse(Opt("--carry", "0"), CultureInfo.InvariantCulture),
            RestartFrom = opts.GetValueOrDefault("--restart-from"), StopAfter = opts.TryGetValue("--stop-after", out var stop) ? int.Parse(stop, CultureInfo.InvariantCulture) : null };
        var trainer = new VqaTrainer(model, tokenizer, options);
        bool curriculum = Opt("--curriculum", "1") != "0";
        int groups = IntOpt("--groups", 0), questions = IntOpt("--questions", 6), pairs = IntOpt("--pairs", 0);
        bool focus = Opt("--focus", "0") != "0";
        var only = opts.TryGetValue("--types", out var t) ? t.Split(',').ToHashSet(StringComparer.Ordinal) : null;
        Func<int, IReadOnlyList<TrainingExample>> data = groups > 0
            ? step => NanoRecipe.ToExamples(NanoRecipe.GroupedSamples(dataset, step, groups, questions, batchSize, offset, pairs, focus).Where(x => only?.Contains(x.QuestionType) ?? true), options.PatchLabelWeight > 0,
                options.MentionWeight > 0 || options.CarryWeight > 0)
            : step => Enumerable.Range(0, batchSize).AsParallel().AsOrdered()
                .Select(slot => NanoRecipe.ToExample(curriculum ? NanoRecipe.CurriculumSample(dataset, step, steps, slot, batchSize) : dataset.Get(offset + step * batchSize + slot))).ToList();
        double loss = trainer.Train(data,
            Opt("--work", Path.Combine(Path.GetTempPath(), "xgenmm-nano-work")),
            p =>
            {
                if (p.Reported)
                    Console.WriteLine($"step {p.Step}/{p.Steps} loss {p.Loss:F4} lr {p.LearningRate:E2} grad {p.GradNorm:F2} {p.ExamplesPerSecond:F1} ex/s {p.Elapsed:hh\\:mm\\:ss} | "
                        + string.Join(" ", p.LossByKind.Select(k => $"{k.Key} {k.Value:F3}")));
            });
        NanoProbe.SaveCheckpoint(model, output, tokenizerDir, torch.ScalarType.Float16);
        Console.WriteLine($"final loss (mean of last 20 steps) {loss:F4}; saved {output}");
        return 0;
    }
    case "eval":
    {
        using var pipeline = XGenMMPipeline.Load(Opt("--model", "models/xgenmm-nano"));
        // --weights f32|bf16|int8 runs the decoder on the CPU kernels in that format (Model:WeightFormat); torch = as loaded.
        if (XGenMM.Model.Kernels.WeightFormats.Parse(Opt("--weights", "torch")) is { } weights)
            Console.WriteLine($"decoder weights: {weights}, {pipeline.Model.PackDecoder(weights).Layers} layers packed");
        int count = IntOpt("--count", 300), seed = IntOpt("--seed", NanoRecipe.EvalSeed);
        bool showMistakes = opts.ContainsKey("--mistakes");
        var result = NanoRecipe.Evaluate(pipeline, count, seed, Console.WriteLine, showMistakes
            ? (sample, answer) => Console.WriteLine($"  [{sample.QuestionType}] {sample.Conversation[^2].Content.Replace('\n', ' ')} -> '{answer}' (expected '{sample.Answer}'; " +
                string.Join(" | ", sample.Images.Select(i => $"{i.Width}x{i.Height} bg {i.Background}: " + string.Join(", ", i.Shapes.Select(s => $"{s.Name} at {s.X:F0},{s.Y:F0} r {s.Radius:F0}")))) + ")")
            : null);
        Console.WriteLine($"| question type | correct | total | accuracy |");
        Console.WriteLine($"|---|---|---|---|");
        foreach (var (type, (c, t)) in result) Console.WriteLine($"| {type} | {c} | {t} | {100.0 * c / t:F1}% |");
        int correct = result.Values.Sum(v => v.Correct), total = result.Values.Sum(v => v.Total);
        Console.WriteLine($"| **overall** | {correct} | {total} | {100.0 * correct / total:F1}% |");
        return 0;
    }
    case "preview":
    {
        string output = Opt("--out", "nano-preview");
        Directory.CreateDirectory(output);
        foreach (var (sample, i) in new VqaDataset(IntOpt("--seed", NanoRecipe.TrainSeed)).Take(IntOpt("--count", 12)).Select((s, i) => (s, i)))
        {
            for (int k = 0; k < sample.Images.Count; k++) File.WriteAllBytes(Path.Combine(output, $"{i:D3}-{k}.png"), SceneRenderer.RenderPng(sample.Images[k]));
            File.WriteAllText(Path.Combine(output, $"{i:D3}.txt"), $"[{sample.QuestionType}]\n" + string.Join("\n", sample.Conversation.Select(m => $"{m.Role}: {m.Content}")));
        }
        Console.WriteLine($"wrote {output}");
        return 0;
    }
    case "patches":
        return NanoProbe.Patches(IntOpt("--steps", 200), IntOpt("--images", 8), IntOpt("--patch", 32), IntOpt("--layers", 3),
            double.Parse(Opt("--lr", "0.001"), CultureInfo.InvariantCulture), Opt("--target", "kind") == "color", Opt("--easy", "0") != "0");
    case "pretrain-tower":
        return NanoProbe.PretrainTower(opts.GetValueOrDefault("--init"), Opt("--out", "/tmp/nano-tower"), tokenizerDir, IntOpt("--steps", 6000), IntOpt("--images", 8),
            double.Parse(Opt("--lr", "0.001"), CultureInfo.InvariantCulture), IntOpt("--save-every", 500));
    case "compare":
        return NanoProbe.Compare(Opt("--model", "models/xgenmm-nano"));
    case "probe":
        return NanoProbe.Run(tokenizerDir, IntOpt("--steps", 150), IntOpt("--batch", 8), Opt("--types", "color").Split(','), opts.ContainsKey("--simple"),
            double.Parse(Opt("--lr", "0.002"), CultureInfo.InvariantCulture), double.Parse(Opt("--vision-lr-scale", "1"), CultureInfo.InvariantCulture));
    default:
        Console.Error.WriteLine("usage: xgenmm-nano train|eval|preview|probe [options]");
        return 2;
}
