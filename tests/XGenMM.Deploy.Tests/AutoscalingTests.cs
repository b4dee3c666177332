using System.Globalization;
using System.Text.RegularExpressions;
using XGenMM.Cluster.Abstractions.Telemetry;
using XGenMM.Deploy.Tests.Infrastructure;
using static XGenMM.Deploy.Tests.Infrastructure.Rendered;

namespace XGenMM.Deploy.Tests;

/// <summary>
/// Each autoscaler targets its own workload and scales it on a metric that workload really exports: decoders on
/// waiting requests (or queued tokens) per decoder, vision silos on pending images, gateways on CPU and connections.
/// </summary>
public sealed partial class AutoscalingTests
{
    [Fact]
    public void The_autoscaling_metrics_are_exported_by_the_hosts_that_are_scaled_on_them()
    {
        Assert.Contains(MetricNames.RequestsWaiting, Contract.SiloMetrics);
        Assert.Contains(MetricNames.TokensWaiting, Contract.SiloMetrics);
        Assert.Contains(MetricNames.VisionImagesPending, Contract.SiloMetrics);
        Assert.Contains(MetricNames.SignalRConnections, Contract.GatewayMetrics);
    }

    [Theory]
    [MemberData(nameof(Scenario.Names), MemberType = typeof(Scenario))]
    public async Task Silo_autoscalers_target_their_own_deployment_on_its_own_metrics(string scenario)
    {
        var r = await Helm.RenderAsync(scenario);
        var silos = r.Silos.ToList();
        foreach (var so in r.OfKind("ScaledObject"))
        {
            var target = Target(r, so);
            Assert.True(Int(so, "spec.minReplicaCount") >= 1, $"{Name(so)}: a silo group scaled to zero could never see the load that scales it up.");
            Assert.True(Int(so, "spec.maxReplicaCount") >= Int(so, "spec.minReplicaCount"));
            var triggers = Arr(so, "spec.triggers").ToList();
            Assert.NotEmpty(triggers);
            var metrics = new List<string>();
            foreach (var trigger in triggers)
            {
                Assert.Equal("prometheus", Str(trigger, "type"));
                Assert.Equal("AverageValue", Str(trigger, "metricType"));
                Assert.Matches("^https?://", Str(trigger, "metadata.serverAddress")!);
                var query = Query().Match(Str(trigger, "metadata.query")!);
                Assert.True(query.Success, $"{Name(so)}: unexpected query '{Str(trigger, "metadata.query")}'.");
                metrics.Add(query.Groups["metric"].Value);
                Assert.Equal(Scenario.Namespace, query.Groups["namespace"].Value);
                // The pod pattern (PromQL anchors it) matches this Deployment's pods and no other silo group's.
                var pods = new Regex($"^(?:{query.Groups["pods"].Value})$");
                Assert.Matches(pods, SamplePod(target));
                foreach (var other in silos.Where(s => s != target))
                    Assert.DoesNotMatch(pods, SamplePod(other));
                Assert.True(double.Parse(Str(trigger, "metadata.threshold")!, CultureInfo.InvariantCulture) > 0);
            }
            AssertMetricsFitRoles(target, metrics, triggers.Select(t => Str(t, "metadata.threshold")!).ToList());
            Assert.NotNull(At(so, "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.stabilizationWindowSeconds"));
        }
        foreach (var hpa in r.OfKind("HorizontalPodAutoscaler").Where(h => Component(h).StartsWith("silo-", StringComparison.Ordinal)))
        {
            var target = Target(r, hpa);
            Assert.True(Int(hpa, "spec.minReplicas") >= 1);
            var metrics = Arr(hpa, "spec.metrics").ToList();
            Assert.All(metrics, m => Assert.Equal("Pods", Str(m, "type")));
            AssertMetricsFitRoles(target, metrics.Select(m => Str(m, "pods.metric.name")!).ToList(),
                metrics.Select(m => Str(m, "pods.target.averageValue")!).ToList());
        }
        // Every silo group with autoscaling on has exactly one autoscaler, of the configured engine.
        var scalers = r.OfKind("ScaledObject").Concat(r.OfKind("HorizontalPodAutoscaler")).Select(a => Str(a, "spec.scaleTargetRef.name")).ToList();
        Assert.Equal(scalers.Count, scalers.Distinct(StringComparer.Ordinal).Count());
        if (scenario == "default" || scenario == "disaggregated")
            Assert.Equal(2, r.OfKind("ScaledObject").Count());
        if (scenario == "hpa-autoscaling")
            Assert.Empty(r.OfKind("ScaledObject"));
        if (scenario is "single-gpu-node" or "no-autoscaling-emptydir-cache")
            Assert.DoesNotContain(r.OfKind("ScaledObject").Concat(r.OfKind("HorizontalPodAutoscaler")), a => Component(a).StartsWith("silo-", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Scenario.Names), MemberType = typeof(Scenario))]
    public async Task The_gateway_scales_on_cpu_and_open_connections(string scenario)
    {
        var r = await Helm.RenderAsync(scenario);
        var hpa = r.OfKind("HorizontalPodAutoscaler").SingleOrDefault(h => Component(h) == "gateway");
        if (hpa is null)
        {
            Assert.NotNull(At(r.Gateway, "spec.replicas"));
            return;
        }
        Assert.Equal(Name(r.Gateway), Name(Target(r, hpa)));
        var metrics = Arr(hpa, "spec.metrics").ToList();
        Assert.Contains(metrics, m => Str(m, "type") == "Resource" && Str(m, "resource.name") == "cpu" && Int(m, "resource.target.averageUtilization") > 0);
        foreach (var pods in metrics.Where(m => Str(m, "type") == "Pods"))
            Assert.Contains(Str(pods, "pods.metric.name")!, Contract.GatewayMetrics);
        if (scenario is "disaggregated" or "hpa-autoscaling")
            Assert.Contains(metrics, m => Str(m, "pods.metric.name") == MetricNames.SignalRConnections);
    }

