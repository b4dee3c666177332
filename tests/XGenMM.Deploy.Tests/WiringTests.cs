using System.Globalization;
using XGenMM.Deploy.Tests.Infrastructure;
using static XGenMM.Deploy.Tests.Infrastructure.Rendered;

namespace XGenMM.Deploy.Tests;

/// <summary>The rendered objects fit together, and fit the hosts' configuration contract, in every scenario.</summary>
public sealed class WiringTests
{
    private const string GpuResource = "nvidia.com/gpu";

    [Theory]
    [MemberData(nameof(Scenario.Names), MemberType = typeof(Scenario))]
    public async Task Workload_selectors_match_their_pod_labels_and_services_reach_named_ports(string scenario)
    {
        var r = await Helm.RenderAsync(scenario);
        var workloads = r.Workloads.ToList();
        foreach (var w in workloads)
        {
            var selector = StringMap(At(w, "spec.selector.matchLabels"));
            Assert.True(Selects(selector, PodLabels(w)), $"{Name(w)}: selector {Fmt(selector)} does not match its pod labels {Fmt(PodLabels(w))}.");
            foreach (var other in workloads.Where(o => o != w))
                Assert.False(Selects(selector, PodLabels(other)), $"{Name(w)}'s selector also matches the pods of {Name(other)}.");
        }
        foreach (var service in r.OfKind("Service"))
        {
            var selector = StringMap(At(service, "spec.selector"));
            var targets = workloads.Where(w => Selects(selector, PodLabels(w))).ToList();
            Assert.True(targets.Count == 1, $"Service {Name(service)} selects {targets.Count} workloads.");
            var containers = Arr(PodSpec(targets[0]), "containers").ToList();
            foreach (var port in Arr(service, "spec.ports"))
            {
                string target = Str(port, "targetPort") ?? "";
                Assert.True(containers.Any(c => Arr(c, "ports").Any(p => Str(p, "name") == target)),
                    $"Service {Name(service)} port {Str(port, "name")} targets '{target}', which no container of {Name(targets[0])} names.");
            }
        }
        foreach (var w in r.OfKind("StatefulSet"))
            Assert.NotNull(r.Find("Service", Str(w, "spec.serviceName")!));
    }

    [Theory]
    [MemberData(nameof(Scenario.Names), MemberType = typeof(Scenario))]
    public async Task Disruption_budgets_and_monitors_select_exactly_one_workload(string scenario)
    {
        var r = await Helm.RenderAsync(scenario);
        var workloads = r.Workloads.ToList();
        foreach (var pdb in r.OfKind("PodDisruptionBudget"))
        {
            var selector = StringMap(At(pdb, "spec.selector.matchLabels"));
            Assert.Single(workloads, w => Selects(selector, PodLabels(w)));
            Assert.True(At(pdb, "spec.maxUnavailable") is not null, $"PDB {Name(pdb)} should bound unavailability, not demand availability (it would block node drains).");
        }
        foreach (var sm in r.OfKind("ServiceMonitor"))
        {
            var selector = StringMap(At(sm, "spec.selector.matchLabels"));
            var service = Assert.Single(r.OfKind("Service"), s => Selects(selector, StringMap(At(s, "metadata.labels"))));
            foreach (var endpoint in Arr(sm, "spec.endpoints"))
            {
                Assert.Contains(Arr(service, "spec.ports"), p => Str(p, "name") == Str(endpoint, "port"));
                Assert.Equal("/metrics", Str(endpoint, "path"));
                if (Component(sm) == "gateway") Assert.Equal("management", Str(endpoint, "port"));
            }
            Assert.Equal([Scenario.Namespace], (At(sm, "spec.namespaceSelector.matchNames") as JsonArray)!.Select(n => n!.ToString()));
        }
        foreach (var pm in r.OfKind("PodMonitor"))
        {
            var selector = StringMap(At(pm, "spec.selector.matchLabels"));
            var workload = Assert.Single(workloads, w => Selects(selector, PodLabels(w)));
            foreach (var endpoint in Arr(pm, "spec.podMetricsEndpoints"))
            {
                Assert.Contains(Arr(PodSpec(workload), "containers"), c => Arr(c, "ports").Any(p => Str(p, "name") == Str(endpoint, "port")));
                if (Component(pm) == "gateway") Assert.Equal("management", Str(endpoint, "port"));
            }
        }
        // Topology spread and anti-affinity count the workload's own pods.
        foreach (var w in workloads)
        {
            var pod = PodSpec(w);
            var selectors = Arr(pod, "topologySpreadConstraints").Select(t => At(t, "labelSelector.matchLabels"))
                .Concat(Arr(pod, "affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution").Select(t => At(t, "labelSelector.matchLabels")))
                .Concat(Arr(pod, "affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution").Select(t => At(t, "podAffinityTerm.labelSelector.matchLabels")));
            foreach (var selector in selectors)
            {
                var selected = workloads.Where(o => Selects(StringMap(selector), PodLabels(o))).ToList();
                Assert.True(selected.Count == 1 && selected[0] == w, $"{Name(w)}: a spread/anti-affinity selector selects {string.Join(", ", selected.Select(Name))}.");
            }
        }
        // Every component that serves /metrics is scraped once a monitor kind is on.
        foreach (var kind in new[] { "ServiceMonitor", "PodMonitor" })
            if (r.OfKind(kind).Any())
                Assert.Equal(r.Silos.Count() + 1, r.OfKind(kind).Count());
    }

