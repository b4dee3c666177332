using TorchSharp;
using XGenMM.Model.Checkpoints;
using XGenMM.Model.Configuration;
using XGenMM.Model.Imaging;
using XGenMM.Model.Tokenization;
using XGenMM.Model.Training;
using XGenMM.Model.Training.Data;

namespace XGenMM.Model.Training.Tests;

public sealed class TrainerTests
{
    private static readonly XGenMMTokenizer Tokenizer = XGenMMTokenizer.FromDirectory(Path.Combine(AppContext.BaseDirectory, "tokenizer"));

    internal static XGenMMConfig TinyConfig() => new()
    {
        Vision = new VisionTowerConfig { HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 1, NumAttentionHeads = 2, PatchSize = 32 },
        Resampler = new ResamplerConfig { VisFeatureDim = 32, LangEmbeddingDim = 32, NumVisTokens = 4, Depth = 1, Heads = 2, DimHead = 16, FFMult = 2 },
        Text = new TextConfig { HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 1, NumAttentionHeads = 2, NumKeyValueHeads = 2 },
    };

    private static readonly (string Name, byte R, byte G, byte B)[] Colors = [("red", 220, 30, 30), ("blue", 30, 60, 220), ("green", 30, 180, 60)];

    /// <summary>Solid-colour images and "What color is this image?" - learnable in a few dozen steps.</summary>
    internal static IReadOnlyList<TrainingExample> ColorBatch(int step, int size = 4)
    {
        var examples = new List<TrainingExample>();
        for (int i = 0; i < size; i++)
        {
            var c = Colors[(step * size + i) % Colors.Length];
            var image = new RgbImage(400, 300);
            for (int p = 0; p < image.Pixels.Length; p += 3) { image.Pixels[p] = c.R; image.Pixels[p + 1] = c.G; image.Pixels[p + 2] = c.B; }
            examples.Add(new TrainingExample([image], [new ChatMessage("user", "<image>\nWhat color is this image?"), new ChatMessage("assistant", c.Name)], "color"));
        }
        return examples;
    }

    private static XGenMMModel FreshModel(long seed)
    {
        torch.manual_seed(seed);
        var model = new XGenMMModel(TinyConfig());
        ModelInitialization.InitializeRandom(model, seed);
        return model;
    }

    [Fact]
    public void Only_assistant_replies_and_their_end_token_are_targets()
    {
        using var model = FreshModel(1);
        var (ids, isTarget) = new TrainingBatch(model, Tokenizer).Tokenize([new ChatMessage("user", "Hi"), new ChatMessage("assistant", "red")]);
        var targets = ids.Where((_, i) => isTarget[i]).ToArray();
        Assert.Equal([.. Tokenizer.Encode("red"), SpecialTokens.End], targets);
        // The same ids as the inference prompt plus the answer.
        var prompt = Tokenizer.Encode(ChatTemplate.Render([new ChatMessage("user", "Hi")], addGenerationPrompt: true, addDefaultSystemPrompt: true));
        Assert.Equal(prompt, ids.Take(prompt.Count));
    }

    [Fact]
    public void Loss_falls_by_a_clear_margin_within_a_few_dozen_steps()
    {
        using var model = FreshModel(2);
        var options = new TrainingOptions { Steps = 40, BatchSize = 4, LearningRate = 1e-2, WarmupSteps = 5, CheckpointEvery = 0 };
        var losses = new List<double>();
        var reports = new List<IReadOnlyDictionary<string, double>>();
        new VqaTrainer(model, Tokenizer, options).Train(step => ColorBatch(step), progress: p =>
        {
            losses.Add(p.Loss);
            if (p.Reported) reports.Add(p.LossByKind);
        });
        Assert.Equal(40, losses.Count);
        double first = losses.Take(5).Average(), last = losses.TakeLast(5).Average();
        Assert.True(last < first * 0.3, $"loss {first:F3} -> {last:F3}");
        // the per-type report (every 20 steps) shows the same fall for the one question type of this data
        Assert.Equal(2, reports.Count);
        Assert.Equal(["color"], reports[0].Keys);
        Assert.True(reports[1]["color"] < reports[0]["color"] * 0.5, $"{reports[0]["color"]:F3} -> {reports[1]["color"]:F3}");
    }

