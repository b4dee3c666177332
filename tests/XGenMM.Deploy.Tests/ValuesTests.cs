using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using XGenMM.Deploy.Tests.Infrastructure;
using static XGenMM.Deploy.Tests.Infrastructure.Rendered;

namespace XGenMM.Deploy.Tests;

/// <summary>values.schema.json and the templates' own checks refuse bad values at install time and say what is wrong;
/// the defaults agree with the hosts'; tenants' keys are only ever hashed.</summary>
public sealed class ValuesTests
{
    /// <summary>Values that must be refused, and the words the refusal must contain (the path of the value, and why).</summary>
    public static TheoryData<string, string, string[]> BadValues() => new()
    {
        { "replicas as a word", "silos: { decoder: { replicas: two } }", ["/silos/decoder/replicas", "want integer"] },
        { "a misspelt key", "silos: { decoder: { gpu: 2 } }", ["/silos/decoder", "'gpu' not allowed"] },
        { "an unknown role", "silos: { vision: { roles: [vision, encoder] } }", ["/silos/vision/roles/1", "vision", "decoder"] },
        { "port 0", "cluster: { siloPort: 0 }", ["/cluster/siloPort", "minimum"] },
        { "an unknown model source", "model: { source: s3 }", ["/model/source", "huggingface", "pvc", "hostPath"] },
        { "an unsupported dtype", "model: { dtype: int8 }", ["/model/dtype", "bfloat16"] },
        { "an unknown weight format", "model: { weightFormat: q4 }", ["/model/weightFormat", "int8"] },
        { "a PVC model without a claim", "model: { source: pvc }", ["/model/pvc/claimName", "minLength"] },
        { "a relative hostPath", "model: { source: hostPath, hostPath: { path: models/xgen } }", ["/model/hostPath/path"] },
        { "a drain past the silo's limit", "silos: { decoder: { drainTimeoutSeconds: 7200 } }", ["/silos/decoder/drainTimeoutSeconds", "maximum"] },
        { "an API key in clear", "tenants: { list: [ { id: acme, keySha256: [my-secret-key] } ] }", ["/tenants/list/0/keySha256/0", "pattern"] },
        { "an unknown membership store", "redis: { mode: consul }", ["/redis/mode", "bundled", "external"] },
        { "an unknown autoscaler", "autoscaling: { engine: vpa }", ["/autoscaling/engine", "keda", "hpa"] },
        { "scale to zero", "silos: { decoder: { autoscaling: { minReplicas: 0 } } }", ["/silos/decoder/autoscaling/minReplicas", "minimum"] },
        { "a Prometheus address without scheme", "autoscaling: { prometheus: { serverAddress: prometheus:9090 } }", ["/autoscaling/prometheus/serverAddress"] },
        { "an unknown top-level key", "silo_groups: {}", ["'silo_groups' not allowed"] },
        // The Python downloader is gone: its values must fail loudly, not be ignored.
        { "the removed downloader image", "images: { modelDownloader: { repository: my/downloader } }", ["'modelDownloader' not allowed"] },
        { "the removed downloader image override", "model: { huggingface: { image: my/downloader:1 } }", ["/model/huggingface", "'image' not allowed"] },
        { "a hub endpoint without scheme", "model: { huggingface: { endpoint: mirror.example.com } }", ["/model/huggingface/endpoint"] },
        { "a file list in one string", "model: { huggingface: { siloFiles: [\"*.json,*.safetensors\"] } }", ["/model/huggingface/siloFiles/0"] },
        // Checks across values, made by the templates.
        { "a grace period shorter than the drain", "silos: { decoder: { terminationGracePeriodSeconds: 60 } }",
            ["silos.decoder.terminationGracePeriodSeconds (60)", "preStopSleepSeconds + drainTimeoutSeconds (125)"] },
        { "a gateway grace period shorter than its shutdown", "gateway: { terminationGracePeriodSeconds: 20 }", ["gateway.terminationGracePeriodSeconds (20)"] },
        { "two GPUs for a vision silo", "silos: { vision: { gpus: 2 } }", ["silos.vision.gpus is 2", "first device"] },
        { "no silo group", "silos: { vision: { enabled: false }, decoder: { enabled: false } }", ["enable at least one"] },
        { "no decoder role", "silos: { decoder: { enabled: false } }", ["must cover both roles"] },
        { "an external Redis without a connection", "redis: { mode: external }", ["redis.mode is external", "connectionString"] },
        { "no tenant at all", "tenants: { bootstrap: { enabled: false } }", ["no tenant is configured"] },
        { "a tenant listed twice", "tenants: { list: [ { id: a, keySha256: [" + new string('a', 64) + "] }, { id: a, keySha256: [" + new string('b', 64) + "] } ] }", ["'a' is listed twice"] },
        { "an autoscaler with nothing to watch", "silos: { decoder: { autoscaling: { targetWaitingRequestsPerDecoder: 0 } } }", ["silos.decoder.autoscaling is enabled but none of its targets"] },
        { "max below min", "silos: { vision: { autoscaling: { minReplicas: 3, maxReplicas: 2 } } }", ["maxReplicas (2) is below minReplicas (3)"] },
    };

