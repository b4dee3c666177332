using TorchSharp;
using XGenMM.Model.Kernels;
using static TorchSharp.torch;

namespace XGenMM.Model.Tests.Kernels;

/// <summary>The CPU mat-mul kernels against torch.matmul: odd sizes, every tile height, partial column blocks,
/// bias, the three weight formats, and several callers at once.</summary>
public sealed class PackedWeightTests
{
    public static TheoryData<int, int, int> Shapes() => new()
    {
        { 1, 1, 1 }, { 7, 5, 3 }, { 24, 16, 1 }, { 33, 17, 2 }, { 64, 100, 5 }, { 100, 33, 6 }, { 512, 48, 7 },
        { 24, 32064, 1 }, { 31, 1, 13 }, { 96, 40, 16 }, { 65, 70, 17 }, { 128, 64, 40 },
    };

    private static Tensor Weights(int inF, int outF, int seed)
    {
        torch.manual_seed(seed);
        return torch.randn([inF, outF]).mul_(0.05);
    }

    private static double MaxDiff(Tensor a, Tensor b)
    {
        using var d = (a - b).abs_();
        return d.numel() == 0 ? 0 : d.max().item<float>();
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void F32_equals_torch_matmul(int inF, int outF, int batch)
    {
        Assert.SkipUnless(PackedWeight.IsSupported, "needs AVX2+FMA");
        using var scope = torch.NewDisposeScope();
        var w = Weights(inF, outF, inF * 31 + outF);
        var b = torch.randn([outF]);
        var x = torch.randn([batch, inF]);
        using var packed = PackedWeight.FromTensor(w, b, WeightFormat.F32);
        var expected = torch.matmul(x, w).add_(b);
        var actual = packed.Forward(x);
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(MaxDiff(expected, actual) <= 1e-5 * Math.Max(1, Math.Sqrt(inF)), $"max diff {MaxDiff(expected, actual)}");
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void BF16_equals_torch_matmul_over_the_rounded_weights(int inF, int outF, int batch)
    {
        Assert.SkipUnless(PackedWeight.IsSupported, "needs AVX2+FMA");
        using var scope = torch.NewDisposeScope();
        var w = Weights(inF, outF, inF * 7 + outF);
        var x = torch.randn([batch, inF]);
        using var packed = PackedWeight.FromTensor(w, null, WeightFormat.BF16);
        // torch's own float32 -> bfloat16 conversion rounds to nearest even, as the packer does.
        var rounded = w.to_type(ScalarType.BFloat16).to_type(ScalarType.Float32);
        var expected = torch.matmul(x, rounded);
        Assert.True(MaxDiff(expected, packed.Forward(x)) <= 1e-5 * Math.Max(1, Math.Sqrt(inF)));
        // Dequantized reads the interleaved block layout back to (k, n).
        Assert.Equal(0, MaxDiff(rounded, Dequantize(packed)));
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Q8_equals_torch_matmul_over_the_dequantized_weights_and_int16_rows(int inF, int outF, int batch)
    {
        Assert.SkipUnless(PackedWeight.IsSupported, "needs AVX2+FMA");
        using var scope = torch.NewDisposeScope();
        var w = Weights(inF, outF, inF * 13 + outF);
        var b = torch.randn([outF]);
        var x = torch.randn([batch, inF]);
        using var packed = PackedWeight.FromTensor(w, b, WeightFormat.Q8);
        var expected = torch.matmul(RoundRowsToInt16(x), Dequantize(packed)).add_(b);
        var actual = packed.Forward(x);
        Assert.True(MaxDiff(expected, actual) <= 1e-5 * Math.Max(1, Math.Sqrt(inF)), $"max diff {MaxDiff(expected, actual)}");
        // Against the float activations, only the activations' rounding adds: at most max|x| / 65534 per value.
        var unrounded = torch.matmul(x, Dequantize(packed)).add_(b);
        double bound = x.abs().max().item<float>() / 65534.0 * Dequantize(packed).abs().sum(0L).max().item<float>() + 1e-5 * Math.Sqrt(inF);
        Assert.True(MaxDiff(unrounded, actual) <= bound, $"max diff {MaxDiff(unrounded, actual)} > {bound}");
    }

    [Fact]
    public void Q8_long_groups_do_not_overflow_the_int32_sums()
    {
        Assert.SkipUnless(PackedWeight.IsSupported, "needs AVX2+FMA");
        using var scope = torch.NewDisposeScope();
        // Every product at its largest (127 x 32767), one group of 4096: 2048 pairs, 8x what one int32 sum may take.
        const int inF = 4096;
        var w = torch.ones([inF, 16]);
        w[.., 1] = torch.tensor(-1f);
        using var packed = PackedWeight.FromTensor(w, null, WeightFormat.Q8, groupSize: inF);
        var x = torch.full([2, inF], 3f);
        x[1] = torch.tensor(-3f);
        var y = packed.Forward(x);
        Assert.Equal(3f * inF, y[0, 0].item<float>(), 1f);
        Assert.Equal(-3f * inF, y[0, 1].item<float>(), 1f);
        Assert.Equal(-3f * inF, y[1, 0].item<float>(), 1f);
        Assert.Equal(3f * inF, y[1, 1].item<float>(), 1f);
    }

    [Fact]
    public void Q8_an_odd_group_is_refused_and_a_nan_row_stays_nan()
    {
        Assert.SkipUnless(PackedWeight.IsSupported, "needs AVX2+FMA");
        using var scope = torch.NewDisposeScope();
        var w = Weights(64, 16, 2);
        Assert.Throws<ArgumentException>(() => PackedWeight.FromTensor(w, null, WeightFormat.Q8, groupSize: 33));
        using var packed = PackedWeight.FromTensor(w, null, WeightFormat.Q8);
        var x = torch.randn([2, 64]);
        x[0, 40] = torch.tensor(float.NaN);
        var y = packed.Forward(x);
        Assert.True(y[0].isnan().all().item<bool>());
        Assert.False(y[1].isnan().any().item<bool>());
    }

    /// <summary>What the int8 kernel multiplies with: each row rounded to int16 steps of max|row| / 32767.</summary>
    private static Tensor RoundRowsToInt16(Tensor x)
    {
        var step = x.abs().amax([1], keepdim: true).div_(32767f);
        return x.div(step).round_().mul_(step).nan_to_num_(0f);
    }

    [Theory]
    [InlineData(32)]
    [InlineData(512)]
    public void Q8_rounding_error_is_at_most_half_a_step_of_its_group(int groupSize)
    {
        Assert.SkipUnless(PackedWeight.IsSupported, "needs AVX2+FMA");
        using var scope = torch.NewDisposeScope();
        const int inF = 512, outF = 48;
        var w = Weights(inF, outF, 5);
        w[3, 7] = torch.tensor(1.5f); // an outlier: only its own group's step grows
        using var packed = PackedWeight.FromTensor(w, null, WeightFormat.Q8, groupSize);
        Assert.Equal(groupSize, packed.GroupSize);
        var values = w.data<float>().ToArray();
        for (int n = 0; n < outF; n++)
            for (int g = 0; g < inF; g += groupSize)
            {
                float max = 0;
                for (int k = g; k < g + groupSize; k++) max = Math.Max(max, Math.Abs(values[k * outF + n]));
                float halfStep = max / 127f / 2f;
                for (int k = g; k < g + groupSize; k++)
                {
                    float error = Math.Abs(packed.Dequantized(k, n) - values[k * outF + n]);
                    Assert.True(error <= halfStep * 1.0001f + 1e-12f, $"w[{k},{n}]: error {error} > half step {halfStep}");
                }
            }
        // The group's largest value is exact up to float rounding: the step is chosen from it.
        Assert.Equal(1.5f, packed.Dequantized(3, 7), 5);
    }

    [Fact]
    public void A_zero_group_quantizes_to_zero_without_dividing_by_zero()
    {
        Assert.SkipUnless(PackedWeight.IsSupported, "needs AVX2+FMA");
        using var w = torch.zeros([64, 16]);
        using var packed = PackedWeight.FromTensor(w, null, WeightFormat.Q8);
        using var x = torch.randn([3, 64]);
        using var y = packed.Forward(x);
        Assert.Equal(0f, y.abs().max().item<float>());
    }

    [Fact]
    public void Leading_dimensions_and_half_precision_inputs_keep_their_shape_and_dtype()
    {
        Assert.SkipUnless(PackedWeight.IsSupported, "needs AVX2+FMA");
        using var scope = torch.NewDisposeScope();
        var w = Weights(40, 24, 3);
        using var packed = PackedWeight.FromTensor(w, null, WeightFormat.F32);
        var x = torch.randn([2, 3, 40]);
        var y = packed.Forward(x);
        Assert.Equal([2L, 3, 24], y.shape);
        Assert.True(MaxDiff(torch.matmul(x, w), y) < 1e-5);
        var xb = x.to_type(ScalarType.BFloat16);
        var yb = packed.Forward(xb);
        Assert.Equal(ScalarType.BFloat16, yb.dtype);
        // A non-contiguous view is copied, not misread.
        var strided = torch.randn([40, 5]).t();
        Assert.True(MaxDiff(torch.matmul(strided, w), packed.Forward(strided)) < 1e-5);
    }

    [Fact]
    public void A_wrong_width_or_a_gradient_request_is_refused()
    {
        Assert.SkipUnless(PackedWeight.IsSupported, "needs AVX2+FMA");
        using var scope = torch.NewDisposeScope();
        using var packed = PackedWeight.FromTensor(Weights(16, 8, 1), null, WeightFormat.F32);
        Assert.Throws<ArgumentException>(() => packed.Forward(torch.randn([2, 15])));
        var needsGrad = torch.randn([2, 16]).requires_grad_(true);
        Assert.Throws<InvalidOperationException>(() => packed.Forward(needsGrad));
    }

    [Fact]
    public void Concurrent_callers_each_get_their_own_correct_product()
    {
        Assert.SkipUnless(PackedWeight.IsSupported, "needs AVX2+FMA");
        using var w = Weights(256, 300, 9);
        using var packed = PackedWeight.FromTensor(w, null, WeightFormat.F32);
        // int8 products also round their rows into a per-thread buffer: callers must not share it.
        using var q8 = PackedWeight.FromTensor(w, null, WeightFormat.Q8);
        using var dequantized = Dequantize(q8);
        var failures = 0;
        Parallel.For(0, 4, i =>
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            for (int r = 0; r < 50; r++)
            {
                var x = torch.randn([1 + (i + r) % 9, 256]);
                if (MaxDiff(torch.matmul(x, w), packed.Forward(x)) > 1e-4) Interlocked.Increment(ref failures);
                if (MaxDiff(torch.matmul(x, dequantized), q8.Forward(x)) > 1e-3) Interlocked.Increment(ref failures);
            }
        });
        Assert.Equal(0, failures);
    }

    [Fact]
    public void A_private_pool_of_three_splits_rows_of_blocks_correctly()
    {
        Assert.SkipUnless(PackedWeight.IsSupported, "needs AVX2+FMA");
        using var scope = torch.NewDisposeScope();
        using var workers = new KernelWorkers(3);
        var w = Weights(50, 1000, 4);
        using var packed = PackedWeight.FromTensor(w, null, WeightFormat.F32);
        foreach (int batch in new[] { 1, 5, 16 })
        {
            var x = torch.randn([batch, 50]);
            var y = torch.empty([batch, 1000]);
            unsafe { packed.Multiply(TensorMemory.Floats(x), TensorMemory.Floats(y), batch, workers); }
            Assert.True(MaxDiff(torch.matmul(x, w), y) < 1e-5);
        }
    }

    [Fact]
    public void A_participant_held_up_mid_product_leaves_its_remaining_units_to_the_others()
    {
        // Unit 0 stands for a participant preempted by another thread: it does not return until every other unit is
        // done (or 10 s pass). With fixed halves the held-up participant's other units could never be taken.
        using var workers = new KernelWorkers(2);
        var work = new HeldUpWork(64);
        workers.Run(work, 64);
        Assert.All(work.Executions, n => Assert.Equal(1, n));
        Assert.True(work.OthersFinishedFirst, "the other participant did not take the held-up participant's units");
        int heldUpThread = work.Threads[0];
        // Claims are 64 / (2 x 8) = 4 units: the held-up participant did its first chunk only.
        Assert.Equal(4, work.Threads.Count(t => t == heldUpThread));
    }

    private sealed class HeldUpWork(int units) : IParallelWork
    {
        public int[] Executions { get; } = new int[units];
        public int[] Threads { get; } = new int[units];
        public bool OthersFinishedFirst { get; private set; }
        private int _done;

        public void Execute(int fromUnit, int toUnit)
        {
            for (int u = fromUnit; u < toUnit; u++)
            {
                Interlocked.Increment(ref Executions[u]);
                Threads[u] = Environment.CurrentManagedThreadId;
                if (u == 0)
                {
                    // Waits for the units outside its own claim of four.
                    OthersFinishedFirst = SpinWait.SpinUntil(() => Volatile.Read(ref _done) >= units - 4, TimeSpan.FromSeconds(10));
                }
                Interlocked.Increment(ref _done);
            }
        }
    }

    internal static Tensor Dequantize(PackedWeight packed)
    {
        var values = new float[packed.InFeatures * packed.OutFeatures];
        for (int k = 0; k < packed.InFeatures; k++)
            for (int n = 0; n < packed.OutFeatures; n++) values[k * packed.OutFeatures + n] = packed.Dequantized(k, n);
        return torch.tensor(values, [packed.InFeatures, packed.OutFeatures]);
    }
}