    [Fact]
    public void Questions_sharing_one_image_object_give_the_loss_of_separate_copies()
    {
        using var model = FreshModel(4);
        var batch = new TrainingBatch(model, Tokenizer);
        var image = ColorBatch(0, 1)[0].Images[0];
        var copy = new RgbImage(image.Width, image.Height, (byte[])image.Pixels.Clone());
        TrainingExample Ask(RgbImage i, string question, string answer) =>
            new([i], [new ChatMessage("user", "<image>\n" + question), new ChatMessage("assistant", answer)]);
        using var shared = batch.Loss([Ask(image, "What color is this image?", "red"), Ask(image, "Describe the image.", "A red image.")]);
        using var separate = batch.Loss([Ask(image, "What color is this image?", "red"), Ask(copy, "Describe the image.", "A red image.")]);
        Assert.Equal(separate.item<float>(), shared.item<float>(), 5);
        // and it is the image that is shared, not only its tokens: a different image changes the second loss
        var blue = ColorBatch(1, 1)[0].Images[0];
        using var other = batch.Loss([Ask(image, "What color is this image?", "red"), Ask(blue, "Describe the image.", "A red image.")]);
        Assert.NotEqual(separate.item<float>(), other.item<float>(), 5);
    }

    [Fact]
    public void Per_example_loss_is_the_mean_of_each_answers_own_mean()
    {
        using var model = FreshModel(5);
        var image = ColorBatch(0, 1)[0].Images[0];
        TrainingExample Ask(string answer) => new([image], [new ChatMessage("user", "<image>\nWhat is this?"), new ChatMessage("assistant", answer)]);
        TrainingExample shortAnswer = Ask("red"), longAnswer = Ask("A red image with nothing else on it, seen from far away.");
        float Loss(TrainingBatch batch, params TrainingExample[] examples)
        {
            using var loss = batch.Loss(examples);
            return loss.item<float>();
        }
        var tokenMean = new TrainingBatch(model, Tokenizer);
        var exampleMean = new TrainingBatch(model, Tokenizer, lossPerExample: true);
        float a = Loss(tokenMean, shortAnswer), b = Loss(tokenMean, longAnswer);
        // alone, an example's loss is its own token mean either way
        Assert.Equal(a, Loss(exampleMean, shortAnswer), 4);
        // together: the mean of the two means, where the token mean leans toward the long answer
        Assert.Equal((a + b) / 2, Loss(exampleMean, shortAnswer, longAnswer), 4);
        int na = tokenMean.Tokenize(shortAnswer.Conversation).IsTarget.Count(t => t), nb = tokenMean.Tokenize(longAnswer.Conversation).IsTarget.Count(t => t);
        Assert.Equal((a * na + b * nb) / (na + nb), Loss(tokenMean, shortAnswer, longAnswer), 4);
        Assert.True(nb > 2 * na);
    }

    /// <summary>The model's gradients of one loss of <paramref name="batch"/> (a read-out <paramref name="head"/>'s zeroed first too).</summary>
    private static Dictionary<string, torch.Tensor> Gradients(XGenMMModel model, torch.nn.Module head, TrainingBatch batch, IReadOnlyList<TrainingExample> examples,
        Dictionary<string, (double Sum, int Tokens)>? byKind = null)
    {
        model.zero_grad();
        head.zero_grad();
        using (var loss = batch.Loss(examples, byKind)) loss.backward();
        return model.named_parameters().Where(p => p.parameter.grad is not null).ToDictionary(p => p.name, p => p.parameter.grad!.clone());
    }