    [Theory]
    [MemberData(nameof(Scenario.Names), MemberType = typeof(Scenario))]
    public async Task Silos_get_their_roles_gpus_ports_and_probes_from_the_chart(string scenario)
    {
        var r = await Helm.RenderAsync(scenario);
        var silos = r.Silos.ToList();
        Assert.NotEmpty(silos);
        var roles = new HashSet<string>(StringComparer.Ordinal);
        foreach (var silo in silos)
        {
            var c = Container(silo, "silo");
            var siloRoles = EnvValue(c, "Silo__Roles").Split(',');
            Assert.All(siloRoles, role => Assert.Contains(role, new[] { "vision", "decoder" }));
            Assert.Equal(string.Join(',', siloRoles), StringMap(At(silo, "metadata.annotations"))["xgenmm/roles"]);
            roles.UnionWith(siloRoles);

            // GPUs: requested and limited alike, and Silo:Gpus names exactly the devices the device plugin exposes (0..n-1).
            int gpus = GpuCount(c, "limits");
            Assert.Equal(gpus, GpuCount(c, "requests"));
            string expectedDevices = string.Join(',', Enumerable.Range(0, gpus).Select(i => i.ToString(CultureInfo.InvariantCulture)));
            Assert.Equal(expectedDevices, EnvValue(c, "Silo__Gpus"));
            if (gpus > 0)
                Assert.Contains(Arr(PodSpec(silo), "tolerations"), t => Str(t, "key") == GpuResource);
            if (siloRoles is ["vision"]) Assert.True(gpus <= 1, $"{Name(silo)}: a vision silo uses one device.");

            // Ports: the container ports are the ones the silo is told to listen on.
            Assert.Equal(int.Parse(EnvValue(c, "Silo__HttpPort"), CultureInfo.InvariantCulture), ContainerPort(c, "http"));
            Assert.Equal(int.Parse(EnvValue(c, "Cluster__SiloPort"), CultureInfo.InvariantCulture), ContainerPort(c, "orleans-silo"));
            Assert.Equal(int.Parse(EnvValue(c, "Cluster__GatewayPort"), CultureInfo.InvariantCulture), ContainerPort(c, "orleans-gw"));
            Assert.Equal("status.podIP", Str(Env(c)["Cluster__AdvertisedIP"], "valueFrom.fieldRef.fieldPath"));
            Assert.Equal("metadata.name", Str(Env(c)["Cluster__SiloName"], "valueFrom.fieldRef.fieldPath"));
            AssertProbes(c);
            // The silo binds loopback unless told otherwise; in a pod the kubelet and Prometheus come to the pod IP.
            Assert.Equal("0.0.0.0", EnvValue(c, "Silo__HttpAddress"));
            Assert.Contains(EnvValue(c, "Model__DType"), new[] { "float32", "float16", "bfloat16" });
            Assert.Contains(EnvValue(c, "Model__WeightFormat"), new[] { "auto", "f32", "bf16", "int8", "torch" });
        }
        Assert.Superset(new HashSet<string>(["vision", "decoder"]), roles);
    }

