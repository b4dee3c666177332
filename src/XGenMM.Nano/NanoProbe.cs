using System.Diagnostics;
using TorchSharp;
using XGenMM.Model;
using XGenMM.Model.Imaging;
using XGenMM.Model.Tokenization;
using XGenMM.Model.Training;
using XGenMM.Model.Training.Data;
using static TorchSharp.torch;

/// <summary>
/// Why does a run not learn to look? A short training on one kind of question that prints the loss, the gradient
/// norm of each part (vision tower, resampler, decoder) and the relative difference between the vision tokens of a
/// red and a blue circle: near zero means the vision side has collapsed to image-independent tokens.
/// </summary>
internal static class NanoProbe
{
    public static int Run(string tokenizerDir, int steps, int batchSize, string[] types, bool simple, double learningRate, double visionScale)
    {
        var tokenizer = XGenMMTokenizer.FromDirectory(tokenizerDir);
        torch.manual_seed(NanoRecipe.TrainSeed);
        using var model = new XGenMMModel(NanoRecipe.Config);
        ModelInitialization.InitializeRandom(model, NanoRecipe.TrainSeed);
        var dataset = new VqaDataset(NanoRecipe.TrainSeed);
        var pool = simple ? [] : types is ["easy"] ? Enumerable.Range(0, steps * batchSize).Select(dataset.GetEasy).ToList()
            : Enumerable.Range(0, 1_000_000).Select(dataset.Get).Where(s => types.Contains(s.QuestionType)).Take(steps * batchSize).ToList();
        var batch = new TrainingBatch(model, tokenizer);
        var named = model.named_parameters().ToList();
        var parameters = named.Select(n => n.parameter).ToList();
        static string Part(string name) => name.Split('.') is [_, var part, ..] ? part : name;
        using var optimizer = VqaTrainer.CreateOptimizer(model, learningRate, visionScale, new TrainingOptions().WeightDecay);
        model.train();
        Sensitivity(model, "init");
        var clock = Stopwatch.StartNew();
        for (int step = 0; step < steps; step++)
        {
            var data = simple
                ? Enumerable.Range(step * batchSize, batchSize).Select(SimpleExample).ToList()
                : pool.Skip(step * batchSize).Take(batchSize).Select(NanoRecipe.ToExample).ToList();
            using var scope = torch.NewDisposeScope();
            optimizer.zero_grad();
            var loss = batch.Loss(data);
            loss.backward();
            var norms = named.GroupBy(n => Part(n.name))
                .Select(g => $"{g.Key} {Math.Sqrt(g.Sum(n => n.parameter.grad is { } grad ? grad.mul(grad).sum().item<float>() : 0)):E1}").ToList();
            torch.nn.utils.clip_grad_norm_(parameters, 1.0);
            optimizer.step();
            if (step % 10 == 0 || step == steps - 1)
                Console.WriteLine($"step {step} loss {loss.item<float>():F3} ({clock.Elapsed.TotalSeconds:F0} s) grad norms: {string.Join(", ", norms)}");
            if (step % 50 == 49) Sensitivity(model, $"step {step + 1}");
        }
        return 0;
    }

    /// <summary>One centred circle of a cycling colour on a fixed grey square: the easiest question that needs the image.</summary>
    private static TrainingExample SimpleExample(int i)
    {
        var color = ShapeColor.All[(i * 7 + i / 3) % ShapeColor.All.Length];
        return new TrainingExample([SceneRenderer.Render(CircleScene(color))],
            [new ChatMessage("user", "<image>\nWhat color is the circle?"), new ChatMessage("assistant", color.Name)], "simple");
    }

