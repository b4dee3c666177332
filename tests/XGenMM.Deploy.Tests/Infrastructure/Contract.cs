using System.Reflection;
using System.Text.RegularExpressions;
using XGenMM.Cluster.Abstractions.Telemetry;

namespace XGenMM.Deploy.Tests.Infrastructure;

/// <summary>
/// What the chart must agree with, read from the code and docs that own it: metric names (MetricNames), the metrics each
/// host really exports (the metric classes that create them), configuration keys (docs/configuration.md) and the silo's
/// defaults (appsettings.json, SiloSettings). A change there that the chart does not follow breaks a test.
/// </summary>
internal static partial class Contract
{
    /// <summary>Constant name -> metric name, from <see cref="MetricNames"/>.</summary>
    public static IReadOnlyDictionary<string, string> MetricConstants { get; } = typeof(MetricNames)
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Where(f => f.IsLiteral && f.FieldType == typeof(string))
        .ToDictionary(f => f.Name, f => (string)f.GetRawConstantValue()!, StringComparer.Ordinal);

    public static IReadOnlySet<string> AllMetrics { get; } = MetricConstants.Values.ToHashSet(StringComparer.Ordinal);

    /// <summary>Metrics a silo exports: the MetricNames constants that EngineMetrics creates collectors for.</summary>
    public static IReadOnlySet<string> SiloMetrics { get; } = Exported("src/XGenMM.Cluster/Hosting/EngineMetrics.cs");

    /// <summary>Metrics the gateway exports: the MetricNames constants that GatewayMetrics creates collectors for.</summary>
    public static IReadOnlySet<string> GatewayMetrics { get; } = Exported("src/XGenMM.Gateway/Telemetry/GatewayMetrics.cs");

    private static HashSet<string> Exported(string relativePath)
    {
        string source = Repo.ReadAllText(relativePath.Split('/'));
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (Match m in CreateCollector().Matches(source))
        {
            string constant = m.Groups["constant"].Value;
            Assert.True(MetricConstants.TryGetValue(constant, out var metric), $"{relativePath} uses MetricNames.{constant}, which does not exist.");
            names.Add(metric!);
        }
        Assert.NotEmpty(names);
        return names;
    }

    /// <summary>Keys named in docs/configuration.md: `Section:Key` (as `Section__Key` in the environment) and env names.</summary>
    public static IReadOnlySet<string> DocumentedKeys { get; } = ReadDocumentedKeys();

    private static HashSet<string> ReadDocumentedKeys()
    {
        string doc = Repo.ReadAllText("docs", "configuration.md");
        var keys = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (Match m in BacktickedKey().Matches(doc)) keys.Add(m.Groups["key"].Value);
        Assert.Contains("Silo:Roles", keys);
        return keys;
    }

    /// <summary>True when an environment variable of ours is a documented configuration key.</summary>
    public static bool IsDocumented(string envName) => DocumentedKeys.Contains(envName.Replace("__", ":", StringComparison.Ordinal));

    /// <summary>A value of the silo host's appsettings.json, e.g. "Silo:HttpPort".</summary>
    public static string SiloDefault(string key)
    {
        var node = JsonNode.Parse(Repo.ReadAllText("src", "XGenMM.Silo", "appsettings.json"));
        foreach (var part in key.Split(':')) node = node?[part];
        return node?.ToString() ?? throw new Xunit.Sdk.XunitException($"src/XGenMM.Silo/appsettings.json has no {key}.");
    }

    /// <summary>The [Range(min, max)] of a property of SiloSettings.</summary>
    public static (int Min, int Max) SiloSettingsRange(string property)
    {
        string source = Repo.ReadAllText("src", "XGenMM.Cluster", "Hosting", "SiloSettings.cs");
        var m = Regex.Match(source, $@"\[Range\((?<min>\d+),\s*(?<max>\d+)\)\]\s*public int {property}\b");
        Assert.True(m.Success, $"SiloSettings.{property} has no [Range(min, max)].");
        return (int.Parse(m.Groups["min"].Value, System.Globalization.CultureInfo.InvariantCulture),
                int.Parse(m.Groups["max"].Value, System.Globalization.CultureInfo.InvariantCulture));
    }

    [GeneratedRegex(@"\.Create(?:Gauge|Counter|Histogram|Summary)\(\s*MetricNames\.(?<constant>\w+)")]
    private static partial Regex CreateCollector();

    [GeneratedRegex(@"`(?<key>[A-Z][A-Za-z]*(?::[A-Za-z*]+)+|[A-Z][A-Z0-9_]+)`")]
    private static partial Regex BacktickedKey();
}
