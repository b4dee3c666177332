using System.Text.RegularExpressions;
using XGenMM.Deploy.Tests.Infrastructure;
using static XGenMM.Deploy.Tests.Infrastructure.Rendered;

namespace XGenMM.Deploy.Tests;

/// <summary>
/// A default install works on a plain cluster (issue 20): what needs KEDA or the Prometheus operator renders only
/// where the cluster serves their APIs (or where the operator forces it), and everything else still validates.
/// </summary>
public sealed partial class PlainClusterTests
{
    private static readonly string[] OptionalGroups = ["keda.sh/", "monitoring.coreos.com/"];

    public static TheoryData<string> PlainScenarios()
    {
        var data = new TheoryData<string>();
        foreach (var s in Scenario.All.Where(s => s.Plain)) data.Add(s.Name);
        return data;
    }

    [Theory]
    [MemberData(nameof(PlainScenarios))]
    public async Task Without_the_optional_apis_nothing_of_keda_or_the_operator_renders_and_the_rest_validates(string scenario)
    {
        var r = await Helm.RenderAsync(scenario);
        Assert.Empty(r.Problems);
        Assert.NotEmpty(r.Objects);
        foreach (var o in r.Objects)
        {
            string apiVersion = Str(o, "apiVersion") ?? "";
            Assert.False(OptionalGroups.Any(g => apiVersion.StartsWith(g, StringComparison.Ordinal)), $"{Str(o, "kind")}/{Name(o)} ({apiVersion}) needs a CRD a plain cluster lacks.");
        }
        // Silos that KEDA would have scaled keep fixed replicas; the hpa engine still renders its HPAs.
        foreach (var silo in r.Silos)
        {
            bool autoscaled = r.OfKind("HorizontalPodAutoscaler").Any(a => Str(a, "spec.scaleTargetRef.name") == Name(silo));
            Assert.Equal(autoscaled, At(silo, "spec.replicas") is null);
        }
        if (scenario == "plain-hpa-autoscaling")
            Assert.Equal(2, r.OfKind("HorizontalPodAutoscaler").Count(h => Component(h).StartsWith("silo-", StringComparison.Ordinal)));
        else
            Assert.DoesNotContain(r.OfKind("HorizontalPodAutoscaler"), h => Component(h).StartsWith("silo-", StringComparison.Ordinal));
    }

    /// <summary>The same values, with and without the APIs in the cluster.</summary>
    public static TheoryData<string, string, int, int, int> Matrix() => new()
    {
        // values, apis ("keda", "monitoring", both or none) -> ScaledObjects, ServiceMonitors, PodMonitors
        { "", "keda,monitoring", 2, 3, 0 },
        { "", "keda", 2, 0, 0 },
        { "", "monitoring", 0, 3, 0 },
        { "", "", 0, 0, 0 },
        { "monitoring: { serviceMonitor: { enabled: false } }", "keda,monitoring", 2, 0, 0 },
        { "monitoring: { serviceMonitor: { enabled: true } }", "", 0, 3, 0 },
        { "monitoring: { podMonitor: { enabled: auto } }", "monitoring", 0, 0, 3 },
        { "monitoring: { podMonitor: { enabled: auto } }", "", 0, 0, 0 },
        { "monitoring: { podMonitor: { enabled: true } }", "", 0, 0, 3 },
        { "monitoring: { serviceMonitor: { enabled: true }, podMonitor: { enabled: true } }", "monitoring", 0, 3, 3 },
        { "autoscaling: { engine: hpa }", "keda,monitoring", 0, 3, 0 },
        { "autoscaling: { engine: none }", "keda", 0, 0, 0 },
    };

    [Theory]
    [MemberData(nameof(Matrix))]
    public async Task Optional_objects_follow_the_apis_the_cluster_serves_and_the_switches(string values, string apis, int scaledObjects, int serviceMonitors, int podMonitors)
    {
        var apiVersions = apis.Split(',', StringSplitOptions.RemoveEmptyEntries)
            .Select(a => a == "keda" ? "keda.sh/v1alpha1/ScaledObject" : "monitoring.coreos.com/v1").ToList();
        var template = await Helm.TemplateAsync(Scenario.Named("default"), values, apiVersions);
        Assert.True(template.ExitCode == 0, template.StdErr);
        var r = await Helm.ValidateAsync(template.StdOut);
        Assert.Empty(r.Problems);
        Assert.Equal(scaledObjects, r.OfKind("ScaledObject").Count());
        Assert.Equal(serviceMonitors, r.OfKind("ServiceMonitor").Count());
        Assert.Equal(podMonitors, r.OfKind("PodMonitor").Count());
        foreach (var silo in r.Silos)
            Assert.Equal(r.OfKind("ScaledObject").Concat(r.OfKind("HorizontalPodAutoscaler")).Any(a => Str(a, "spec.scaleTargetRef.name") == Name(silo)), At(silo, "spec.replicas") is null);
    }

