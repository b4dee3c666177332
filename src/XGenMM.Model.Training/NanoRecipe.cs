using System.Diagnostics;
using XGenMM.Model.Configuration;
using XGenMM.Model.Generation;
using XGenMM.Model.Tokenization;
using XGenMM.Model.Training.Data;

namespace XGenMM.Model.Training;

/// <summary>
/// xgenmm-nano: the real xGen-MM v1.5 architecture (SigLIP tower, perceiver resampler, Phi-3 decoder, anyres, the
/// real tokenizer) at a size that trains on 2 CPU cores. Larger SigLIP patches (32 px: 12x12 tokens per view) keep
/// the vision tower cheap; the 32064-row embedding and head dominate the parameter count.
/// </summary>
public static class NanoRecipe
{
    public const int TrainSeed = 1;
    public const int EvalSeed = 424242;

    public static XGenMMConfig Config { get; } = new()
    {
        Vision = new VisionTowerConfig { HiddenSize = 128, IntermediateSize = 256, NumHiddenLayers = 3, NumAttentionHeads = 4, PatchSize = 32 },
        Resampler = new ResamplerConfig { VisFeatureDim = 128, LangEmbeddingDim = 128, NumVisTokens = 16, Depth = 2, Heads = 4, DimHead = 32, FFMult = 2 },
        Text = new TextConfig { HiddenSize = 128, IntermediateSize = 384, NumHiddenLayers = 4, NumAttentionHeads = 4, NumKeyValueHeads = 4 },
    };

    /// <summary>
    /// The training sample at position <paramref name="slot"/> of step <paramref name="step"/>: only first lessons
    /// (<see cref="VqaDataset.GetEasy"/>) for the first fifth of the run, then fewer and fewer of them down to one in
    /// ten by half of the run, the full mix otherwise. Deterministic in (step, slot), so a resumed run sees the same data.
    /// </summary>
    public static VqaSample CurriculumSample(VqaDataset dataset, int step, int steps, int slot, int batchSize)
    {
        int index = step * batchSize + slot;
        double start = 0.20 * steps, end = 0.50 * steps;
        double easyShare = step < start ? 1.0 : Math.Max(0.1, 1.0 - 0.9 * (step - start) / (end - start));
        double roll = new Random(unchecked(index * 31 + 17)).NextDouble();
        return roll < easyShare ? dataset.GetEasy(index) : dataset.Get(index);
    }

    public static TrainingExample ToExample(VqaSample sample) =>
        new(sample.Images.Select(SceneRenderer.Render).ToList(), sample.Conversation, sample.QuestionType);

