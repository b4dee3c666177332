using System.Globalization;
using System.Text;

namespace XGenMM.LoadTest.Metrics;

/// <summary>One sample of the Prometheus text format: a name, its labels and a value.</summary>
public sealed record PromSample(string Name, IReadOnlyDictionary<string, string> Labels, double Value)
{
    public string Label(string name) => Labels.TryGetValue(name, out var v) ? v : "";
}

/// <summary>
/// Reads the Prometheus text exposition format (version 0.0.4): <c># HELP</c>/<c># TYPE</c> lines are skipped,
/// every other line is <c>name{label="value",...} value [timestamp]</c>, label values with \\, \" and \n escapes.
/// </summary>
public static class PrometheusText
{
    public static IReadOnlyList<PromSample> Parse(string text)
    {
        var samples = new List<PromSample>();
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.TrimEnd('\r').Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            samples.Add(ParseLine(line));
        }
        return samples;
    }

    private static PromSample ParseLine(string line)
    {
        int i = 0;
        while (i < line.Length && line[i] != '{' && !char.IsWhiteSpace(line[i])) i++;
        string name = line[..i];
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        if (i < line.Length && line[i] == '{')
        {
            i++;
            while (true)
            {
                while (i < line.Length && (line[i] == ',' || line[i] == ' ')) i++;
                if (i >= line.Length) throw new FormatException($"Unterminated labels: {line}");
                if (line[i] == '}') { i++; break; }
                int eq = line.IndexOf('=', i);
                if (eq < 0 || eq + 1 >= line.Length || line[eq + 1] != '"') throw new FormatException($"Bad label in: {line}");
                string key = line[i..eq].Trim();
                var value = new StringBuilder();
                i = eq + 2;
                while (true)
                {
                    if (i >= line.Length) throw new FormatException($"Unterminated label value: {line}");
                    char c = line[i++];
                    if (c == '"') break;
                    if (c == '\\' && i < line.Length)
                    {
                        char e = line[i++];
                        value.Append(e switch { 'n' => '\n', _ => e });
                    }
                    else value.Append(c);
                }
                labels[key] = value.ToString();
            }
        }
        var rest = line[i..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (rest.Length == 0) throw new FormatException($"No value in: {line}");
        return new PromSample(name, labels, ParseValue(rest[0]));
    }

    public static double ParseValue(string text) => text switch
    {
        "+Inf" or "Inf" => double.PositiveInfinity,
        "-Inf" => double.NegativeInfinity,
        "NaN" => double.NaN,
        _ => double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture),
    };
}

/// <summary>A scrape of <c>/metrics</c>, with sums over label sets and histograms merged across labels.</summary>
public sealed class MetricsSnapshot(IReadOnlyList<PromSample> samples)
{
    public IReadOnlyList<PromSample> Samples { get; } = samples;

    public static MetricsSnapshot Parse(string text) => new(PrometheusText.Parse(text));

    /// <summary>Sum of every sample of <paramref name="name"/> whose labels pass <paramref name="where"/>.</summary>
    public double Sum(string name, Func<PromSample, bool>? where = null) =>
        Samples.Where(s => s.Name == name && (where is null || where(s))).Sum(s => s.Value);

    /// <summary>Sums of <paramref name="name"/> grouped by one label's value.</summary>
    public Dictionary<string, double> By(string name, string label) =>
        Samples.Where(s => s.Name == name).GroupBy(s => s.Label(label)).ToDictionary(g => g.Key, g => g.Sum(s => s.Value), StringComparer.Ordinal);

    /// <summary>A histogram with its label sets merged: cumulative bucket counts by upper bound, sum and count.</summary>
    public HistogramData Histogram(string name, Func<PromSample, bool>? where = null)
    {
        var buckets = Samples.Where(s => s.Name == name + "_bucket" && (where is null || where(s)))
            .GroupBy(s => PrometheusText.ParseValue(s.Label("le")))
            .OrderBy(g => g.Key)
            .Select(g => (g.Key, g.Sum(s => s.Value)))
            .ToArray();
        return new HistogramData(buckets, Sum(name + "_sum", where), Sum(name + "_count", where));
    }
}

/// <summary>Cumulative buckets (upper bound, count), the sum and the count of a Prometheus histogram.</summary>
public sealed record HistogramData((double UpperBound, double Count)[] Buckets, double Sum, double Count)
{
    public HistogramData Minus(HistogramData before)
    {
        var earlier = before.Buckets.ToDictionary(b => b.UpperBound, b => b.Count);
        return new HistogramData([.. Buckets.Select(b => (b.UpperBound, b.Count - earlier.GetValueOrDefault(b.UpperBound)))], Sum - before.Sum, Count - before.Count);
    }

    public double Mean => Count > 0 ? Sum / Count : double.NaN;

    /// <summary>
    /// Prometheus' histogram_quantile: find the bucket holding rank q*count and interpolate linearly inside it (the
    /// first bucket from 0); a rank in the +Inf bucket answers the highest finite bound.
    /// </summary>
    public double Quantile(double q)
    {
        if (Buckets.Length == 0 || Count <= 0) return double.NaN;
        double total = Buckets[^1].Count;
        if (total <= 0) return double.NaN;
        double rank = q * total;
        double lowerBound = 0, lowerCount = 0;
        foreach (var (upper, count) in Buckets)
        {
            if (count >= rank)
            {
                if (double.IsPositiveInfinity(upper)) return lowerBound;
                if (count == lowerCount) return upper;
                return lowerBound + (upper - lowerBound) * (rank - lowerCount) / (count - lowerCount);
            }
            lowerBound = upper;
            lowerCount = count;
        }
        return lowerBound;
    }
}