    [Fact]
    public async Task A_monitor_switch_that_is_not_auto_true_or_false_is_refused()
    {
        var result = await Helm.TemplateAsync(Scenario.Named("default"), "monitoring: { serviceMonitor: { enabled: sometimes } }");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("/monitoring/serviceMonitor/enabled", result.StdErr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Notes_say_when_keda_is_missing()
    {
        var plain = await Helm.DryRunInstallAsync(Scenario.Named("plain-default"));
        Assert.True(plain.ExitCode == 0, plain.StdErr);
        // helm install --dry-run=client sees no KEDA API (it takes no --api-versions): the plain-cluster note.
        Assert.Contains("does not serve KEDA's ScaledObject API", plain.StdOut, StringComparison.Ordinal);
        Assert.DoesNotContain("Silo autoscaling uses KEDA ScaledObjects", plain.StdOut, StringComparison.Ordinal);
        Assert.Contains($"helm test {Scenario.Release} -n {Scenario.Namespace} --logs", plain.StdOut, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_default_model_cache_is_per_pod_and_needs_no_storage_class()
    {
        var r = await Helm.RenderAsync("plain-default");
        Assert.DoesNotContain(r.OfKind("PersistentVolumeClaim"), c => Component(c) == "model");
        foreach (var w in r.Silos.Append(r.Gateway))
        {
            var model = Arr(PodSpec(w), "volumes").Single(v => Str(v, "name") == "model");
            Assert.NotNull(At(model, "emptyDir"));
        }
    }

    public static TheoryData<string, string?, string?> CacheClaims() => new()
    {
        // values -> the claim's access mode and storage class (null: refused)
        { "model: { huggingface: { cache: { type: pvc } } }", null, null },
        { "model: { huggingface: { cache: { type: pvc, pvc: { storageClass: nfs-rwx } } } }", "ReadWriteMany", "nfs-rwx" },
        { "model: { huggingface: { cache: { type: pvc, pvc: { accessModes: [ReadWriteOnce] } } } }", "ReadWriteOnce", null },
    };

    [Theory]
    [MemberData(nameof(CacheClaims))]
    public async Task A_shared_ReadWriteMany_cache_claim_needs_a_storage_class_that_supports_it(string values, string? accessMode, string? storageClass)
    {
        var template = await Helm.TemplateAsync(Scenario.Named("plain-default"), values);
        if (accessMode is null)
        {
            Assert.NotEqual(0, template.ExitCode);
            Assert.Contains("ReadWriteMany claim without a storageClass", template.StdErr, StringComparison.Ordinal);
            return;
        }
        Assert.True(template.ExitCode == 0, template.StdErr);
        var r = await Helm.ValidateAsync(template.StdOut);
        Assert.Empty(r.Problems);
        var claim = Assert.Single(r.OfKind("PersistentVolumeClaim"), c => Component(c) == "model");
        Assert.Equal([accessMode], (At(claim, "spec.accessModes") as JsonArray)!.Select(a => a!.ToString()));
        Assert.Equal(storageClass, Str(claim, "spec.storageClassName"));
    }

    /// <summary>Package managers and fetches: a pod at start reaches no index or site but the model host (and the
    /// helm test, the release's own gateway).</summary>
    [GeneratedRegex(@"\b(pip3?|npm|npx|yarn|apt|apt-get|apk|dnf|yum|conda|wget|curl)\b")]
    private static partial Regex Fetcher();

    [Theory]
    [MemberData(nameof(Scenario.Names), MemberType = typeof(Scenario))]
    public async Task No_container_installs_or_fetches_anything_at_start(string scenario)
    {
        var r = await Helm.RenderAsync(scenario);
        var pods = r.Workloads.Select(w => (Name: Name(w), Spec: PodSpec(w))).Concat(r.OfKind("Pod").Select(p => (Name: Name(p), Spec: Obj(p, "spec"))));
        foreach (var (name, spec) in pods)
            foreach (var c in Arr(spec, "initContainers").Concat(Arr(spec, "containers")))
            {
                string command = string.Join(' ', new[] { "command", "args" }.SelectMany(k => At(c, k) is JsonArray a ? a.Select(x => x!.ToString()) : []));
                foreach (Match m in Fetcher().Matches(command))
                {
                    // The one exception: curl of the helm test, to the release's gateway Service only.
                    Assert.True(m.Value == "curl" && IsHelmTest(r, name), $"{name}/{Str(c, "name")} runs {m.Value}: {command}");
                    foreach (Match url in Url().Matches(command))
                        Assert.StartsWith($"http://{Scenario.Release}-xgenmm-gateway.{Scenario.Namespace}.svc", url.Value, StringComparison.Ordinal);
                }
            }
    }

    private static bool IsHelmTest(Rendered r, string podName) =>
        r.Find("Pod", podName) is { } pod && StringMap(At(pod, "metadata.annotations")).GetValueOrDefault("helm.sh/hook") == "test";

    [GeneratedRegex(@"https?://[^\s""']+")]
    private static partial Regex Url();

    [Theory]
    [MemberData(nameof(PlainScenarios))]
    public async Task The_model_download_needs_no_image_but_the_charts_own(string scenario)
    {
        var r = await Helm.RenderAsync(scenario);
        // An operator builds and pushes two images, silo and gateway; the download pulls nothing else.
        int downloads = 0;
        foreach (var (workload, main) in r.Silos.Select(s => (s, "silo")).Append((r.Gateway, "gateway")))
        {
            string image = Str(Container(workload, main), "image")!;
            Assert.Matches($@"(^|/)xgenmm/{main}:[^/:]+$", image);
            foreach (var init in Arr(PodSpec(workload), "initContainers"))
            {
                Assert.Equal(image, Str(init, "image"));
                // The image's ENTRYPOINT (dotnet <host>.dll) must stay: the init container adds arguments only.
                Assert.Null(At(init, "command"));
                downloads++;
            }
        }
        // The chart's defaults download from the hub, so the check above ran on real init containers.
        if (scenario == "plain-default") Assert.Equal(r.Silos.Count() + 1, downloads);
        Assert.DoesNotContain(r.Objects, o => Str(o, "kind") == "ConfigMap" && Component(o) == "model");
    }
}
