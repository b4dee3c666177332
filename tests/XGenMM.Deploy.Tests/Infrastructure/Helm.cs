using System.Collections.Concurrent;

namespace XGenMM.Deploy.Tests.Infrastructure;

/// <summary>Drives the real helm against helm/xgenmm, and the validator over what it renders. Renders are cached per scenario.</summary>
internal static class Helm
{
    private static readonly ConcurrentDictionary<string, Lazy<Task<Rendered>>> Renders = new(StringComparer.Ordinal);
    private static readonly Lazy<string> Scratch = new(() =>
    {
        string dir = Path.Combine(Path.GetTempPath(), $"xgenmm-deploy-tests-{System.Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        return dir;
    });

    /// <summary>helm keeps its caches and configuration in the scratch folder, and never sees a cluster.</summary>
    private static Dictionary<string, string> HelmEnvironment => new(StringComparer.Ordinal)
    {
        ["HELM_CACHE_HOME"] = Path.Combine(Scratch.Value, "helm-cache"),
        ["HELM_CONFIG_HOME"] = Path.Combine(Scratch.Value, "helm-config"),
        ["HELM_DATA_HOME"] = Path.Combine(Scratch.Value, "helm-data"),
        ["KUBECONFIG"] = Path.Combine(Scratch.Value, "no-kubeconfig"),
    };

    public static Task<ToolResult> RunAsync(params IEnumerable<string> arguments) =>
        Tool.RunAsync(Repo.Helm, arguments, HelmEnvironment);

    /// <summary>-f arguments for the scenario's values files, then its inline values and any extra YAML.</summary>
    public static List<string> ValuesArguments(Scenario scenario, string extraValues = "")
    {
        var args = new List<string>();
        foreach (var file in scenario.ValuesFiles) args.AddRange(["-f", Path.Combine(Repo.Chart, file)]);
        foreach (var inline in new[] { scenario.InlineValues, extraValues }.Where(v => !string.IsNullOrWhiteSpace(v)))
        {
            string path = Path.Combine(Scratch.Value, $"values-{Guid.NewGuid():N}.yaml");
            File.WriteAllText(path, inline);
            args.AddRange(["-f", path]);
        }
        return args;
    }

    /// <summary>--api-versions for each optional API the scenario's cluster serves.</summary>
    public static List<string> ApiArguments(Scenario scenario, IReadOnlyList<string>? apiVersions = null) =>
        (apiVersions ?? scenario.ApiVersions).SelectMany(a => new[] { "--api-versions", a }).ToList();

    public static Task<ToolResult> TemplateAsync(Scenario scenario, string extraValues = "", IReadOnlyList<string>? apiVersions = null) =>
        RunAsync(["template", Scenario.Release, Repo.Chart, "--namespace", Scenario.Namespace, .. ApiArguments(scenario, apiVersions), .. ValuesArguments(scenario, extraValues)]);

    public static Task<ToolResult> LintAsync(Scenario scenario) =>
        RunAsync(["lint", Repo.Chart, "--strict", "--namespace", Scenario.Namespace, .. ValuesArguments(scenario)]);

    /// <summary>A client-side dry-run install: prints the manifests and NOTES.txt without a cluster (helm install takes
    /// no --api-versions: it renders as for a plain cluster, whatever the scenario's APIs).</summary>
    public static Task<ToolResult> DryRunInstallAsync(Scenario scenario) =>
        RunAsync(["install", Scenario.Release, Repo.Chart, "--namespace", Scenario.Namespace, "--dry-run=client", .. ValuesArguments(scenario)]);

    /// <summary>The scenario rendered by helm template and checked by the validator (once per test run).</summary>
    public static Task<Rendered> RenderAsync(string scenario) =>
        Renders.GetOrAdd(scenario, name => new Lazy<Task<Rendered>>(() => RenderUncachedAsync(Scenario.Named(name)))).Value;

    private static async Task<Rendered> RenderUncachedAsync(Scenario scenario)
    {
        var template = await TemplateAsync(scenario).ConfigureAwait(false);
        if (template.ExitCode != 0)
            throw new InvalidOperationException($"helm template failed for scenario '{scenario.Name}':\n{template.StdErr}");
        return await ValidateAsync(template.StdOut).ConfigureAwait(false);
    }

    /// <summary>Runs the validator over manifests (YAML, possibly several documents).</summary>
    public static async Task<Rendered> ValidateAsync(string manifests)
    {
        string validator = Repo.Validator;
        string file = Path.Combine(Scratch.Value, $"rendered-{Guid.NewGuid():N}.yaml");
        await File.WriteAllTextAsync(file, manifests).ConfigureAwait(false);
        var result = await Tool.RunAsync("node", [validator, file]).ConfigureAwait(false);
        if (result.ExitCode != 0) throw new InvalidOperationException($"The validator failed ({result.ExitCode}):\n{result.StdErr}");
        var report = JsonNode.Parse(result.StdOut)?.AsObject() ?? throw new InvalidOperationException("The validator printed no JSON.");
        var objects = report["objects"]!.AsArray().Select(o => o!.AsObject()).ToList();
        var problems = report["problems"]!.AsArray()
            .Select(p => $"{p!["source"]} {p["kind"]}/{p["name"]}: {p["message"]}".Trim())
            .ToList();
        return new Rendered(manifests, objects, problems);
    }

}
