using System.Diagnostics;
using System.Globalization;
using TorchSharp;
using XGenMM.Model.Kernels;
using static TorchSharp.torch;

/// <summary>
/// `kernels`: the decoder's mat-mul shapes (Phi-3 side 512/8/1536, head 32015) at batch 1..512, our packed AVX2
/// kernels (f32, bf16, q8) against <c>torch.matmul(x, Wt)</c> with the [in, out] weight the torch path uses, in the
/// same process. Prints GFLOP/s, weight GB/s and the ratio to torch per shape and batch.
/// Arguments after `kernels`: an optional comma list of batch sizes (default 1,2,4,8,16,64,512), and `real` for the
/// real Phi-3-mini shapes (3072/8192, head 32064: weights far larger than any cache, as in real-size decode).
/// </summary>
internal static class KernelBenchmark
{
    public static int Run(string[] args)
    {
        var list = args.Skip(1).FirstOrDefault(a => char.IsDigit(a[0]));
        int[] batches = list is not null ? list.Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray() : [1, 2, 4, 8, 16, 64, 512];
        (string Name, int In, int Out)[] shapes = args.Contains("real")
            ? [("qkv", 3072, 9216), ("o", 3072, 3072), ("gate_up", 3072, 16384), ("down", 8192, 3072), ("head", 3072, 32064)]
            : [("qkv", 512, 1536), ("o", 512, 512), ("gate_up", 512, 3072), ("down", 1536, 512), ("head", 512, 32015)];
        Console.WriteLine($"threads: torch {torch.get_num_threads()}, kernels {Environment.ProcessorCount}; AVX2+FMA: {PackedWeight.IsSupported}");
        Console.WriteLine("| shape | in x out | batch | torch GFLOP/s | f32 GFLOP/s | f32 GB/s | bf16 GB/s | q8 GB/s | f32 / torch | bf16 / torch | q8 / torch |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|");
        using var noGrad = torch.no_grad();
        foreach (var (name, inF, outF) in shapes)
        {
            using var weight = torch.randn([inF, outF]).mul_(0.02);
            using var f32 = PackedWeight.FromTensor(weight, null, WeightFormat.F32);
            using var bf16 = PackedWeight.FromTensor(weight, null, WeightFormat.BF16);
            using var q8 = PackedWeight.FromTensor(weight, null, WeightFormat.Q8);
            foreach (int batch in batches)
            {
                using var x = torch.randn([batch, inF]);
                double torchS = Time(() => torch.matmul(x, weight));
                double f32S = Time(() => f32.Forward(x));
                double bf16S = Time(() => bf16.Forward(x));
                double q8S = Time(() => q8.Forward(x));
                double flops = 2.0 * batch * inF * outF;
                double bytes = 4.0 * inF * outF;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {name} | {inF}x{outF} | {batch} | {flops / torchS / 1e9:F1} | {flops / f32S / 1e9:F1} | {bytes / f32S / 1e9:F1} | {bf16.ByteLength / bf16S / 1e9:F1} | {q8.ByteLength / q8S / 1e9:F1} | {torchS / f32S:F2}x | {torchS / bf16S:F2}x | {torchS / q8S:F2}x |"));
            }
        }
        return 0;
    }

    /// <summary>Median seconds per call over enough calls to fill about 0.3 s (at least 5), after a warm-up.</summary>
    private static double Time(Func<Tensor> op)
    {
        for (int i = 0; i < 3; i++) op().Dispose();
        var sw = Stopwatch.StartNew();
        op().Dispose();
        double once = Math.Max(sw.Elapsed.TotalSeconds, 1e-6);
        int runs = (int)Math.Clamp(0.3 / once, 5, 2000);
        var times = new double[runs];
        for (int i = 0; i < runs; i++)
        {
            sw.Restart();
            op().Dispose();
            times[i] = sw.Elapsed.TotalSeconds;
        }
        Array.Sort(times);
        return times[runs / 2];
    }
}
