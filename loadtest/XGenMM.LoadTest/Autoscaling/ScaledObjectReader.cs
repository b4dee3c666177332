using System.Globalization;
using System.Text.Json.Nodes;

namespace XGenMM.LoadTest.Autoscaling;

/// <summary>A Prometheus trigger of a KEDA ScaledObject: the query whose result is the total, and its per-replica target.</summary>
public sealed record PrometheusTrigger(string Name, string Query, double Threshold, string ServerAddress);

/// <summary>What a ScaledObject asks of the HPA that KEDA makes from it: the workload, the triggers and the HPA's spec.</summary>
public sealed record ScaledObjectSpec(string Name, string TargetDeployment, IReadOnlyList<PrometheusTrigger> Triggers, AutoscalerSpec Autoscaler);

/// <summary>
/// Reads a rendered KEDA ScaledObject (as JSON) the way KEDA turns it into an HPA: minReplicaCount/maxReplicaCount
/// become the HPA's bounds (KEDA's defaults 0 and 100), each Prometheus trigger with metricType AverageValue becomes an
/// external metric whose per-replica target is the threshold, and advanced.horizontalPodAutoscalerConfig.behavior is
/// the HPA's behavior (autoscaling/v2 defaults for what it leaves out).
/// </summary>
public static class ScaledObjectReader
{
    public static ScaledObjectSpec Read(JsonObject scaledObject)
    {
        ArgumentNullException.ThrowIfNull(scaledObject);
        if ((string?)scaledObject["kind"] != "ScaledObject")
            throw new FormatException($"Expected a ScaledObject, got kind '{(string?)scaledObject["kind"]}'.");
        string name = (string?)scaledObject["metadata"]?["name"] ?? throw new FormatException("The ScaledObject has no metadata.name.");
        var spec = scaledObject["spec"] as JsonObject ?? throw new FormatException($"ScaledObject {name} has no spec.");
        var targetRef = spec["scaleTargetRef"] as JsonObject ?? throw new FormatException($"ScaledObject {name} has no scaleTargetRef.");
        string kind = (string?)targetRef["kind"] ?? "Deployment";
        if (kind != "Deployment") throw new FormatException($"ScaledObject {name} scales a {kind}; only Deployments are run here.");
        string target = (string?)targetRef["name"] ?? throw new FormatException($"ScaledObject {name} has no scaleTargetRef.name.");

        var triggers = new List<PrometheusTrigger>();
        foreach (var node in spec["triggers"] as JsonArray ?? [])
        {
            if (node is not JsonObject trigger) continue;
            string type = (string?)trigger["type"] ?? "";
            if (type != "prometheus") throw new FormatException($"ScaledObject {name} has a '{type}' trigger; only prometheus triggers are evaluated here.");
            string metricType = (string?)trigger["metricType"] ?? "AverageValue";
            if (metricType != "AverageValue")
                throw new FormatException($"ScaledObject {name}: metricType {metricType} is not evaluated here (the chart uses AverageValue).");
            var metadata = trigger["metadata"] as JsonObject ?? throw new FormatException($"ScaledObject {name} has a trigger without metadata.");
            string query = (string?)metadata["query"] ?? throw new FormatException($"ScaledObject {name} has a trigger without a query.");
            double threshold = double.Parse((string?)metadata["threshold"] ?? throw new FormatException($"ScaledObject {name} has a trigger without a threshold."),
                NumberStyles.Float, CultureInfo.InvariantCulture);
            triggers.Add(new PrometheusTrigger((string?)trigger["name"] ?? $"trigger-{triggers.Count}", query, threshold, (string?)metadata["serverAddress"] ?? ""));
        }
        if (triggers.Count == 0) throw new FormatException($"ScaledObject {name} has no triggers.");

        var behavior = spec["advanced"]?["horizontalPodAutoscalerConfig"]?["behavior"] as JsonObject;
        var autoscaler = new AutoscalerSpec(
            Int(spec["minReplicaCount"]) ?? 0,
            Int(spec["maxReplicaCount"]) ?? 100,
            [.. triggers.Select(t => t.Threshold)],
            Rules(behavior?["scaleUp"] as JsonObject, ScalingRules.DefaultScaleUp),
            Rules(behavior?["scaleDown"] as JsonObject, ScalingRules.DefaultScaleDown));
        autoscaler.Validate();
        return new ScaledObjectSpec(name, target, triggers, autoscaler);
    }

    private static ScalingRules Rules(JsonObject? rules, ScalingRules defaults)
    {
        if (rules is null) return defaults;
        var policies = rules["policies"] is JsonArray array
            ? array.OfType<JsonObject>().Select(p => new ScalingPolicy(
                Enum.Parse<ScalingPolicyType>((string?)p["type"] ?? throw new FormatException("A scaling policy has no type.")),
                Int(p["value"]) ?? throw new FormatException("A scaling policy has no value."),
                Int(p["periodSeconds"]) ?? throw new FormatException("A scaling policy has no periodSeconds."))).ToList()
            : defaults.Policies;
        var select = rules["selectPolicy"] is JsonValue s ? Enum.Parse<SelectPolicy>((string)s!) : SelectPolicy.Max;
        return new ScalingRules(Int(rules["stabilizationWindowSeconds"]) ?? defaults.StabilizationWindowSeconds, policies, select);
    }

    private static int? Int(JsonNode? node) => node switch
    {
        JsonValue v when v.TryGetValue(out int i) => i,
        JsonValue v when v.TryGetValue(out string? s) => int.Parse(s, NumberStyles.Integer, CultureInfo.InvariantCulture),
        _ => null,
    };
}
