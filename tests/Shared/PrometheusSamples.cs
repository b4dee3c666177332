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

    private static double Parse(string value) => double.Parse(value, CultureInfo.InvariantCulture);
}
