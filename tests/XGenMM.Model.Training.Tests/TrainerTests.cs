using TorchSharp;
using XGenMM.Model.Checkpoints;
using XGenMM.Model.Configuration;
using XGenMM.Model.Imaging;
using XGenMM.Model.Tokenization;
using XGenMM.Model.Training;

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
        new VqaTrainer(model, Tokenizer, options).Train(step => ColorBatch(step), progress: p => losses.Add(p.Loss));
        Assert.Equal(40, losses.Count);
        double first = losses.Take(5).Average(), last = losses.TakeLast(5).Average();
        Assert.True(last < first * 0.3, $"loss {first:F3} -> {last:F3}");
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