    [Theory]
    [MemberData(nameof(BadValues))]
    public async Task Bad_values_are_refused_with_a_message_that_names_the_value(string what, string values, string[] expected)
    {
        var result = await Helm.TemplateAsync(Scenario.Named("default"), values);
        Assert.True(result.ExitCode != 0, $"{what}: helm template accepted it.");
        foreach (var words in expected)
            Assert.True(result.StdErr.Contains(words, StringComparison.Ordinal), $"{what}: the error does not say '{words}':\n{result.StdErr}");
    }

    [Fact]
    public async Task Chart_defaults_match_the_hosts_defaults_and_limits()
    {
        var values = await ChartValuesAsync();
        Assert.Equal(Contract.SiloDefault("Silo:HttpPort"), values["silo"]!["httpPort"]!.ToString());
        Assert.Equal(Contract.SiloDefault("Cluster:SiloPort"), values["cluster"]!["siloPort"]!.ToString());
        Assert.Equal(Contract.SiloDefault("Cluster:GatewayPort"), values["cluster"]!["gatewayPort"]!.ToString());
        Assert.Equal(Contract.SiloDefault("Cluster:ClusterId"), values["cluster"]!["clusterId"]!.ToString());
        Assert.Equal("8080", values["gateway"]!["port"]!.ToString()); // ASPNETCORE_HTTP_PORTS in docs/configuration.md
        Assert.Equal(Contract.SiloDefault("Model:WeightFormat"), values["model"]!["weightFormat"]!.ToString());
        // The silos' download globs are the host's own default (HubDownloadOptions.Files), so the chart fetches what
        // the loader reads.
        var hubFiles = Regex.Match(Repo.ReadAllText("src", "XGenMM.Model.Hub", "HubDownloadOptions.cs"), @"public string Files \{ get; set; \} = ""(?<files>[^""]+)"";");
        Assert.True(hubFiles.Success, "HubDownloadOptions.Files has no literal default.");
        Assert.Equal(hubFiles.Groups["files"].Value, string.Join(",", values["model"]!["huggingface"]!["siloFiles"]!.AsArray().Select(f => f!.ToString())));

        // The schema's range for the drain is the silo's own [Range] on SiloSettings.DrainTimeoutSeconds.
        var schema = JsonNode.Parse(Repo.ReadAllText("helm", "xgenmm", "values.schema.json"))!;
        var drain = schema["definitions"]!["siloGroup"]!["properties"]!["drainTimeoutSeconds"]!;
        var (min, max) = Contract.SiloSettingsRange("DrainTimeoutSeconds");
        Assert.Equal(min, drain["minimum"]!.GetValue<int>());
        Assert.Equal(max, drain["maximum"]!.GetValue<int>());
    }

