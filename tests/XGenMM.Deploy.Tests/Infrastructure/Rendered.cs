using System.Globalization;

namespace XGenMM.Deploy.Tests.Infrastructure;

/// <summary>A rendered release: every object as JSON, and what the validator found wrong with them.</summary>
internal sealed class Rendered(string manifests, IReadOnlyList<JsonObject> objects, IReadOnlyList<string> problems)
{
    public string Manifests { get; } = manifests;
    public IReadOnlyList<JsonObject> Objects { get; } = objects;
    public IReadOnlyList<string> Problems { get; } = problems;

    public IEnumerable<JsonObject> OfKind(string kind) => Objects.Where(o => Str(o, "kind") == kind);

    public JsonObject? Find(string kind, string name) => OfKind(kind).SingleOrDefault(o => Name(o) == name);

    public JsonObject Get(string kind, string name) =>
        Find(kind, name) ?? throw new Xunit.Sdk.XunitException($"No {kind} named '{name}' was rendered; have: {string.Join(", ", Objects.Select(o => $"{Str(o, "kind")}/{Name(o)}"))}");

    /// <summary>Deployments and StatefulSets.</summary>
    public IEnumerable<JsonObject> Workloads => OfKind("Deployment").Concat(OfKind("StatefulSet"));

    /// <summary>The silo Deployments (component silo-*).</summary>
    public IEnumerable<JsonObject> Silos => OfKind("Deployment").Where(d => Component(d).StartsWith("silo-", StringComparison.Ordinal));

    public JsonObject Gateway => OfKind("Deployment").Single(d => Component(d) == "gateway");

    // ---- JSON helpers ------------------------------------------------------------------------------------------

    public static JsonNode? At(JsonNode? node, string path)
    {
        foreach (var part in path.Split('.', StringSplitOptions.RemoveEmptyEntries))
        {
            node = node switch
            {
                JsonObject o => o[part],
                JsonArray a when int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int i) && i < a.Count => a[i],
                _ => null,
            };
            if (node is null) return null;
        }
        return node;
    }

    public static string? Str(JsonNode? node, string path) => At(node, path) switch
    {
        JsonValue v when v.TryGetValue(out string? s) => s,
        JsonValue v => v.ToJsonString(),
        _ => null,
    };

    public static int? Int(JsonNode? node, string path) => At(node, path) switch
    {
        JsonValue v when v.TryGetValue(out int i) => i,
        JsonValue v when v.TryGetValue(out string? s) && int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int j) => j,
        _ => null,
    };

    public static JsonObject Obj(JsonNode? node, string path) => At(node, path) as JsonObject ?? [];

    public static IEnumerable<JsonObject> Arr(JsonNode? node, string path) =>
        At(node, path) is JsonArray a ? a.OfType<JsonObject>() : [];

    public static string Name(JsonNode o) => Str(o, "metadata.name") ?? "";

    public static string Component(JsonNode o) => StringMap(At(o, "metadata.labels")).GetValueOrDefault("app.kubernetes.io/component", "");

    public static Dictionary<string, string> StringMap(JsonNode? node) =>
        node is JsonObject o ? o.ToDictionary(p => p.Key, p => p.Value?.ToString() ?? "", StringComparer.Ordinal) : new(StringComparer.Ordinal);

    /// <summary>True when every label of the selector is on the labels.</summary>
    public static bool Selects(IReadOnlyDictionary<string, string> selector, IReadOnlyDictionary<string, string> labels) =>
        selector.Count > 0 && selector.All(s => labels.TryGetValue(s.Key, out var v) && v == s.Value);

    public static JsonObject PodSpec(JsonObject workload) => Obj(workload, "spec.template.spec");

    public static Dictionary<string, string> PodLabels(JsonObject workload) => StringMap(At(workload, "spec.template.metadata.labels"));

    public static JsonObject Container(JsonObject workload, string name) =>
        Arr(PodSpec(workload), "containers").SingleOrDefault(c => Str(c, "name") == name)
        ?? throw new Xunit.Sdk.XunitException($"{Name(workload)} has no container '{name}'.");

    public static IEnumerable<JsonObject> AllContainers(JsonObject workload) =>
        Arr(PodSpec(workload), "initContainers").Concat(Arr(PodSpec(workload), "containers"));

    /// <summary>A container's env entries by name.</summary>
    public static Dictionary<string, JsonObject> Env(JsonObject container) =>
        Arr(container, "env").ToDictionary(e => Str(e, "name")!, StringComparer.Ordinal);

    /// <summary>The literal value of an env var; fails when it is missing or comes from elsewhere.</summary>
    public static string EnvValue(JsonObject container, string name) =>
        Env(container).TryGetValue(name, out var e) && Str(e, "value") is { } v
            ? v
            : throw new Xunit.Sdk.XunitException($"Container '{Str(container, "name")}' has no literal env {name}.");

    public static int ContainerPort(JsonObject container, string portName) =>
        Arr(container, "ports").Where(p => Str(p, "name") == portName).Select(p => Int(p, "containerPort")).SingleOrDefault()
        ?? throw new Xunit.Sdk.XunitException($"Container '{Str(container, "name")}' has no port named '{portName}'.");

    /// <summary>Seconds of an exec ["sleep", "N"] preStop hook (0 without one).</summary>
    public static int PreStopSleep(JsonObject container)
    {
        var command = At(container, "lifecycle.preStop.exec.command") as JsonArray;
        if (command is null) return 0;
        var parts = command.Select(c => c!.GetValue<string>()).ToArray();
        Assert.True(parts.Length == 2 && parts[0] == "sleep", $"preStop of '{Str(container, "name")}' is not a plain sleep: {string.Join(' ', parts)}");
        return int.Parse(parts[1], CultureInfo.InvariantCulture);
    }
}
