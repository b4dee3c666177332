using System.Globalization;
using XGenMM.Deploy.Tests.Infrastructure;
using static XGenMM.Deploy.Tests.Infrastructure.Rendered;

namespace XGenMM.Deploy.Tests;

/// <summary>`helm test`: one chat completion through the gateway Service with a tenant key, from the gateway image.</summary>
public sealed class HelmTestHookTests
{
    [Theory]
    [MemberData(nameof(Scenario.Names), MemberType = typeof(Scenario))]
    public async Task The_test_pod_sends_a_chat_completion_to_the_gateway_service_with_a_tenant_key(string scenario)
    {
        var r = await Helm.RenderAsync(scenario);
        Assert.Empty(r.Problems);
        var tests = r.OfKind("Pod").Where(p => StringMap(At(p, "metadata.annotations")).GetValueOrDefault("helm.sh/hook") == "test").ToList();
        var firstKey = r.OfKind("Secret").SingleOrDefault(s => Name(s).EndsWith("-first-api-key", StringComparison.Ordinal));
        if (firstKey is null)
        {
            // No key in clear (tenants from the operator's Secret, bootstrap off) and none named: no test.
            Assert.Empty(tests);
            return;
        }
        var pod = Assert.Single(tests);
        Assert.Equal("Never", Str(pod, "spec.restartPolicy"));
        var container = Assert.Single(Arr(pod, "spec.containers"));
        // The gateway's own image: no new image to build or pull.
        Assert.Equal(Str(Container(r.Gateway, "gateway"), "image"), Str(container, "image"));
        string command = string.Join(' ', (At(container, "command") as JsonArray)!.Select(c => c!.ToString()));
        var service = r.Get("Service", Name(r.Gateway));
        int port = Arr(service, "spec.ports").Where(p => Str(p, "name") == "http").Select(p => Int(p, "port")).Single()!.Value;
        Assert.Contains($"http://{Name(service)}.{Scenario.Namespace}.svc:{port.ToString(CultureInfo.InvariantCulture)}/v1/chat/completions", command, StringComparison.Ordinal);
        Assert.Contains("\"max_tokens\":8", command, StringComparison.Ordinal);
        Assert.Contains($"\"model\":\"{EnvValue(Container(r.Gateway, "gateway"), "Gateway__ModelId")}\"", command, StringComparison.Ordinal);
        Assert.Contains("Authorization: Bearer $XGENMM_API_KEY", command, StringComparison.Ordinal);
        Assert.Contains("[ \"$code\" = 200 ]", command, StringComparison.Ordinal);
        Assert.Contains("\"choices\"", command, StringComparison.Ordinal);
        var key = Env(container)["XGENMM_API_KEY"];
        Assert.Equal(Name(firstKey), Str(key, "valueFrom.secretKeyRef.name"));
        Assert.True(StringMap(At(firstKey, "data")).ContainsKey(Str(key, "valueFrom.secretKeyRef.key")!) || StringMap(At(firstKey, "stringData")).ContainsKey(Str(key, "valueFrom.secretKeyRef.key")!));
        Assert.Equal("true", Str(container, "securityContext.readOnlyRootFilesystem"));
    }

    [Fact]
    public async Task A_named_key_secret_gives_a_test_where_tenants_come_from_the_operator()
    {
        var template = await Helm.TemplateAsync(Scenario.Named("hostpath-cache-cpu-silos-existing-tenants"),
            "helmTest: { apiKeySecret: { name: smoke-key, key: key } }");
        Assert.True(template.ExitCode == 0, template.StdErr);
        var r = await Helm.ValidateAsync(template.StdOut);
        Assert.Empty(r.Problems);
        var pod = Assert.Single(r.OfKind("Pod"));
        Assert.Equal("smoke-key", Str(Arr(pod, "spec.containers").Single(), "env.0.valueFrom.secretKeyRef.name"));

        var off = await Helm.TemplateAsync(Scenario.Named("default"), "helmTest: { enabled: false }");
        Assert.True(off.ExitCode == 0, off.StdErr);
        Assert.DoesNotContain("helm.sh/hook\": test", off.StdOut, StringComparison.Ordinal);
    }
}