    [Fact]
    public async Task The_first_api_key_is_in_its_own_secret_and_only_its_hash_is_in_the_tenants_file()
    {
        var r = await Helm.RenderAsync("default");
        var keySecret = r.OfKind("Secret").Single(s => Name(s).EndsWith("-first-api-key", StringComparison.Ordinal));
        string key = Encoding.UTF8.GetString(Convert.FromBase64String(Str(keySecret, "data.apiKey")!));
        Assert.StartsWith("xg-", key, StringComparison.Ordinal);
        Assert.True(key.Length >= 40, "The generated key is too short to be a secret.");

        var (json, tenants) = TenantsFile(r);
        var bootstrap = tenants.Single(t => t["id"]!.ToString() == "default");
        string hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));
        Assert.Equal([hash], bootstrap["keySha256"]!.AsArray().Select(h => h!.ToString()));
        Assert.DoesNotContain(key, json, StringComparison.Ordinal);
        Assert.Equal(600, bootstrap["limits"]!["requestsPerMinute"]!.GetValue<int>());
    }

    [Fact]
    public async Task Listed_tenants_keep_their_hashes_and_limits()
    {
        var r = await Helm.RenderAsync("disaggregated");
        Assert.DoesNotContain(r.OfKind("Secret"), s => Name(s).EndsWith("-first-api-key", StringComparison.Ordinal));
        var (_, tenants) = TenantsFile(r);
        Assert.Equal(["acme", "globex"], tenants.Select(t => t["id"]!.ToString()));
        foreach (var t in tenants)
            Assert.All(t["keySha256"]!.AsArray(), h => Assert.Matches("^[0-9a-f]{64}$", h!.ToString()));
        Assert.Equal(64, tenants[0]["limits"]!["concurrentStreams"]!.GetValue<int>());
    }

    [Fact]
    public async Task Notes_tell_the_operator_how_to_reach_the_gateway_and_where_the_first_key_is()
    {
        var local = await Helm.DryRunInstallAsync(Scenario.Named("default"));
        Assert.True(local.ExitCode == 0, local.Output);
        string notes = local.StdOut[local.StdOut.IndexOf("NOTES:", StringComparison.Ordinal)..];
        Assert.Contains($"kubectl -n {Scenario.Namespace} port-forward service/xg-xgenmm-gateway", notes, StringComparison.Ordinal);
        Assert.Contains($"get secret xg-xgenmm-first-api-key -o jsonpath='{{.data.apiKey}}' | base64 -d", notes, StringComparison.Ordinal);
        Assert.Contains("\"model\":\"Salesforce/xgen-mm-phi3-mini-instruct-interleave-r-v1.5\"", notes, StringComparison.Ordinal);

        var ingress = await Helm.DryRunInstallAsync(Scenario.Named("disaggregated"));
        Assert.True(ingress.ExitCode == 0, ingress.Output);
        notes = ingress.StdOut[ingress.StdOut.IndexOf("NOTES:", StringComparison.Ordinal)..];
        Assert.Contains("https://chat.example.com/", notes, StringComparison.Ordinal);
        Assert.DoesNotContain("first-api-key", notes, StringComparison.Ordinal);
        Assert.Contains("KEDA", notes, StringComparison.Ordinal);
    }

    private static (string Json, List<JsonObject> Tenants) TenantsFile(Rendered r)
    {
        var volume = Arr(PodSpec(r.Gateway), "volumes").Single(v => Str(v, "name") == "tenants");
        var secret = r.Get("Secret", Str(volume, "secret.secretName")!);
        string json = StringMap(At(secret, "stringData"))[Str(volume, "secret.items.0.key")!];
        return (json, JsonNode.Parse(json)!["tenants"]!.AsArray().Select(t => t!.AsObject()).ToList());
    }

    private static async Task<JsonNode> ChartValuesAsync()
    {
        var result = await Tool.RunAsync("node", [Repo.Validator, "--to-json", Path.Combine(Repo.Chart, "values.yaml")]);
        Assert.True(result.ExitCode == 0, result.StdErr);
        return JsonNode.Parse(result.StdOut)!;
    }
}