    /// <summary>
    /// Can the vision tower alone learn what each patch shows? Trains only SigLIP and the patch read-out on one patch
    /// label (the kind or the colour of each shape patch; no resampler, no decoder) and prints its loss (chance for the
    /// kind: ln 4 = 1.39), for a given patch size and depth, on the training mix or on one large shape (--easy).
    /// </summary>
    public static int Patches(int steps, int images, int patchSize, int layers, double learningRate, bool colors, bool easy)
    {
        var config = NanoRecipe.Config with { Vision = NanoRecipe.Config.Vision with { PatchSize = patchSize, NumHiddenLayers = layers } };
        torch.manual_seed(NanoRecipe.TrainSeed);
        using var model = new XGenMMModel(config);
        ModelInitialization.InitializeRandom(model, NanoRecipe.TrainSeed, fanIn: true);
        ModelInitialization.InitializeVisionPositions(model);
        int side = config.Vision.PatchesPerSide;
        using var head = new PatchLabelHead(config.Vision.HiddenSize, config.Resampler.LangEmbeddingDim, side);
        var parameters = model.VisionEncoder.parameters().Concat(head.parameters()).ToList();
        using var optimizer = torch.optim.AdamW(parameters, learningRate, weight_decay: 0.01);
        var preprocessor = new AnyResPreprocessor(config.Preprocessor);
        var dataset = new VqaDataset(NanoRecipe.TrainSeed);
        var clock = Stopwatch.StartNew();
        double sum = 0;
        int count = 0;
        for (int step = 0; step < steps; step++)
        {
            using var scope = torch.NewDisposeScope();
            var scenes = Enumerable.Range(step * images, images).Select(i => easy ? dataset.GetEasy(i).Images[0] : dataset.GetGroup(i, 1)[0].Images[0]).ToList();
            var (pixels, kinds, shapeColors) = LabelledViews(preprocessor, scenes, patchSize);
            var features = model.VisionEncoder.forward(pixels).reshape(-1, config.Vision.HiddenSize);
            var onShape = torch.tensor(Enumerable.Range(0, kinds.Length).Where(i => kinds[i] != 0).Select(i => (long)i).ToArray());
            var (kindLogits, colorLogits, _, _) = head.Patches(features.index_select(0, onShape));
            var targets = torch.tensor(colors ? shapeColors : kinds).index_select(0, onShape);
            var loss = nn.functional.cross_entropy(colors ? colorLogits : kindLogits, targets);
            optimizer.zero_grad();
            loss.backward();
            nn.utils.clip_grad_norm_(parameters, 1.0);
            optimizer.step();
            sum += loss.item<float>();
            count++;
            if ((step + 1) % 20 == 0)
            {
                Console.WriteLine($"step {step + 1}: {(colors ? "colour" : "kind")} loss on shape patches {sum / count:F3} ({clock.Elapsed.TotalSeconds:F0} s, {side * side} patches per view)");
                sum = 0;
                count = 0;
            }
        }
        return 0;
    }