    [Theory]
    [MemberData(nameof(Scenario.Names), MemberType = typeof(Scenario))]
    public async Task Every_metric_name_in_the_chart_is_one_the_hosts_export(string scenario)
    {
        var r = await Helm.RenderAsync(scenario);
        var exported = Contract.SiloMetrics.Union(Contract.GatewayMetrics).ToHashSet(StringComparer.Ordinal);
        var used = MetricName().Matches(r.Manifests).Select(m => m.Groups["name"].Value).ToHashSet(StringComparer.Ordinal);
        if (r.OfKind("ScaledObject").Any() || r.OfKind("ConfigMap").Any(c => Name(c).EndsWith("-dashboard", StringComparison.Ordinal)))
            Assert.NotEmpty(used);
        foreach (var name in used)
        {
            Assert.True(Contract.AllMetrics.Contains(name), $"'{name}' is not in MetricNames.cs.");
            Assert.True(exported.Contains(name), $"'{name}' is in MetricNames.cs but neither EngineMetrics nor GatewayMetrics exports it.");
        }
    }

    /// <summary>Decoder roles scale on decoder metrics, vision roles on vision metrics, with per-pod targets that
    /// scale with the decoders (GPUs) of one pod.</summary>
    private static void AssertMetricsFitRoles(JsonObject silo, List<string> metrics, List<string> targets)
    {
        var container = Container(silo, "silo");
        var roles = EnvValue(container, "Silo__Roles").Split(',');
        string gpus = EnvValue(container, "Silo__Gpus");
        int decoders = Math.Max(1, gpus.Length == 0 ? 0 : gpus.Split(',').Length);
        string[] decoderMetrics = [MetricNames.RequestsWaiting, MetricNames.TokensWaiting];
        string[] visionMetrics = [MetricNames.VisionImagesPending];
        foreach (var metric in metrics)
        {
            Assert.Contains(metric, Contract.SiloMetrics);
            Assert.True(
                (roles.Contains("decoder") && decoderMetrics.Contains(metric)) || (roles.Contains("vision") && visionMetrics.Contains(metric)),
                $"{Name(silo)} ({string.Join(',', roles)}) is scaled on {metric}, which is not its own load.");
        }
        if (roles.Contains("decoder")) Assert.Contains(metrics, decoderMetrics.Contains);
        if (roles.Contains("vision")) Assert.Contains(metrics, visionMetrics.Contains);
        for (int i = 0; i < metrics.Count; i++)
            if (decoderMetrics.Contains(metrics[i]))
                Assert.Equal(0, int.Parse(targets[i], CultureInfo.InvariantCulture) % decoders);
    }

    private static JsonObject Target(Rendered r, JsonObject scaler)
    {
        Assert.Equal("Deployment", Str(scaler, "spec.scaleTargetRef.kind"));
        Assert.Equal("apps/v1", Str(scaler, "spec.scaleTargetRef.apiVersion"));
        var target = r.Get("Deployment", Str(scaler, "spec.scaleTargetRef.name")!);
        Assert.Equal(Component(target), Component(scaler));
        return target;
    }

    /// <summary>A pod name as the Deployment controller makes them: name, pod-template hash, random suffix.</summary>
    private static string SamplePod(JsonObject deployment) => $"{Name(deployment)}-7d9f8c6b5d-x2x4q";

    [GeneratedRegex("""^sum\((?<metric>[a-z_]+)\{namespace="(?<namespace>[^"]+)",pod=~"(?<pods>[^"]+)"\}\)$""")]
    private static partial Regex Query();

    [GeneratedRegex(@"\b(?<name>xgenmm_[a-z_]+?)(?:_bucket|_sum|_count)?\b")]
    private static partial Regex MetricName();
}
