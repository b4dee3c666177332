using System.Diagnostics;
using System.Text.Json;
using TorchSharp;
using XGenMM.Model.Checkpoints;
using XGenMM.Model.Tokenization;
using static TorchSharp.torch;

namespace XGenMM.Model.Training;

/// <summary>Progress of one optimisation step.</summary>
/// <param name="LossByKind">Mean loss per answer token of each question type over the steps since the previous report
/// with <see cref="Reported"/> set (every <see cref="TrainingOptions.ReportEvery"/> steps).</param>
public readonly record struct TrainingProgress(int Step, int Steps, double Loss, double LearningRate, double GradNorm, double ExamplesPerSecond, TimeSpan Elapsed,
    IReadOnlyDictionary<string, double> LossByKind, bool Reported);

/// <summary>
/// Trains an xGen-MM model end to end (vision tower, resampler, decoder) with AdamW, warm-up + cosine schedule and
/// gradient clipping. Resumable: every <see cref="TrainingOptions.CheckpointEvery"/> steps the weights (HF layout),
/// the optimizer state and the step are written to the work directory, and a new run there continues from them.
/// </summary>
public sealed class VqaTrainer(XGenMMModel model, XGenMMTokenizer tokenizer, TrainingOptions options)
{
    private const string StateFile = "trainer_state.json";
    private const string OptimizerFile = "optimizer.bin";

    /// <param name="batches">The examples of step n (deterministic in n, so a resumed run sees the same data).</param>
    /// <param name="workDirectory">Where resumable checkpoints live; null = no checkpoints.</param>
    /// <returns>The mean loss of the last 20 steps.</returns>
    public double Train(Func<int, IReadOnlyList<TrainingExample>> batches, string? workDirectory = null,
        Action<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        using var head = options.PatchLabelWeight > 0 ? new PatchLabelHead(model.Config.Vision.HiddenSize, model.Config.Resampler.LangEmbeddingDim, model.Config.Vision.PatchesPerSide).to(model.Device) : null;
        using var origins = options.OriginWeight > 0 ? new TokenOriginHead(model.Config.Text.HiddenSize).to(model.Device) : null;
        using var mentions = options.MentionWeight > 0 ? new MentionHead(model.Config.Text.HiddenSize).to(model.Device) : null;
        using var carry = options.CarryWeight > 0 ? new AnswerCarryHead(model.Config.Text.HiddenSize).to(model.Device) : null;
        var batch = new TrainingBatch(model, tokenizer, head, options.PatchLabelWeight, options.LossPerExample, origins, options.OriginWeight,
            mentions, options.MentionWeight, carry, options.CarryWeight);
        // The training-only heads of this run, each with the file it is kept in beside the weights.
        var heads = new (nn.Module? Module, string File)[] { (head, PatchLabelHeadFile), (origins, TokenOriginHeadFile), (mentions, MentionHeadFile), (carry, AnswerCarryHeadFile) }
            .Where(h => h.Module is not null).Select(h => (Module: h.Module!, h.File)).ToArray();
        if (options.HeadsFrom is { } from)
            foreach (var (module, file) in heads)
                if (File.Exists(Path.Combine(from, file))) module.load(Path.Combine(from, file));
        var extra = heads.SelectMany(h => h.Module.parameters()).ToList();
        var parameters = model.parameters().Concat(extra).ToList();
        using var optimizer = CreateOptimizer(model, options.LearningRate, options.VisionLearningRateScale, options.WeightDecay, extra.Count > 0 ? extra : null);
        var scales = new[] { options.VisionLearningRateScale, 1.0, 1.0 };
        int start = workDirectory is null ? 0 : Resume(workDirectory, optimizer, heads);
        if (start == 0 && options.RestartFrom is { } restart) Resume(restart, optimizer, heads, requireState: false);
        int end = Math.Min(options.Steps, options.StopAfter ?? options.Steps);
        model.train();
        var recent = new Queue<double>();
        var byKind = new Dictionary<string, (double Sum, int Tokens)>(StringComparer.Ordinal);
        var clock = Stopwatch.StartNew();
        int examples = 0;
        for (int step = start; step < end; step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            double lr = options.LearningRateAt(step);
            scales[0] = step < options.VisionFreezeSteps ? 0 : options.VisionLearningRateScale;
            foreach (var (group, scale) in optimizer.ParamGroups.Zip(scales)) group.LearningRate = lr * scale;
            var data = batches(step);
            double loss, norm;
            using (var scope = torch.NewDisposeScope())
            {
                optimizer.zero_grad();
                var l = batch.Loss(data, byKind);
                l.backward();
                norm = nn.utils.clip_grad_norm_(parameters, options.ClipGradNorm);
                optimizer.step();
                loss = l.item<float>();
            }
            examples += data.Count;
            recent.Enqueue(loss);
            if (recent.Count > 20) recent.Dequeue();
            bool report = (step + 1) % Math.Max(1, options.ReportEvery) == 0 || step + 1 == end;
            var kinds = report ? byKind.OrderBy(k => k.Key, StringComparer.Ordinal).ToDictionary(k => k.Key, k => k.Value.Sum / k.Value.Tokens, StringComparer.Ordinal)
                : (IReadOnlyDictionary<string, double>)new Dictionary<string, double>();
            if (report) byKind.Clear();
            progress?.Invoke(new TrainingProgress(step + 1, options.Steps, loss, lr, norm, examples / clock.Elapsed.TotalSeconds, clock.Elapsed, kinds, report));
            bool last = step + 1 == end;
            if (workDirectory is not null && (last || (options.CheckpointEvery > 0 && (step + 1) % options.CheckpointEvery == 0)))
                Save(workDirectory, optimizer, heads, step + 1);
        }
        model.eval();
        return recent.Count == 0 ? double.NaN : recent.Average();
    }