    [Fact]
    public void The_token_origin_read_out_trains_the_decoder_layers_below_what_it_reads_and_no_others()
    {
        torch.manual_seed(6);
        var config = TinyConfig() with { Text = TinyConfig().Text with { NumHiddenLayers = 4 } };
        using var model = new XGenMMModel(config);
        ModelInitialization.InitializeRandom(model, 6);
        using var origins = new TokenOriginHead(config.Text.HiddenSize);
        var red = ColorBatch(0, 1)[0].Images[0];
        var blue = ColorBatch(1, 1)[0].Images[0];
        TrainingExample[] examples =
        [
            new([red, blue], [new ChatMessage("user", "First image: <image>\nSecond image: <image>\nWhich image is red?"), new ChatMessage("assistant", "the first image")]),
            new([blue], [new ChatMessage("user", "<image>\nWhat color is this image?"), new ChatMessage("assistant", "blue")]),
        ];
        var plain = Gradients(model, origins, new TrainingBatch(model, Tokenizer), examples);
        var byKind = new Dictionary<string, (double Sum, int Tokens)>();
        var withOrigins = Gradients(model, origins, new TrainingBatch(model, Tokenizer, origins: origins, originWeight: 1), examples, byKind);
        // It reads the inputs of layers 1 and 2: layers 0 and 1 learn from it, layers 2 and 3 and the head only from answers.
        foreach (var (name, g) in plain)
        {
            bool below = name.Contains(".layers.0.", StringComparison.Ordinal) || name.Contains(".layers.1.", StringComparison.Ordinal);
            bool above = name.Contains(".layers.2.", StringComparison.Ordinal) || name.Contains(".layers.3.", StringComparison.Ordinal) || name.Contains("lm_head", StringComparison.Ordinal);
            if (below && name.Contains("o_proj", StringComparison.Ordinal)) Assert.False(torch.allclose(g, withOrigins[name], rtol: 1e-3, atol: 1e-7), name);
            if (above) Assert.True(torch.allclose(g, withOrigins[name], rtol: 1e-4, atol: 1e-7), name);
        }
        Assert.All(origins.parameters(), p => Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0));
        // "which image" only where there are two; "global view or crop" on every vision token (3 views of 4 tokens each here)
        Assert.Equal(2 * 3 * config.Resampler.NumVisTokens, byKind["origin_image_1"].Tokens);
        Assert.Equal(3 * 3 * config.Resampler.NumVisTokens, byKind["origin_view_2"].Tokens);
    }

    [Fact]
    public void The_mention_read_out_finds_every_named_shape_in_the_tokens_and_trains_the_layers_below_it()
    {
        torch.manual_seed(7);
        var config = TinyConfig() with { Text = TinyConfig().Text with { NumHiddenLayers = 4 } };
        using var model = new XGenMMModel(config);
        ModelInitialization.InitializeRandom(model, 7);
        using var mentions = new MentionHead(config.Text.HiddenSize);
        var dataset = new VqaDataset(15);
        var samples = dataset.Take(24).ToList();
        var examples = NanoRecipe.ToExamples(samples, mentions: true);
        var byKind = new Dictionary<string, (double Sum, int Tokens)>();
        var batch = new TrainingBatch(model, Tokenizer, mentions: mentions, mentionWeight: 1);
        using (var loss = batch.Loss(examples, byKind)) loss.backward();
        int named = samples.Sum(s => NanoRecipe.Mentions(s).Count);
        Assert.True(named > 20);
        Assert.Equal(named, byKind["mention_column_2"].Tokens);
        Assert.Equal(named, byKind["mention_kind_3"].Tokens);
        Assert.Equal(samples.Where(s => s.Images.Count > 1).Sum(s => NanoRecipe.Mentions(s).Count), byKind.GetValueOrDefault("mention_image_2").Tokens);
        Assert.All(mentions.parameters(), p => Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0));
        // a mention that is not in its example's text is an error, not a silent skip
        var wrong = examples[0] with { Mentions = [new Mention("purple hexagon", 0, 0, 0, 0, 0)] };
        Assert.Throws<ArgumentException>(() => batch.Loss([wrong]).Dispose());
    }

    [Fact]
    public void The_answer_carry_read_out_reads_each_answer_position_for_its_turns_mentions_and_trains_only_the_layers_below_the_last()
    {
        torch.manual_seed(8);
        var config = TinyConfig() with { Text = TinyConfig().Text with { NumHiddenLayers = 4 } };
        using var model = new XGenMMModel(config);
        ModelInitialization.InitializeRandom(model, 8);
        using var carry = new AnswerCarryHead(config.Text.HiddenSize);
        var samples = new VqaDataset(16).Take(40).Where(s => s.QuestionType != "multi_turn").ToList();
        var examples = NanoRecipe.ToExamples(samples, mentions: true);
        var plain = Gradients(model, carry, new TrainingBatch(model, Tokenizer), examples);
        var byKind = new Dictionary<string, (double Sum, int Tokens)>();
        var withCarry = Gradients(model, carry, new TrainingBatch(model, Tokenizer, carry: carry, carryWeight: 1), examples, byKind);
        // One question a conversation here: slot 0 at every answer position of those that name a shape, slot 1 of those that name two.
        int AnswerPositions(VqaSample s) => new TrainingBatch(model, Tokenizer).Tokenize(s.Conversation).IsTarget.Count(t => t);
        int one = samples.Where(s => NanoRecipe.Mentions(s).Count >= 1).Sum(AnswerPositions), two = samples.Where(s => NanoRecipe.Mentions(s).Count >= 2).Sum(AnswerPositions);
        Assert.True(two > 0 && one > two);
        Assert.Equal(one, byKind["carry_kind_0"].Tokens);
        Assert.Equal(two, byKind["carry_column_1"].Tokens);
        Assert.Equal(samples.Where(s => s.Images.Count > 1 && NanoRecipe.Mentions(s).Count >= 1).Sum(AnswerPositions), byKind.GetValueOrDefault("carry_image_0").Tokens);
        // It reads the input of the last layer: the layers below learn from it, the last and the head only from answers.
        foreach (var (name, g) in plain)
        {
            bool last = name.Contains(".layers.3.", StringComparison.Ordinal) || name.Contains("lm_head", StringComparison.Ordinal);
            if (last) Assert.True(torch.allclose(g, withCarry[name], rtol: 1e-4, atol: 1e-7), name);
            else if (name.Contains(".layers.2.", StringComparison.Ordinal) && name.Contains("o_proj", StringComparison.Ordinal))
                Assert.False(torch.allclose(g, withCarry[name], rtol: 1e-3, atol: 1e-7), name);
        }
        Assert.All(carry.parameters(), p => Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0));
    }

    [Fact]
    public void A_run_stopped_part_way_and_resumed_ends_where_an_uninterrupted_run_ends_and_a_restart_takes_over_its_state()
    {
        string work = Directory.CreateTempSubdirectory("xgenmm-train-").FullName, restarted = Directory.CreateTempSubdirectory("xgenmm-train-").FullName,
            copy = Directory.CreateTempSubdirectory("xgenmm-train-").FullName;
        try
        {
            var options = new TrainingOptions { Steps = 6, BatchSize = 2, LearningRate = 3e-3, WarmupSteps = 2, CheckpointEvery = 0 };
            using var straight = FreshModel(3);
            new VqaTrainer(straight, Tokenizer, options).Train(step => ColorBatch(step, 2));
            using var stopped = FreshModel(3);
            new VqaTrainer(stopped, Tokenizer, options with { StopAfter = 4 }).Train(step => ColorBatch(step, 2), work);
            Assert.Contains("\"Step\":4", File.ReadAllText(Path.Combine(work, "trainer_state.json")), StringComparison.Ordinal);
            using var resumed = FreshModel(99);
            new VqaTrainer(resumed, Tokenizer, options).Train(step => ColorBatch(step, 2), work);
            AssertSameWeights(straight, resumed);

            // A restart from that run's directory is that directory with its step set back to 0: weights, moments, heads.
            var next = options with { Steps = 3, RestartFrom = work };
            using var viaRestart = FreshModel(98);
            new VqaTrainer(viaRestart, Tokenizer, next).Train(step => ColorBatch(step + 50, 2), restarted);
            foreach (var f in Directory.GetFiles(work)) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
            File.WriteAllText(Path.Combine(copy, "trainer_state.json"), "{\"Step\":0,\"Steps\":3,\"Seed\":1234}");
            using var viaCopy = FreshModel(97);
            new VqaTrainer(viaCopy, Tokenizer, next with { RestartFrom = null }).Train(step => ColorBatch(step + 50, 2), copy);
            AssertSameWeights(viaCopy, viaRestart);
            Assert.Throws<DirectoryNotFoundException>(() => new VqaTrainer(viaCopy, Tokenizer, next with { RestartFrom = MissingRun() }).Train(step => ColorBatch(step, 2), null));
        }
        finally
        {
            foreach (var d in new[] { work, restarted, copy }) Directory.Delete(d, recursive: true);
        }
        static string MissingRun() => Path.Combine(Path.GetTempPath(), "xgenmm-no-such-run-" + Guid.NewGuid().ToString("N"));
    }

    private static void AssertSameWeights(XGenMMModel expected, XGenMMModel actual)
    {
        var a = CheckpointLoader.ExpectedTensors(expected);
        var b = CheckpointLoader.ExpectedTensors(actual);
        foreach (var (name, (p, _)) in a)
            Assert.True(torch.allclose(p, b[name].Parameter, rtol: 1e-4, atol: 1e-6), name);
    }

    [Fact]
    public void A_resumed_run_ends_where_an_uninterrupted_run_ends()
    {
        string work = Directory.CreateTempSubdirectory("xgenmm-train-").FullName;
        try
        {
            var options = new TrainingOptions { Steps = 6, BatchSize = 2, LearningRate = 3e-3, WarmupSteps = 2, CheckpointEvery = 3 };
            using var straight = FreshModel(3);
            new VqaTrainer(straight, Tokenizer, options).Train(step => ColorBatch(step, 2));

            using var first = FreshModel(3);
            new VqaTrainer(first, Tokenizer, options with { Steps = 3 }).Train(step => ColorBatch(step, 2), work);
            using var resumed = FreshModel(99); // different start: everything must come from the checkpoint
            new VqaTrainer(resumed, Tokenizer, options).Train(step => ColorBatch(step, 2), work);

            var a = CheckpointLoader.ExpectedTensors(straight);
            var b = CheckpointLoader.ExpectedTensors(resumed);
            foreach (var (name, (p, _)) in a)
                Assert.True(torch.allclose(p, b[name].Parameter, rtol: 1e-4, atol: 1e-6), name);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }
}

