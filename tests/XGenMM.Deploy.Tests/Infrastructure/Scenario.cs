namespace XGenMM.Deploy.Tests.Infrastructure;

/// <summary>One way to install the chart: values files of the chart's own, plus inline values of the test, into a
/// cluster that serves the optional APIs (KEDA, the Prometheus operator) unless <see cref="ApiVersions"/> says otherwise.</summary>
internal sealed record Scenario(string Name, IReadOnlyList<string> ValuesFiles, string InlineValues = "", IReadOnlyList<string>? Apis = null)
{
    public const string Release = "xg";
    public const string Namespace = "serving";

    /// <summary>The optional APIs the chart looks for (helm template --api-versions).</summary>
    public static readonly IReadOnlyList<string> OptionalApis = ["keda.sh/v1alpha1/ScaledObject", "monitoring.coreos.com/v1"];

    /// <summary>The API versions the cluster serves beyond the built-in ones: the optional APIs unless the scenario says.</summary>
    public IReadOnlyList<string> ApiVersions => Apis ?? OptionalApis;

    /// <summary>A plain cluster: no KEDA, no Prometheus operator.</summary>
    public bool Plain => ApiVersions.Count == 0;

    public override string ToString() => Name;

    /// <summary>The chart's defaults, its two example files, and variants that reach the other branches of the templates.</summary>
    public static readonly IReadOnlyList<Scenario> All =
    [
        new("default", []),
        new("single-gpu-node", ["examples/single-gpu-node.yaml"]),
        new("disaggregated", ["examples/disaggregated.yaml"]),
        new("hpa-autoscaling", [], """
            autoscaling: { engine: hpa }
            silos:
              decoder: { gpus: 2, autoscaling: { targetQueuedTokensPerDecoder: 4096 } }
            gateway:
              autoscaling: { targetConnectionsPerPod: 300 }
            """),
        new("pvc-model-external-redis-ingress", [], """
            model:
              source: pvc
              pvc: { claimName: xgenmm-models, path: checkpoints/xgen-mm-v1.5 }
            redis:
              mode: external
              external: { connectionString: "redis.example.com:6380,password=not-a-real-one,ssl=true" }
            gateway:
              ingress: { enabled: true, host: chat.example.com, tls: { enabled: true } }
            monitoring:
              podMonitor: { enabled: true }
            """),
        new("hostpath-cache-cpu-silos-existing-tenants", [], """
            model:
              huggingface:
                tokenSecret: { name: hf-token, key: token }
                cache: { type: hostPath }
            silos:
              vision: { gpus: 0 }
              decoder: { gpus: 0, replicas: 2, autoscaling: { enabled: false } }
            tenants:
              existingSecret: my-tenants
              bootstrap: { enabled: false }
            redis:
              bundled:
                existingSecret: my-redis
                persistence: { enabled: false }
            monitoring: { scrapeAnnotations: false, serviceMonitor: { enabled: true } }
            serviceAccount: { create: false, name: xgenmm-runner }
            """),
        new("no-autoscaling-emptydir-cache", [], """
            model:
              huggingface:
                cache: { type: emptyDir }
            autoscaling: { engine: none }
            gateway:
              autoscaling: { enabled: false }
              pdb: { enabled: false }
              podAntiAffinity: hard
              service: { type: LoadBalancer, sessionAffinity: None }
            silos:
              decoder: { pdb: { enabled: false }, podAntiAffinity: none, terminationGracePeriodSeconds: 400 }
            monitoring:
              dashboard: { enabled: false }
            tenants:
              list:
                - id: acme
                  keySha256: ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
            """),
        // A plain cluster (no KEDA, no Prometheus operator): the defaults, and the disaggregated example (whose KEDA
        // engine and ServiceMonitor switch must fall back to nothing, resp. be forced off here).
        new("plain-default", [], "", []),
        new("plain-disaggregated", ["examples/disaggregated.yaml"], "monitoring: { serviceMonitor: { enabled: auto } }", []),
        new("plain-hpa-autoscaling", [], "autoscaling: { engine: hpa }", []),
    ];

    public static TheoryData<string> Names()
    {
        var data = new TheoryData<string>();
        foreach (var scenario in All) data.Add(scenario.Name);
        return data;
    }

    public static Scenario Named(string name) => All.Single(s => s.Name == name);
}
