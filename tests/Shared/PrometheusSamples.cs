using System.Globalization;
using System.Text.RegularExpressions;

namespace XGenMM.Testing;

/// <summary>Reads sample values out of a Prometheus text exposition, as the tests scrape it from /metrics.</summary>
internal static class PrometheusSamples
{
    /// <summary>The value of one series, written as in the exposition (<c>name</c> or <c>name{labels}</c>); 0 when absent.</summary>
    public static double Value(string exposition, string series)
    {
        var match = Regex.Match(exposition, "^" + Regex.Escape(series) + " (\\S+)$", RegexOptions.Multiline);
        return match.Success ? Parse(match.Groups[1].Value) : 0;
    }

    /// <summary>The sum over every series of metric <paramref name="name"/>, whatever their labels.</summary>
    public static double Sum(string exposition, string name) =>
        Regex.Matches(exposition, "^" + Regex.Escape(name) + "(?:\\{[^}]*\\})? (\\S+)$", RegexOptions.Multiline)
            .Sum(m => Parse(m.Groups[1].Value));

    /// <summary>Every series of metric <paramref name="name"/> with its labels, whatever their order.</summary>
    public static IReadOnlyList<(IReadOnlyDictionary<string, string> Labels, double Value)> Series(string exposition, string name) =>
        [.. Regex.Matches(exposition, "^" + Regex.Escape(name) + "(?:\\{(?<labels>[^}]*)\\})? (?<value>\\S+)$", RegexOptions.Multiline)
            .Select(m => ((IReadOnlyDictionary<string, string>)Regex.Matches(m.Groups["labels"].Value, "(?<key>[a-zA-Z_][a-zA-Z0-9_]*)=\"(?<value>(?:[^\"\\\\]|\\\\.)*)\"")
                .ToDictionary(l => l.Groups["key"].Value, l => l.Groups["value"].Value, StringComparer.Ordinal), Parse(m.Groups["value"].Value)))];

    /// <summary>The sum over the series of <paramref name="name"/> whose labels include all of <paramref name="labels"/>.</summary>
    public static double Sum(string exposition, string name, params (string Key, string Value)[] labels) =>
        Series(exposition, name).Where(s => labels.All(l => s.Labels.TryGetValue(l.Key, out var v) && v == l.Value)).Sum(s => s.Value);

    private static double Parse(string value) => double.Parse(value, CultureInfo.InvariantCulture);
}