    [Theory]
    [MemberData(nameof(Scenario.Names), MemberType = typeof(Scenario))]
    public async Task Termination_grace_covers_prestop_and_drain(string scenario)
    {
        var r = await Helm.RenderAsync(scenario);
        foreach (var silo in r.Silos)
        {
            var c = Container(silo, "silo");
            int preStop = PreStopSleep(c);
            int drain = int.Parse(EnvValue(c, "Silo__DrainTimeoutSeconds"), CultureInfo.InvariantCulture);
            int grace = Int(PodSpec(silo), "terminationGracePeriodSeconds") ?? 30;
            Assert.True(preStop > 0, $"{Name(silo)} has no preStop pause.");
            Assert.True(grace > preStop + drain, $"{Name(silo)}: terminationGracePeriodSeconds {grace} must exceed preStop {preStop} + drain {drain}.");
            Assert.Equal("/readyz", Str(c, "readinessProbe.httpGet.path"));
        }
        var gateway = Container(r.Gateway, "gateway");
        int gatewayGrace = Int(PodSpec(r.Gateway), "terminationGracePeriodSeconds") ?? 30;
        Assert.True(gatewayGrace > PreStopSleep(gateway) + 30, $"Gateway grace {gatewayGrace} must exceed its preStop + .NET's 30 s shutdown.");
        Assert.True(PreStopSleep(gateway) > 0);
    }

