using XGenMM.Model.Training;

namespace XGenMM.Model.Training.Tests;

/// <summary>The committed xgenmm-nano checkpoint, through the normal loading and generation path.</summary>
public sealed class NanoModelTests
{
    [Fact]
    public void The_committed_checkpoint_is_found_as_the_default_model_and_stays_under_25_MB()
    {
        string dir = DefaultModel.Resolve(null);
        Assert.Equal(DefaultModel.Name, Path.GetFileName(dir));
        long bytes = Directory.GetFiles(dir).Sum(f => new FileInfo(f).Length);
        Assert.InRange(bytes, 1, 25_000_000);
        Assert.True(File.Exists(Path.Combine(dir, "NOTICE.md")), "the tokenizer files need their NOTICE");
    }

    /// <summary>Seed of the fixed questions below: neither the training seed nor the evaluation seed.</summary>
    private const int FixedSeed = 2026;
    private const int FixedCount = 100;

    /// <summary>
    /// The committed checkpoint, loaded and run the way the server does (greedy), on a fixed set of questions it never
    /// saw. The floor sits a few questions under what the checkpoint scored when it was committed
    /// (models/xgenmm-nano/README.md), so a broken loader, tokenizer, anyres or splicing path, or a worse checkpoint,
    /// fails it. It asks for the set's measured score, not for every answer: the checkpoint does not meet issue 4's 90%
    /// yet, and a list of only the questions it happens to get right would prove nothing.
    /// </summary>
    [Fact(Timeout = 300_000)]
    public void The_committed_checkpoint_answers_fixed_held_out_questions_as_well_as_when_it_was_committed()
    {
        using var pipeline = XGenMMPipeline.Load(DefaultModel.Resolve(null));
        var result = NanoRecipe.Evaluate(pipeline, FixedCount, FixedSeed);
        int correct = result.Values.Sum(v => v.Correct);
        string table = string.Join(", ", result.Select(r => $"{r.Key} {r.Value.Correct}/{r.Value.Total}"));
        Assert.True(correct >= CommittedFloor, $"{correct}/{FixedCount} correct (floor {CommittedFloor}): {table}");
    }

    /// <summary>
    /// Issue 19: the decoder's linears and head on the CPU kernels in int8 (and bf16) answer the same fixed held-out
    /// questions within one point of float32 through libtorch (the same checkpoint, greedy).
    /// </summary>
    [Theory(Timeout = 600_000)]
    [InlineData("int8")] // bf16 measured the same (99/100) by `xgenmm-nano eval --weights bf16`; one format keeps CI short
    public void Quantized_decoder_weights_lose_at_most_one_point_of_held_out_accuracy(string format)
    {
        Assert.SkipUnless(XGenMM.Model.Kernels.PackedWeight.IsSupported, "the CPU kernels need AVX2+FMA");
        int Correct(string weights)
        {
            using var pipeline = XGenMMPipeline.Load(DefaultModel.Resolve(null));
            if (XGenMM.Model.Kernels.WeightFormats.Parse(weights) is { } f) Assert.True(pipeline.Model.PackDecoder(f).Layers > 0);
            return NanoRecipe.Evaluate(pipeline, FixedCount, FixedSeed).Values.Sum(v => v.Correct);
        }
        int reference = Correct("torch"), quantized = Correct(format);
        TestContext.Current.TestOutputHelper?.WriteLine($"held-out {FixedCount}: torch f32 {reference}, {format} {quantized}");
        Assert.True(quantized * 100.0 / FixedCount >= reference * 100.0 / FixedCount - 1.0,
            $"{format}: {quantized}/{FixedCount} vs {reference}/{FixedCount} with float32 weights");
    }

    /// <summary>Correct answers out of <see cref="FixedCount"/> that the committed checkpoint must keep.</summary>
    private const int CommittedFloor = 95;   // scored 99 of 100 when committed (2026-12-03)
}
