namespace XGenMM.LoadTest.Metrics;

/// <summary>Summary of a sample in milliseconds: mean and the percentiles the anchors report (linear interpolation, as numpy).</summary>
public sealed record Distribution
{
    public int Count { get; init; }
    public double Mean { get; init; }
    public double P50 { get; init; }
    public double P90 { get; init; }
    public double P99 { get; init; }
    public double Min { get; init; }
    public double Max { get; init; }

    /// <summary>No sample: NaN statistics (a dash in tables, "NaN" in JSON).</summary>
    public static Distribution Empty { get; } = new() { Mean = double.NaN, P50 = double.NaN, P90 = double.NaN, P99 = double.NaN, Min = double.NaN, Max = double.NaN };

    /// <summary>From values in seconds; the result is in milliseconds.</summary>
    public static Distribution OfSeconds(IEnumerable<double> seconds)
    {
        var ms = seconds.Select(s => s * 1000).ToArray();
        if (ms.Length == 0) return Empty;
        Array.Sort(ms);
        return new Distribution
        {
            Count = ms.Length,
            Mean = ms.Average(),
            P50 = Percentile(ms, 50),
            P90 = Percentile(ms, 90),
            P99 = Percentile(ms, 99),
            Min = ms[0],
            Max = ms[^1],
        };
    }

    /// <summary>numpy.percentile's default ("linear"): rank p/100 * (n - 1), interpolated between neighbours.</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double p)
    {
        if (sorted.Count == 0) return double.NaN;
        double rank = p / 100 * (sorted.Count - 1);
        int lo = (int)Math.Floor(rank), hi = (int)Math.Ceiling(rank);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
    }
}
