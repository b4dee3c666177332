using System.Diagnostics;
using System.Globalization;
using System.Numerics;
using System.Runtime.InteropServices;

/// <summary>
/// Memory bandwidth of this machine, STREAM-like (`bandwidth [MiB] [threads]`): "copy" moves a buffer much larger than
/// the caches into another (bytes read + bytes written, STREAM's count), "read" sums one (what a decode step does to
/// its weights). Each thread works on its own slice; best of several passes. Batch-1 decode of a model whose weights
/// are W bytes cannot beat read bandwidth / W tokens per second: the bound the real-size figures are set against.
/// </summary>
internal static class BandwidthBenchmark
{
    public static int Run(string[] args)
    {
        int mib = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 1024;
        int threads = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : Environment.ProcessorCount;
        var (copy, read) = Measure(mib, threads);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| memory bandwidth, {mib} MiB buffers, {threads} threads | copy {copy / 1e9:F1} GB/s (read + write) | read {read / 1e9:F1} GB/s |"));
        return 0;
    }

    /// <summary>Best copy and read bandwidth in bytes per second over <paramref name="mib"/> MiB buffers.</summary>
    public static (double Copy, double Read) Measure(int mib, int threads)
    {
        long length = (long)mib * 1024 * 1024 / sizeof(float);
        var source = new float[length];
        var target = new float[length];
        for (long i = 0; i < length; i++) source[i] = i % 17;   // touch every page before timing
        Array.Fill(target, 1f);

        double copy = Best(() => Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            var (start, count) = Slice(length, threads, t);
            source.AsSpan((int)start, (int)count).CopyTo(target.AsSpan((int)start, (int)count));
        }), 2.0 * length * sizeof(float));
        double sink = 0;
        double read = Best(() => Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            var (start, count) = Slice(length, threads, t);
            var vectors = MemoryMarshal.Cast<float, Vector<float>>(source.AsSpan((int)start, (int)count));
            // Four independent sums: one chain of dependent adds would measure add latency, not memory.
            Vector<float> a = Vector<float>.Zero, b = a, c = a, d = a;
            int i = 0;
            for (; i + 4 <= vectors.Length; i += 4)
            {
                a += vectors[i];
                b += vectors[i + 1];
                c += vectors[i + 2];
                d += vectors[i + 3];
            }
            for (; i < vectors.Length; i++) a += vectors[i];
            lock (source) sink += Vector.Sum(a + b + c + d);
        }), 1.0 * length * sizeof(float));
        GC.KeepAlive(sink);
        return (copy, read);
    }

    private static (long Start, long Count) Slice(long length, int parts, int index)
    {
        long per = length / parts / Vector<float>.Count * Vector<float>.Count;
        long start = per * index;
        return (start, index == parts - 1 ? length - start : per);
    }

    private static double Best(Action pass, double bytes)
    {
        pass();
        double best = 0;
        for (int i = 0; i < 5; i++)
        {
            var clock = Stopwatch.StartNew();
            pass();
            best = Math.Max(best, bytes / clock.Elapsed.TotalSeconds);
        }
        return best;
    }
}