    /// <summary>AdamW with parameter groups: [0] vision tower and resampler at <paramref name="visionScale"/> times
    /// the rate, [1] the decoder, [2] training-only heads (<paramref name="extra"/>) when given.</summary>
    public static TorchSharp.Modules.AdamW CreateOptimizer(XGenMMModel model, double learningRate, double visionScale, double weightDecay,
        IEnumerable<TorchSharp.Modules.Parameter>? extra = null)
    {
        var named = model.named_parameters().ToList();
        static bool IsDecoder(string name) => name.Contains("lang_model", StringComparison.Ordinal);
        var groups = new List<TorchSharp.Modules.AdamW.ParamGroup>
        {
            new(named.Where(n => !IsDecoder(n.name)).Select(n => n.parameter), lr: learningRate * visionScale),
            new(named.Where(n => IsDecoder(n.name)).Select(n => n.parameter), lr: learningRate),
        };
        if (extra is not null) groups.Add(new(extra, lr: learningRate));
        return torch.optim.AdamW(groups, learningRate, weight_decay: weightDecay);
    }

    private const string PatchLabelHeadFile = "patch_label_head.bin";

    private const string TokenOriginHeadFile = "token_origin_head.bin", MentionHeadFile = "mention_head.bin",
        AnswerCarryHeadFile = "answer_carry_head.bin";

    private void Save(string directory, TorchSharp.Modules.AdamW optimizer, (nn.Module Module, string File)[] heads, int step)
    {
        Directory.CreateDirectory(directory);
        SafeTensorsWriter.SaveModel(model, directory, ScalarType.Float32);
        File.WriteAllText(Path.Combine(directory, "config.json"), model.Config.ToJson());
        optimizer.save_state_dict(Path.Combine(directory, OptimizerFile));
        foreach (var (module, file) in heads) module.save(Path.Combine(directory, file));
        File.WriteAllText(Path.Combine(directory, StateFile), JsonSerializer.Serialize(new TrainerState(step, options.Steps, options.Seed)));
    }

    private int Resume(string directory, TorchSharp.Modules.AdamW optimizer, (nn.Module Module, string File)[] heads,
        bool requireState = true)
    {
        string statePath = Path.Combine(directory, StateFile);
        if (!File.Exists(statePath))
            return requireState ? 0 : throw new DirectoryNotFoundException($"'{directory}' holds no training run to restart from.");
        var state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(statePath))
            ?? throw new InvalidDataException($"'{statePath}' is empty.");
        CheckpointLoader.Load(model, directory);
        optimizer.load_state_dict(Path.Combine(directory, OptimizerFile));
        foreach (var (module, file) in heads) module.load(Path.Combine(directory, file));
        return state.Step;
    }

    private sealed record TrainerState(int Step, int Steps, long Seed);
}