public sealed class PatchLabelTests
{
    [Fact]
    public void Each_patch_of_each_view_is_labelled_with_the_shape_it_shows_where_the_preprocessing_takes_it_from()
    {
        // 384x384 goes to the 384x768 grid: the picture fills the middle of the two crops, black above and below.
        var star = new SceneShape(ShapeKind.Star, ShapeColor.All[0], 192, 192, 150);
        var scene = new Scene(384, 384, 128, true, 7, [star]);
        var picture = new AnyResPreprocessor(new PreprocessorConfig()).Process(SceneRenderer.Render(scene));
        var (kinds, colors) = PatchLabels.Read(SceneRenderer.RenderLabels(scene), picture, patchSize: 32);
        Assert.Equal(3, picture.Views);
        Assert.Equal(3 * 144, kinds.Length);
        long starClass = (long)ShapeKind.Star + 1;
        // global view: the centre patch shows the red star (colour class 1 = ShapeColor.All[0]), the corner nothing
        Assert.Equal(starClass, kinds[6 * 12 + 6]);
        Assert.Equal(1, colors[6 * 12 + 6]);
        Assert.Equal(0, kinds[0]);
        Assert.Equal(0, colors[0]);
        // first crop: its top half is padding, its last row shows the upper middle of the star; second crop: its first
        // row shows the star's centre, its bottom half is padding
        Assert.All(Enumerable.Range(144, 72), p => Assert.Equal(0, kinds[p]));
        Assert.Equal(starClass, kinds[144 + 11 * 12 + 6]);
        Assert.Equal(starClass, kinds[288 + 0 * 12 + 6]);
        Assert.All(Enumerable.Range(288 + 72, 72), p => Assert.Equal(0, kinds[p]));
        Assert.All(kinds, k => Assert.Contains(k, new long[] { 0, starClass }));
        Assert.All(Enumerable.Range(0, kinds.Length), p => Assert.Equal(kinds[p] == 0 ? 0 : 1, colors[p]));
    }

