using TorchSharp;
using XGenMM.Model.Configuration;
using XGenMM.Model.Kernels;
using XGenMM.Model.Language;
using static TorchSharp.torch;
using Linear = XGenMM.Model.Modules.Linear;

namespace XGenMM.Model.Tests.Language;

/// <summary>
/// <see cref="CpuDecoderStep"/> against <see cref="Phi3Model.Forward"/> (libtorch, full causal pass with the
/// sliding-window bias) on a random decoder whose head size takes the vector paths (d = 32): two sequences in
/// different slots fed in chunks and single decode tokens, mixed in the same steps, past a sliding window of 5, with a
/// float32 and a bfloat16 cache.
/// </summary>
public sealed class CpuDecoderStepTests
{
    private static readonly TextConfig Config = new()
    {
        VocabSize = 100, InitialTokenizerLen = 90, NumAdditionalTokens = 3, HiddenSize = 64, IntermediateSize = 96, NumHiddenLayers = 2,
        NumAttentionHeads = 2, NumKeyValueHeads = 2, SlidingWindow = 5, MaxPositionEmbeddings = 64,
    };

    private static Phi3Model RandomModel(ScalarType dtype)
    {
        torch.manual_seed(11);
        var model = new Phi3Model(Config, torch.CPU, dtype);
        using (torch.no_grad())
            foreach (var (name, p) in model.named_parameters())
            {
                if (name.Contains("norm", StringComparison.Ordinal)) p.uniform_(0.5, 1.5);
                else p.normal_(0, 0.1);
            }
        model.eval();
        return model;
    }

    /// <summary>Final-normed hidden states of one whole sequence through libtorch: [T, D] float32.</summary>
    private static Tensor Reference(Phi3Model model, Tensor embeddings)
    {
        using var noGrad = torch.no_grad();
        long t = embeddings.shape[0];
        var x = embeddings.unsqueeze(0);
        var positions = torch.arange(t, ScalarType.Int64).unsqueeze(0);
        var bias = AttentionBias.Build(torch.ones([1, t], ScalarType.Int64), t, Config.SlidingWindow, x.dtype);
        return model.Forward(x, positions, bias, null)[0].to_type(ScalarType.Float32);
    }

    [Theory]
    [InlineData(ScalarType.Float32, 2e-4)]
    [InlineData(ScalarType.BFloat16, 0.08)]
    public void Chunks_and_decode_tokens_of_two_slots_match_the_whole_sequence_pass(ScalarType dtype, double tolerance)
    {
        Assert.SkipUnless(PackedWeight.IsSupported, "needs AVX2+FMA");
        using var scope = torch.NewDisposeScope();
        using var model = RandomModel(dtype);
        const int LengthA = 13, LengthB = 9;
        var a = torch.randn([LengthA, Config.HiddenSize]).to_type(dtype);
        var b = torch.randn([LengthB, Config.HiddenSize]).to_type(dtype);
        var expectedA = Reference(model, a);
        var expectedB = Reference(model, b);

        foreach (var linear in model.modules().OfType<Linear>().Distinct()) Assert.True(linear.Pack(WeightFormat.F32));
        var step = CpuDecoderStep.TryCreate(model);
        Assert.NotNull(step);
        int heads = Config.NumAttentionHeads, d = Config.HeadDim;
        var keys = Enumerable.Range(0, Config.NumHiddenLayers).Select(_ => torch.zeros([3, heads, 20, d], dtype)).ToList();
        var values = Enumerable.Range(0, Config.NumHiddenLayers).Select(_ => torch.zeros([3, heads, 20, d], dtype)).ToList();

        // A in slot 2, B in slot 0. Steps: A[0..7) | A[7..11) + B[0..4) | B[4..9) + A[11] | A[12] (decode tokens first,
        // as the engine packs them).
        var plan = new List<(char Sequence, int Start, int Count)>[]
        {
            [('A', 0, 7)],
            [('A', 7, 4), ('B', 0, 4)],
            [('A', 11, 1), ('B', 4, 5)],
            [('A', 12, 1)],
        };
        double worst = 0;
        foreach (var stepPlan in plan)
        {
            var tokens = new List<StepToken>();
            var inputs = new List<Tensor>();
            var wanted = new List<Tensor>();
            foreach (var (sequence, start, count) in stepPlan)
            {
                var (slot, source, expected) = sequence == 'A' ? (2, a, expectedA) : (0, b, expectedB);
                for (int i = 0; i < count; i++) tokens.Add(new StepToken(slot, start + i));
                inputs.Add(source.narrow(0, start, count));
                wanted.Add(expected.narrow(0, start, count));
            }
            var sampled = Enumerable.Range(0, tokens.Count).ToArray();
            var output = step!.Forward(torch.cat(inputs, 0), tokens.ToArray(), keys, values, sampled);
            var want = torch.cat(wanted, 0);
            Assert.Equal(want.shape, output.shape);
            double diff = (output - want).abs().max().item<float>();
            worst = Math.Max(worst, diff);
        }
        Assert.True(worst <= tolerance, $"{dtype}: CpuDecoderStep differs from the libtorch pass by {worst}");
        TestContext.Current.SendDiagnosticMessage($"{dtype}: largest difference {worst:G3}");
    }

    [Fact]
    public void An_unpacked_decoder_has_no_cpu_step_and_a_token_outside_the_cache_is_refused()
    {
        Assert.SkipUnless(PackedWeight.IsSupported, "needs AVX2+FMA");
        using var scope = torch.NewDisposeScope();
        using var model = RandomModel(ScalarType.Float32);
        Assert.Null(CpuDecoderStep.TryCreate(model));
        foreach (var linear in model.modules().OfType<Linear>().Distinct()) linear.Pack(WeightFormat.Q8);
        var step = CpuDecoderStep.TryCreate(model)!;
        var keys = Enumerable.Range(0, 2).Select(_ => torch.zeros([1, 2, 4, 32])).ToList();
        var values = Enumerable.Range(0, 2).Select(_ => torch.zeros([1, 2, 4, 32])).ToList();
        Assert.Throws<ArgumentOutOfRangeException>(() => step.Forward(torch.randn([1, 64]), [new StepToken(0, 4)], keys, values, [0]));
        Assert.Throws<ArgumentOutOfRangeException>(() => step.Forward(torch.randn([1, 64]), [new StepToken(1, 0)], keys, values, [0]));
        Assert.Throws<ArgumentException>(() => step.Forward(torch.randn([2, 64]), [new StepToken(0, 0)], keys, values, [0]));
        var output = step.Forward(torch.randn([1, 64]), [new StepToken(0, 3)], keys, values, [0]);
        Assert.False(output.isnan().any().item<bool>());
    }
}