    /// <summary>
    /// Trains the vision tower alone, long, on every patch label of the training mix (kind of shape and background
    /// patches, colour, place of shape patches) and saves the whole model every <paramref name="saveEvery"/> steps: a
    /// vision side that already tells the kinds apart, for <c>train --init</c>. The other parts are those of
    /// <paramref name="init"/> (or random). Why: in joint runs the kind loss of shape patches stayed at chance for 1500
    /// steps, while the tower alone kept falling slowly (1.39 -> 1.16 by step 1400, faster towards the end).
    /// </summary>
    public static int PretrainTower(string? init, string output, string tokenizerDir, int steps, int images, double learningRate, int saveEvery)
    {
        var config = NanoRecipe.Config;
        torch.manual_seed(NanoRecipe.TrainSeed);
        using var model = new XGenMMModel(config);
        ModelInitialization.InitializeRandom(model, NanoRecipe.TrainSeed);
        if (init is not null) XGenMM.Model.Checkpoints.CheckpointLoader.Load(model, init);
        ModelInitialization.InitializeRandom(model, NanoRecipe.TrainSeed, only: n => n.StartsWith("vlm.vision_encoder.", StringComparison.Ordinal), fanIn: true);
        ModelInitialization.InitializeVisionPositions(model);
        int side = config.Vision.PatchesPerSide, patchSize = config.Vision.PatchSize;
        using var head = new PatchLabelHead(config.Vision.HiddenSize, config.Resampler.LangEmbeddingDim, side);
        var parameters = model.VisionEncoder.parameters().Concat(head.parameters()).ToList();
        using var optimizer = torch.optim.AdamW(parameters, learningRate, weight_decay: 0.01);
        var preprocessor = new AnyResPreprocessor(config.Preprocessor);
        var dataset = new VqaDataset(NanoRecipe.TrainSeed);
        var clock = Stopwatch.StartNew();
        var sums = new double[4];
        int count = 0;
        model.train();
        for (int step = 0; step < steps; step++)
        {
            using var scope = torch.NewDisposeScope();
            foreach (var group in optimizer.ParamGroups) group.LearningRate = learningRate * Math.Min(1, (step + 1) / 100.0);
            var scenes = Enumerable.Range(step * images, images).SelectMany(i => dataset.Get(1_000_000 + i).Images).Take(images).ToList();
            var (pixels, kinds, colors) = LabelledViews(preprocessor, scenes, patchSize);
            var features = model.VisionEncoder.forward(pixels).reshape(-1, config.Vision.HiddenSize);
            var (kindLogits, colorLogits, rowLogits, columnLogits) = head.Patches(features);
            var shape = Enumerable.Range(0, kinds.Length).Where(i => kinds[i] != 0).Select(i => (long)i).ToArray();
            var onShape = torch.tensor(shape);
            var onBackground = torch.tensor(Enumerable.Range(0, kinds.Length).Where(i => kinds[i] == 0).Select(i => (long)i).ToArray());
            var kindTargets = torch.tensor(kinds);
            var kindShape = nn.functional.cross_entropy(kindLogits.index_select(0, onShape), kindTargets.index_select(0, onShape));
            var kindBackground = nn.functional.cross_entropy(kindLogits.index_select(0, onBackground), kindTargets.index_select(0, onBackground));
            var color = nn.functional.cross_entropy(colorLogits, torch.tensor(colors));
            var place = nn.functional.cross_entropy(rowLogits.index_select(0, onShape), torch.tensor(shape.Select(i => i % (side * side) / side).ToArray()))
                .add(nn.functional.cross_entropy(columnLogits.index_select(0, onShape), torch.tensor(shape.Select(i => i % side).ToArray())));
            var loss = kindShape.mul(2).add(kindBackground).add(color).add(place);
            optimizer.zero_grad();
            loss.backward();
            nn.utils.clip_grad_norm_(parameters, 1.0);
            optimizer.step();
            var parts = new[] { kindShape, kindBackground, color, place };
            for (int i = 0; i < parts.Length; i++) sums[i] += parts[i].item<float>();
            count++;
            if ((step + 1) % 50 == 0)
            {
                Console.WriteLine($"step {step + 1}: kind of shape patches {sums[0] / count:F3}, of background {sums[1] / count:F3}, colour {sums[2] / count:F3}, place {sums[3] / count:F3} ({clock.Elapsed.TotalSeconds:F0} s)");
                Array.Clear(sums);
                count = 0;
            }
            if ((step + 1) % saveEvery == 0 || step == steps - 1)
            {
                SaveCheckpoint(model, output, tokenizerDir, torch.ScalarType.Float32);
                Console.WriteLine($"saved {output} at step {step + 1}");
            }
        }
        return 0;
    }

    /// <summary>Renders each scene and its label map: all views as one pixel batch, and the kind and colour class of
    /// every patch of them in the same order.</summary>
    private static (Tensor Pixels, long[] Kinds, long[] Colors) LabelledViews(AnyResPreprocessor preprocessor, IReadOnlyList<Scene> scenes, int patchSize)
    {
        var data = scenes.AsParallel().AsOrdered().Select(scene =>
        {
            var picture = preprocessor.Process(SceneRenderer.Render(scene));
            var (kinds, colors) = PatchLabels.Read(SceneRenderer.RenderLabels(scene), picture, patchSize);
            return (Picture: picture, Kinds: kinds, Colors: colors);
        }).ToList();
        return (torch.cat(data.Select(d => d.Picture.ToTensor()).ToList(), 0), data.SelectMany(d => d.Kinds).ToArray(), data.SelectMany(d => d.Colors).ToArray());
    }