    /// <summary>Examples that share scenes share the rendered image object, so <see cref="TrainingBatch"/> encodes it once.</summary>
    /// <param name="labels">Also render each scene's label map (<see cref="SceneRenderer.RenderLabels"/>) for the patch-label loss.</param>
    /// <param name="mentions">Also list the shapes each question names (<see cref="Mentions"/>) for the mention loss.</param>
    public static IReadOnlyList<TrainingExample> ToExamples(IEnumerable<VqaSample> samples, bool labels = false, bool mentions = false)
    {
        var list = samples.ToList();
        var scenes = list.SelectMany(s => s.Images).Distinct(ReferenceEqualityComparer.Instance).Cast<Scene>().ToList();
        var images = scenes.AsParallel().AsOrdered().Select(scene => (Image: SceneRenderer.Render(scene), Labels: labels ? SceneRenderer.RenderLabels(scene) : null)).ToList();
        var rendered = new Dictionary<Scene, (Imaging.RgbImage Image, Imaging.RgbImage? Labels)>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < scenes.Count; i++) rendered[scenes[i]] = images[i];
        return list.Select(sample => new TrainingExample(sample.Images.Select(scene => rendered[scene].Image).ToList(), sample.Conversation, sample.QuestionType,
            labels ? sample.Images.Select(scene => rendered[scene].Labels!).ToList() : null, mentions ? Mentions(sample) : null)).ToList();
    }

    private static readonly System.Text.RegularExpressions.Regex NamedShape = new(
        @"\b(?:the|a) (?:(" + string.Join('|', ShapeColor.All.Select(c => c.Name)) + ") )?(" +
        string.Join('|', Enum.GetNames<ShapeKind>().Select(n => n.ToLowerInvariant())) + @"|object)\b",
        System.Text.RegularExpressions.RegexOptions.CultureInvariant);

    /// <summary>The shapes the user's turns name ("the circle", "the red object", "a red square"), in order of appearance,
    /// each with what its image says about it: the image that has it, its third across and down, colour and kind.</summary>
    public static IReadOnlyList<Mention> Mentions(VqaSample sample)
    {
        var result = new List<Mention>();
        foreach (var message in sample.Conversation.Where(m => m.Role == "user"))
            foreach (System.Text.RegularExpressions.Match match in NamedShape.Matches(message.Content))
            {
                string? color = match.Groups[1].Success ? match.Groups[1].Value : null, noun = match.Groups[2].Value;
                var candidates = sample.Images.SelectMany((scene, image) => scene.Shapes.Select(shape => (Scene: scene, Image: image, Shape: shape)))
                    .Where(c => (color is null || c.Shape.Color.Name == color) && (noun == "object" || c.Shape.Kind.ToString().Equals(noun, StringComparison.OrdinalIgnoreCase)))
                    .ToList();
                if (candidates.Count != 1) continue;   // a question names only shapes that are unique where it asks
                var (sc, im, sh) = candidates[0];
                result.Add(new Mention(match.Value[(match.Value.IndexOf(' ') + 1)..], im, Math.Min(2, (int)(3 * sh.X / sc.Width)), Math.Min(2, (int)(3 * sh.Y / sc.Height)),
                    Array.IndexOf(ShapeColor.All, sh.Color), (int)sh.Kind));
            }
        return result;
    }

    /// <summary>
    /// The data of step <paramref name="step"/> in grouped training: <paramref name="groups"/> scenes with up to
    /// <paramref name="questionsPerScene"/> questions each (<see cref="VqaDataset.GetGroup"/>), plus
    /// <paramref name="singles"/> samples of the ordinary mix (two-image and multi-turn conversations among them).
    /// Deterministic in the step.
    /// </summary>
    /// <param name="pairs">Also this many "which image has ..." questions on two of the step's scenes (both already
    /// encoded for their own questions, so nearly free): the ordinary mix holds about one two-image conversation in
    /// eight, half of one a step.</param>
    /// <param name="focus">Where questions and every pair's relation (<see cref="VqaDataset.GetGroup"/>).</param>
    public static IReadOnlyList<VqaSample> GroupedSamples(VqaDataset dataset, int step, int groups, int questionsPerScene, int singles, int offset = 0,
        int pairs = 0, bool focus = false)
    {
        var grouped = Enumerable.Range(0, groups).Select(g => dataset.GetGroup(offset + step * groups + g, questionsPerScene, focus)).ToList();
        var samples = grouped.SelectMany(g => g).Concat(Enumerable.Range(0, singles).Select(i => dataset.Get(offset + step * singles + i))).ToList();
        var scenes = grouped.Select(g => g[0].Images[0]).ToList();
        var rng = new Random(unchecked((offset + step) * 7_919 + 0x9a1));
        for (int p = 0; p < pairs && scenes.Count >= 2; p++)
        {
            int i = rng.Next(scenes.Count), j = (i + 1 + rng.Next(scenes.Count - 1)) % scenes.Count;
            var candidates = scenes[i].Shapes.Where(t => !scenes[j].Shapes.Any(s => s.Kind == t.Kind && s.Color == t.Color)).ToList();
            if (candidates.Count > 0)
                samples.Add(VqaDataset.WhichImage(scenes[i], scenes[j], candidates[rng.Next(candidates.Count)], first: rng.Next(2) == 0));
        }
        return samples;
    }

    /// <summary>Exact-match accuracy per question type through the normal generation path (greedy).</summary>
    public static IReadOnlyDictionary<string, (int Correct, int Total)> Evaluate(XGenMMPipeline pipeline, int count, int seed,
        Action<string>? log = null, Action<VqaSample, string>? mistake = null)
    {
        var result = new SortedDictionary<string, (int, int)>(StringComparer.Ordinal);
        var dataset = new VqaDataset(seed);
        var clock = Stopwatch.StartNew();
        int done = 0;
        foreach (var sample in dataset.Take(count))
        {
            var images = sample.Images.Select(SceneRenderer.RenderPng).ToList();
            var text = string.Concat(pipeline.Chat(sample.Conversation.Take(sample.Conversation.Count - 1).ToList(), images,
                new GenerationOptions { MaxNewTokens = 24 }).Select(d => d.Text));
            bool ok = VqaSample.Normalize(text) == VqaSample.Normalize(sample.Answer);
            if (!ok) mistake?.Invoke(sample, text);
            var (c, t) = result.TryGetValue(sample.QuestionType, out var v) ? v : (0, 0);
            result[sample.QuestionType] = (c + (ok ? 1 : 0), t + 1);
            if (++done % 50 == 0) log?.Invoke($"evaluated {done}/{count} ({clock.Elapsed.TotalSeconds:F0} s)");
        }
        return result;
    }
}