    [Fact]
    public void Group_targets_follow_the_perceiver_groups_and_the_global_view_gives_each_kind_its_third()
    {
        // 1152x384 goes to the 3x1 grid: perceiver groups 1..3 are bands of four token rows across all three crops.
        var circle = new SceneShape(ShapeKind.Circle, ShapeColor.All[0], 192, 192, 100);     // red, left
        var square = new SceneShape(ShapeKind.Square, ShapeColor.All[2], 576, 80, 60);       // blue, middle, high
        var triangle = new SceneShape(ShapeKind.Triangle, ShapeColor.All[1], 960, 300, 60);  // green, right, low
        var scene = new Scene(1152, 384, 128, false, 0, [circle, square, triangle]);
        var picture = new AnyResPreprocessor(new PreprocessorConfig()).Process(SceneRenderer.Render(scene));
        Assert.Equal((3, 1), (picture.GridCols, picture.GridRows));
        var (kinds, colors) = PatchLabels.Read(SceneRenderer.RenderLabels(scene), picture, patchSize: 32);
        var layout = AnyResLayout.Create(picture.GridCols, picture.GridRows, picture.OriginalSize, 12);
        var targets = PatchLabels.Groups(kinds, colors, layout);
        int k = PatchLabelHead.Kinds, c = PatchLabelHead.Colors;
        Assert.Equal(4 * k, targets.ColorOfKind.Length);
        Assert.Equal(4 * c, targets.KindOfColor.Length);
        long Color(int group, ShapeKind kind) => targets.ColorOfKind[group * k + (int)kind];
        long KindOf(int group, int color) => targets.KindOfColor[group * c + color];
        // global view: all three, each with its colour; the star is not there
        Assert.Equal([1, 3, 2, 0], Enumerable.Range(0, 4).Select(i => Color(0, (ShapeKind)i)));
        Assert.Equal((long)ShapeKind.Square + 1, KindOf(0, 2));
        Assert.Equal(0, KindOf(0, 5));
        // top band (token rows 0-3): the high square and the top of the circle; bottom band (8-11): the low triangle and
        // the bottom of the circle. A crop-by-crop reading would have put the circle alone in group 1.
        Assert.Equal([1, 3, 0, 0], Enumerable.Range(0, 4).Select(i => Color(1, (ShapeKind)i)));
        Assert.Equal([1, 0, 2, 0], Enumerable.Range(0, 4).Select(i => Color(3, (ShapeKind)i)));
        // thirds of the global view: circle left middle, square centre top, triangle right bottom
        Assert.Equal([0, 1, 2, PatchLabels.NoTarget], targets.Column);
        Assert.Equal([1, 0, 2, PatchLabels.NoTarget], targets.Row);
    }

