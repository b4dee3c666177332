namespace XGenMM.LoadTest.Load;

/// <summary>
/// Inter-arrival times of an open loop as vLLM's benchmark draws them: gamma with shape = burstiness and
/// scale = 1 / (rate * burstiness), so the mean gap is 1/rate at any burstiness; burstiness 1 is a Poisson process,
/// below 1 arrivals bunch up, above 1 they become more regular.
/// </summary>
public static class Arrivals
{
    /// <summary>Offsets in seconds from the start of the point for <paramref name="count"/> requests (the first at 0).</summary>
    public static double[] Schedule(int count, double rate, double burstiness, Random random)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rate);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(burstiness);
        var offsets = new double[count];
        double t = 0, scale = 1 / (rate * burstiness);
        for (int i = 1; i < count; i++)
        {
            t += Gamma(random, burstiness) * scale;
            offsets[i] = t;
        }
        return offsets;
    }

    /// <summary>A Gamma(shape, 1) draw: Marsaglia and Tsang (2000), with the U^(1/shape) boost for shape below 1.</summary>
    public static double Gamma(Random random, double shape)
    {
        if (shape < 1)
        {
            double u = 1 - random.NextDouble();
            return Gamma(random, shape + 1) * Math.Pow(u, 1 / shape);
        }
        double d = shape - 1.0 / 3, c = 1 / Math.Sqrt(9 * d);
        while (true)
        {
            double x, v;
            do
            {
                x = Normal(random);
                v = 1 + c * x;
            } while (v <= 0);
            v = v * v * v;
            double u = 1 - random.NextDouble();
            if (u < 1 - 0.0331 * x * x * x * x) return d * v;
            if (Math.Log(u) < 0.5 * x * x + d * (1 - v + Math.Log(v))) return d * v;
        }
    }

    private static double Normal(Random random)
    {
        double u1 = 1 - random.NextDouble(), u2 = random.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