    [Theory]
    [MemberData(nameof(Scenario.Names), MemberType = typeof(Scenario))]
    public async Task The_gateway_is_a_cluster_client_on_its_configured_port_behind_its_service(string scenario)
    {
        var r = await Helm.RenderAsync(scenario);
        var c = Container(r.Gateway, "gateway");
        Assert.Equal("Cluster", EnvValue(c, "Gateway__Mode"));
        Assert.Equal(int.Parse(EnvValue(c, "ASPNETCORE_HTTP_PORTS"), CultureInfo.InvariantCulture), ContainerPort(c, "http"));
        // Metrics and probes on their own port, which the Ingress never routes (below).
        Assert.Equal(int.Parse(EnvValue(c, "Management__Port"), CultureInfo.InvariantCulture), ContainerPort(c, "management"));
        Assert.NotEqual(ContainerPort(c, "http"), ContainerPort(c, "management"));
        Assert.Equal("0.0.0.0", EnvValue(c, "Management__Address"));
        AssertProbes(c, "management");
        Assert.False(string.IsNullOrEmpty(EnvValue(c, "Gateway__ModelId")));

        // Tenants: the file the gateway reads is the key of the mounted Secret.
        string tenantsFile = EnvValue(c, "Tenants__File");
        var mount = Arr(c, "volumeMounts").Single(m => tenantsFile.StartsWith(Str(m, "mountPath") + "/", StringComparison.Ordinal));
        Assert.Equal("true", Str(mount, "readOnly"));
        var volume = Arr(PodSpec(r.Gateway), "volumes").Single(v => Str(v, "name") == Str(mount, "name"));
        var item = Assert.Single(Arr(volume, "secret.items"));
        Assert.Equal(Path.GetFileName(tenantsFile), Str(item, "path"));
        string secretName = Str(volume, "secret.secretName")!;
        if (r.Find("Secret", secretName) is { } secret)
            Assert.Contains(Str(item, "key")!, StringMap(At(secret, "stringData")).Keys.Concat(StringMap(At(secret, "data")).Keys));
        else
            Assert.Equal("my-tenants", secretName); // the scenario that brings its own Secret

        // The Service and Ingress reach the gateway's http port; SignalR gets sticky sessions and long timeouts.
        var service = r.Get("Service", Name(r.Gateway));
        Assert.Equal("http", Str(service, "spec.ports.0.targetPort"));
        Assert.Contains(Arr(service, "spec.ports"), p => Str(p, "name") == "management" && Str(p, "targetPort") == "management");
        foreach (var ingress in r.OfKind("Ingress"))
        {
            var backend = Obj(ingress, "spec.rules.0.http.paths.0.backend.service");
            Assert.Equal(Name(service), Str(backend, "name"));
            Assert.Contains(Arr(service, "spec.ports"), p => Str(p, "name") == Str(backend, "port.name"));
            // Every path of every rule reaches the public port only.
            foreach (var rule in Arr(ingress, "spec.rules"))
                foreach (var path in Arr(rule, "http.paths"))
                    Assert.Equal("http", Str(path, "backend.service.port.name"));
            Assert.Null(At(ingress, "spec.defaultBackend"));
            var annotations = StringMap(At(ingress, "metadata.annotations"));
            Assert.Equal("cookie", annotations["nginx.ingress.kubernetes.io/affinity"]);
            Assert.True(int.Parse(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"], CultureInfo.InvariantCulture) >= 3600);
            Assert.Equal("off", annotations["nginx.ingress.kubernetes.io/proxy-buffering"]);
        }
        if (r.OfKind("Ingress").Any() is false && Str(service, "spec.type") != "LoadBalancer")
            Assert.Equal("ClientIP", Str(service, "spec.sessionAffinity"));
    }

    [Theory]
    [MemberData(nameof(Scenario.Names), MemberType = typeof(Scenario))]
    public async Task Every_orleans_member_joins_the_same_cluster_through_the_same_membership_store(string scenario)
    {
        var r = await Helm.RenderAsync(scenario);
        var members = r.Silos.Select(s => Container(s, "silo")).Append(Container(r.Gateway, "gateway")).ToList();
        foreach (var key in new[] { "Cluster__ClusterId", "Cluster__ServiceId", "Cluster__Clustering", "Cluster__RedisConnectionString" })
            Assert.Single(members.Select(m => Env(m)[key].ToJsonString()).Distinct(StringComparer.Ordinal));
        var first = members[0];
        Assert.Equal("Redis", EnvValue(first, "Cluster__Clustering"));
        // Traces: every member exports to the same collector, or none does.
        Assert.Single(members.Select(m => Env(m).TryGetValue("Telemetry__OtlpEndpoint", out var e) ? Str(e, "value") : null).Distinct());
        if (scenario == "disaggregated") Assert.StartsWith("http://", EnvValue(first, "Telemetry__OtlpEndpoint"), StringComparison.Ordinal);

        var redis = r.OfKind("StatefulSet").SingleOrDefault(s => Component(s) == "redis");
        if (redis is not null)
        {
            // Bundled: host and port of the connection string are the Redis Service; the password is the one Redis requires.
            string connection = EnvValue(first, "Cluster__RedisConnectionString");
            string[] endpoint = connection.Split(',')[0].Split(':');
            var service = r.Get("Service", endpoint[0]);
            Assert.Equal(int.Parse(endpoint[1], CultureInfo.InvariantCulture), Int(service, "spec.ports.0.port"));
            Assert.Contains("password=$(REDIS_PASSWORD)", connection, StringComparison.Ordinal);
            var names = Env(first).Keys.ToList();
            Assert.True(names.IndexOf("REDIS_PASSWORD") < names.IndexOf("Cluster__RedisConnectionString"), "$(REDIS_PASSWORD) expands only from a variable defined before it.");
            var memberSecret = Obj(Env(first)["REDIS_PASSWORD"], "valueFrom.secretKeyRef");
            var redisContainer = Container(redis, "redis");
            Assert.Equal(memberSecret.ToJsonString(), Obj(Env(redisContainer)["REDIS_PASSWORD"], "valueFrom.secretKeyRef").ToJsonString());
            Assert.Contains("$(REDIS_PASSWORD)", (At(redisContainer, "args") as JsonArray)!.Select(a => a!.ToString()));
            if (r.Find("Secret", Str(memberSecret, "name")!) is { } secret)
                Assert.NotNull(At(secret, $"data.{Str(memberSecret, "key")}"));
            bool persistent = At(redis, "spec.volumeClaimTemplates") is JsonArray { Count: > 0 };
            Assert.Equal(scenario != "hostpath-cache-cpu-silos-existing-tenants", persistent);
        }
        else
        {
            // External: every member reads the connection string from the same Secret key.
            var reference = Obj(Env(first)["Cluster__RedisConnectionString"], "valueFrom.secretKeyRef");
            string secretName = Str(reference, "name")!;
            if (r.Find("Secret", secretName) is { } secret)
                Assert.Contains("password=", Str(secret, $"stringData.{Str(reference, "key")}"), StringComparison.Ordinal);
            else
                Assert.Equal("xgenmm-redis", secretName); // disaggregated.yaml names its own Secret
        }
    }

    [Theory]
    [MemberData(nameof(Scenario.Names), MemberType = typeof(Scenario))]
    public async Task Every_checkpoint_consumer_sees_the_same_model_directory(string scenario)
    {
        var r = await Helm.RenderAsync(scenario);
        var consumers = r.Silos.Select(s => (Workload: s, Container: Container(s, "silo")))
            .Append((Workload: r.Gateway, Container: Container(r.Gateway, "gateway"))).ToList();
        Assert.Single(consumers.Select(c => EnvValue(c.Container, "Model__Path")).Distinct(StringComparer.Ordinal));
        string modelPath = EnvValue(consumers[0].Container, "Model__Path");
        foreach (var (workload, container) in consumers)
        {
            if (modelPath.Length == 0) continue; // the image's embedded model
            var mount = Arr(container, "volumeMounts").Single(m => Str(m, "name") == "model");
            Assert.StartsWith(Str(mount, "mountPath")!, modelPath, StringComparison.Ordinal);
            Assert.Equal("true", Str(mount, "readOnly"));
            var volume = Arr(PodSpec(workload), "volumes").Single(v => Str(v, "name") == "model");
            if (At(volume, "persistentVolumeClaim") is { } claim && r.Find("PersistentVolumeClaim", Str(claim, "claimName")!) is null)
                Assert.Contains(Str(claim, "claimName"), new[] { "xgenmm-models" }); // a claim the scenario brings

            var download = Arr(PodSpec(workload), "initContainers").SingleOrDefault(i => Str(i, "name") == "model-download");
            if (download is null) continue;
            // The server's own image in its download mode: the same binary that reads the files fetches them.
            Assert.Equal(Str(container, "image"), Str(download, "image"));
            Assert.Contains("--download-model", (At(download, "args") as JsonArray)?.Select(a => a!.ToString()) ?? []);
            // The download lands where the server reads, on the same volume, with the token from its Secret.
            Assert.Equal(EnvValue(container, "Model__Path"), EnvValue(download, "Model__Path"));
            Assert.Contains(Arr(download, "volumeMounts"), m => Str(m, "name") == "model" && Str(m, "mountPath") == Str(mount, "mountPath") && Str(m, "readOnly") != "true");
            Assert.NotEmpty(EnvValue(download, "Model__HuggingFace__Repo"));
            Assert.NotEmpty(EnvValue(download, "Model__HuggingFace__Revision"));
            var files = EnvValue(download, "Model__HuggingFace__Files").Split(',', StringSplitOptions.TrimEntries);
            Assert.Contains("*.json", files);
            // The gateway only tokenizes: tens of GB of weights would be fetched for nothing.
            if (workload == r.Gateway) Assert.DoesNotContain(files, f => f.Contains("safetensors", StringComparison.Ordinal));
            else Assert.Contains("*.safetensors", files);
            // Only the download step holds the token; the server never needs it.
            Assert.False(Env(container).ContainsKey("HF_TOKEN"), $"{Name(workload)}'s server container gets the hub token.");
            if (SetsTokenSecret(Scenario.Named(scenario)))
            {
                var token = Env(download)["HF_TOKEN"];
                Assert.Equal("hf-token", Str(token, "valueFrom.secretKeyRef.name"));
                Assert.Equal("token", Str(token, "valueFrom.secretKeyRef.key"));
            }
            else
                Assert.False(Env(download).ContainsKey("HF_TOKEN"), "HF_TOKEN without model.huggingface.tokenSecret");
            // Cached across restarts: a claim, a node directory, or at least the pod's own emptyDir.
            Assert.True(At(volume, "persistentVolumeClaim") is not null || At(volume, "hostPath") is not null || At(volume, "emptyDir") is not null);
        }
    }

    private static bool SetsTokenSecret(Scenario scenario) =>
        scenario.ValuesFiles.Select(f => Repo.ReadAllText("helm", "xgenmm", f)).Append(scenario.InlineValues)
            .Any(v => v.Contains("tokenSecret", StringComparison.Ordinal));

    [Theory]
    [MemberData(nameof(Scenario.Names), MemberType = typeof(Scenario))]
    public async Task Environment_variables_are_keys_of_the_configuration_contract(string scenario)
    {
        var r = await Helm.RenderAsync(scenario);
        // Our own variables (Section__Key and ASPNETCORE_*) must be documented; helpers of the chart are listed here.
        string[] chartHelpers = ["REDIS_PASSWORD", "REDISCLI_AUTH", "HOME", "HF_TOKEN"];
        foreach (var w in r.Workloads)
            foreach (var c in AllContainers(w))
            {
                var names = Arr(c, "env").Select(e => Str(e, "name")!).ToList();
                Assert.True(names.Count == names.Distinct(StringComparer.Ordinal).Count(), $"{Name(w)}/{Str(c, "name")} sets a variable twice: {string.Join(", ", names)}");
                foreach (var name in names.Where(n => !chartHelpers.Contains(n)))
                    Assert.True(Contract.IsDocumented(name), $"{Name(w)}/{Str(c, "name")} sets {name}, which docs/configuration.md does not document.");
            }
    }

    [Theory]
    [MemberData(nameof(Scenario.Names), MemberType = typeof(Scenario))]
    public async Task Pods_run_as_non_root_on_a_read_only_root_filesystem(string scenario)
    {
        var r = await Helm.RenderAsync(scenario);
        foreach (var w in r.Workloads)
        {
            var pod = PodSpec(w);
            Assert.Equal("true", Str(pod, "securityContext.runAsNonRoot"));
            Assert.Equal("false", Str(pod, "automountServiceAccountToken"));
            Assert.Equal("RuntimeDefault", Str(pod, "securityContext.seccompProfile.type"));
            foreach (var c in AllContainers(w))
            {
                Assert.Equal("true", Str(c, "securityContext.readOnlyRootFilesystem"));
                Assert.Equal("false", Str(c, "securityContext.allowPrivilegeEscalation"));
                Assert.Equal("[\"ALL\"]", At(c, "securityContext.capabilities.drop")?.ToJsonString());
                Assert.Contains(Arr(c, "volumeMounts"), m => Str(m, "mountPath") is "/tmp" or "/data");
            }
        }
        // The images' user (deploy/docker) is the pods' user.
        foreach (var w in r.OfKind("Deployment"))
            Assert.Equal(1654, Int(PodSpec(w), "securityContext.runAsUser"));
    }

    [Theory]
    [MemberData(nameof(Scenario.Names), MemberType = typeof(Scenario))]
    public async Task Deployments_are_consistent_beyond_what_the_schema_checks(string scenario)
    {
        var r = await Helm.RenderAsync(scenario);
        foreach (var d in r.OfKind("Deployment"))
        {
            string? type = Str(d, "spec.strategy.type");
            if (type == "Recreate") Assert.Null(At(d, "spec.strategy.rollingUpdate"));
            foreach (var c in AllContainers(d))
            {
                var ports = Arr(c, "ports").Select(p => Str(p, "name")).ToList();
                Assert.Equal(ports.Count, ports.Distinct(StringComparer.Ordinal).Count());
                Assert.All(ports, p => Assert.True(p!.Length <= 15, $"port name '{p}' is longer than 15 characters"));
                foreach (var probe in new[] { "startupProbe", "livenessProbe", "readinessProbe" })
                    if (Str(c, $"{probe}.httpGet.port") is { } port)
                        Assert.Contains(port, ports);
                foreach (var mount in Arr(c, "volumeMounts"))
                    Assert.Contains(Arr(PodSpec(d), "volumes"), v => Str(v, "name") == Str(mount, "name"));
            }
            // Scrape hints (for Prometheus without the operator) point at the port that serves /metrics: the gateway's
            // management port (its public port answers 404 there), a silo's http port.
            var annotations = StringMap(At(d, "spec.template.metadata.annotations"));
            if (annotations.TryGetValue("prometheus.io/port", out var scrapePort))
            {
                string metricsPort = Component(d) == "gateway" ? "management" : "http";
                Assert.Equal(ContainerPort(Arr(PodSpec(d), "containers").First(), metricsPort).ToString(CultureInfo.InvariantCulture), scrapePort);
                Assert.Equal("/metrics", annotations["prometheus.io/path"]);
            }
            Assert.Equal(scenario != "hostpath-cache-cpu-silos-existing-tenants", annotations.ContainsKey("prometheus.io/scrape"));
            // An autoscaled Deployment leaves replicas to its autoscaler (helm upgrade would reset it otherwise).
            bool autoscaled = r.OfKind("ScaledObject").Concat(r.OfKind("HorizontalPodAutoscaler")).Any(a => Str(a, "spec.scaleTargetRef.name") == Name(d));
            Assert.Equal(autoscaled, At(d, "spec.replicas") is null);
        }
    }

    internal static void AssertProbes(JsonObject container, string port = "http")
    {
        Assert.Equal("/healthz", Str(container, "livenessProbe.httpGet.path"));
        Assert.Equal("/readyz", Str(container, "readinessProbe.httpGet.path"));
        Assert.Equal("/healthz", Str(container, "startupProbe.httpGet.path"));
        Assert.Equal(port, Str(container, "readinessProbe.httpGet.port"));
        Assert.Equal(port, Str(container, "livenessProbe.httpGet.port"));
        Assert.Equal(port, Str(container, "startupProbe.httpGet.port"));
    }

    private static int GpuCount(JsonObject container, string section) =>
        Obj(container, $"resources.{section}")[GpuResource] is { } v ? int.Parse(v.ToString(), CultureInfo.InvariantCulture) : 0;

    private static string Fmt(IReadOnlyDictionary<string, string> labels) => string.Join(",", labels.Select(l => $"{l.Key}={l.Value}"));
}