    /// <summary>Writes a checkpoint in the Hugging Face layout the loader reads: weights, config.json, tokenizer files.</summary>
    public static void SaveCheckpoint(XGenMMModel model, string output, string tokenizerDir, torch.ScalarType dtype)
    {
        Directory.CreateDirectory(output);
        XGenMM.Model.Checkpoints.SafeTensorsWriter.SaveModel(model, output, dtype);
        File.WriteAllText(Path.Combine(output, "config.json"), model.Config.ToJson());
        foreach (var f in Directory.GetFiles(tokenizerDir)) File.Copy(f, Path.Combine(output, Path.GetFileName(f)), overwrite: true);
    }

    private static Scene CircleScene(ShapeColor color) => new(400, 400, 130, false, 1, [new SceneShape(ShapeKind.Circle, color, 200, 200, 60)]);

    /// <summary>How much the vision tower's outputs and the resampled vision tokens of a checkpoint change when one
    /// centred shape changes colour, or changes kind: a kind change the decoder cannot see shows as a near-zero second figure.</summary>
    public static int Compare(string modelDirectory)
    {
        using var model = new XGenMMModel(NanoRecipe.Config);
        XGenMM.Model.Checkpoints.CheckpointLoader.Load(model, modelDirectory);
        model.eval();
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var preprocessor = new AnyResPreprocessor(model.Config.Preprocessor);
        (Tensor Features, Tensor Tokens) Encode(ShapeKind kind, ShapeColor color)
        {
            var image = preprocessor.Process(SceneRenderer.Render(new Scene(400, 400, 130, false, 1, [new SceneShape(kind, color, 200, 200, 60)])));
            return (model.VisionEncoder.forward(image.ToTensor()), model.EncodeImage(image));
        }
        static double Diff(Tensor a, Tensor b) => a.sub(b).norm().item<float>() / a.norm().item<float>();
        var reference = Encode(ShapeKind.Circle, ShapeColor.All[0]);
        var global = reference.Tokens.narrow(0, 0, model.Config.Resampler.NumVisTokens);
        Console.WriteLine($"spread of the {global.shape[0]} tokens of the global view around their mean: {global.sub(global.mean([0], keepdim: true)).norm().item<float>() / global.norm().item<float>():F3}");
        foreach (var (kind, color) in new[] { (ShapeKind.Circle, ShapeColor.All[2]), (ShapeKind.Star, ShapeColor.All[0]), (ShapeKind.Square, ShapeColor.All[0]), (ShapeKind.Triangle, ShapeColor.All[0]) })
        {
            var other = Encode(kind, color);
            Console.WriteLine($"red circle vs {color.Name} {kind.ToString().ToLowerInvariant()}: vision tower outputs {Diff(reference.Features, other.Features):F3}, vision tokens {Diff(reference.Tokens, other.Tokens):F3}");
        }
        return 0;
    }

    private static void Sensitivity(XGenMMModel model, string when)
    {
        using var scope = torch.NewDisposeScope();
        var preprocessor = new AnyResPreprocessor(model.Config.Preprocessor);
        Tensor Tokens(ShapeColor color) => model.EncodeImage(preprocessor.Process(SceneRenderer.Render(CircleScene(color))));
        var red = Tokens(ShapeColor.All[0]);
        var blue = Tokens(ShapeColor.All[2]);
        double norm = red.norm().item<float>();
        Console.WriteLine($"{when}: vision tokens {red.shape[0]}x{red.shape[1]}, |red| {norm:F1}, |red - blue| / |red| {red.sub(blue).norm().item<float>() / norm:F3}");
    }
}
