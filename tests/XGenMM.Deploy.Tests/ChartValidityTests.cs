using XGenMM.Deploy.Tests.Infrastructure;
using static XGenMM.Deploy.Tests.Infrastructure.Rendered;

namespace XGenMM.Deploy.Tests;

/// <summary>helm lint, helm template, and the Kubernetes/KEDA/prometheus-operator schemas over every scenario.</summary>
public sealed class ChartValidityTests
{
    [Theory]
    [MemberData(nameof(Scenario.Names), MemberType = typeof(Scenario))]
    public async Task Helm_lint_passes_in_strict_mode(string scenario)
    {
        var lint = await Helm.LintAsync(Scenario.Named(scenario));
        Assert.True(lint.ExitCode == 0, $"helm lint --strict failed:\n{lint.Output}");
        Assert.Contains("0 chart(s) failed", lint.StdOut, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Scenario.Names), MemberType = typeof(Scenario))]
    public async Task Every_rendered_object_matches_its_schema_strictly(string scenario)
    {
        var rendered = await Helm.RenderAsync(scenario);
        Assert.NotEmpty(rendered.Objects);
        Assert.True(rendered.Problems.Count == 0, $"Schema problems in '{scenario}':\n{string.Join('\n', rendered.Problems)}");
        var names = rendered.Objects.Select(o => $"{Str(o, "kind")}/{Name(o)}").ToList();
        Assert.True(names.Count == names.Distinct(StringComparer.Ordinal).Count(), $"Duplicate objects: {string.Join(", ", names)}");
        foreach (var o in rendered.Objects)
        {
            Assert.True(Name(o).Length is > 0 and <= 63, $"{Str(o, "kind")} name '{Name(o)}' must be 1-63 characters.");
            Assert.Null(Str(o, "metadata.namespace")); // helm install -n places them
        }
    }

    [Fact]
    public async Task The_validator_rejects_unknown_fields_wrong_types_and_unknown_kinds()
    {
        // The validator must not be vacuous: a typo'd field, a string where an integer belongs and a kind without a
        // schema are each reported.
        var rendered = await Helm.ValidateAsync("""
            apiVersion: apps/v1
            kind: Deployment
            metadata: { name: broken }
            spec:
              replicas: "two"
              selector: { matchLabels: { a: b } }
              template:
                metadata: { labels: { a: b } }
                spec:
                  terminationGracePeriodSecond: 30
                  containers: [{ name: c, image: i }]
            ---
            apiVersion: keda.sh/v1alpha1
            kind: ScaledObject
            metadata: { name: typo }
            spec:
              scaleTargetRef: { name: broken }
              triggers: [{ type: prometheus, metadata: { query: "sum(x)", threshold: "1" }, metricTyp: AverageValue }]
            ---
            apiVersion: example.com/v1
            kind: Unknown
            metadata: { name: nobody }
            """);
        Assert.Contains(rendered.Problems, p => p.Contains("replicas must be integer", StringComparison.Ordinal));
        Assert.Contains(rendered.Problems, p => p.Contains("ScaledObject/typo: unknown field /spec/triggers/0/metricTyp", StringComparison.Ordinal));
        Assert.Contains(rendered.Problems, p => p.Contains("no schema for example.com/v1 Unknown", StringComparison.Ordinal));

        var typo = await Helm.ValidateAsync("""
            apiVersion: v1
            kind: Service
            metadata: { name: s }
            spec: { selector: { a: b }, ports: [{ port: 80, targetPort: http }], sesionAffinity: ClientIP }
            """);
        Assert.Equal(["Service/s: unknown field /spec/sesionAffinity"], typo.Problems.Select(p => p.Trim()));
    }
}