    [Fact]
    public void The_patch_label_loss_trains_the_vision_tower_and_is_reported()
    {
        torch.manual_seed(5);
        using var model = new XGenMMModel(TrainerTests.TinyConfig());
        ModelInitialization.InitializeRandom(model, 5, fanIn: true);
        ModelInitialization.InitializeVisionPositions(model);
        var samples = new VqaDataset(3).Take(4).ToList();
        var examples = NanoRecipe.ToExamples(samples, labels: true);
        Assert.All(examples, e => Assert.Equal(e.Images.Count, e.LabelImages!.Count));
        var options = new TrainingOptions { Steps = 30, BatchSize = 4, LearningRate = 1e-2, WarmupSteps = 3, CheckpointEvery = 0, PatchLabelWeight = 1, ReportEvery = 10 };
        var reports = new List<IReadOnlyDictionary<string, double>>();
        new VqaTrainer(model, Tokenizer, options).Train(_ => examples, progress: p => { if (p.Reported) reports.Add(p.LossByKind); });
        Assert.Equal(3, reports.Count);

        // Measured at this seed: kind and colour of patches fall 10x or more in 30 steps, the group heads about 40%; the
        // place of a shape patch is one of 144 classes seen on few patches and falls slowest (4.72 -> 3.86).
        foreach (var (part, factor) in new[] { ("patch_kind_background", 0.5), ("patch_color_shape", 0.5), ("group_color", 0.8), ("group_kind", 0.8), ("patch_place", 0.9) })
            Assert.True(reports[2][part] < reports[0][part] * factor, $"{part}: {reports[0][part]:F3} -> {reports[2][part]:F3}");
        Assert.Contains("global_place", reports[2].Keys);
        // the head is training-only: the model's tensors are the checkpoint's, nothing more
        Assert.DoesNotContain(model.named_parameters(), n => n.name.Contains("PatchLabel", StringComparison.OrdinalIgnoreCase));
    }

    private static readonly XGenMMTokenizer Tokenizer = XGenMMTokenizer.FromDirectory(Path.Combine(AppContext.BaseDirectory, "tokenizer"));
}
