namespace XGenMM.Architecture.Tests;

/// <summary>The project graph of the code is the one docs/architecture.md draws, and it keeps the layering rules.</summary>
public sealed class DependencyGraphTests
{
    private static readonly string[] Hosts = ["XGenMM.Silo", "XGenMM.Gateway", "XGenMM.AppHost"];

    [Fact]
    public void Every_project_reference_is_drawn_in_the_architecture_document_and_every_drawn_edge_exists()
    {
        var code = ProjectGraph.Code;
        var doc = ProjectGraph.Documented;
        Assert.Equal(code.Keys.Order(StringComparer.Ordinal), doc.Keys.Order(StringComparer.Ordinal));
        var undrawn = code.SelectMany(p => p.Value.Where(r => !doc[p.Key].Contains(r)).Select(r => $"{p.Key} -> {r}")).ToList();
        var gone = doc.SelectMany(p => p.Value.Where(r => !code[p.Key].Contains(r)).Select(r => $"{p.Key} -> {r}")).ToList();
        Assert.True(undrawn.Count == 0, "references not in docs/architecture.md (upward or unintended?): " + string.Join(", ", undrawn));
        Assert.True(gone.Count == 0, "edges in docs/architecture.md that the code no longer has: " + string.Join(", ", gone));
    }

    [Fact]
    public void The_graph_has_no_cycle()
    {
        foreach (var project in ProjectGraph.Code.Keys)
            Assert.DoesNotContain(project, ProjectGraph.Reachable(ProjectGraph.Code, project));
    }

    [Fact]
    public void The_gateway_reaches_no_model_engine_or_silo_code()
    {
        var reachable = ProjectGraph.Reachable(ProjectGraph.Code, "XGenMM.Gateway");
        Assert.DoesNotContain("XGenMM.Model", reachable);
        Assert.DoesNotContain("XGenMM.Engine", reachable);
        Assert.DoesNotContain("XGenMM.Cluster", reachable);
        Assert.Contains("XGenMM.Model.Core", reachable);
        Assert.Contains("XGenMM.Cluster.Client", reachable);
    }

    [Fact]
    public void Contracts_reference_no_project_and_hosts_are_referenced_only_by_the_app_host()
    {
        Assert.Empty(ProjectGraph.Code["XGenMM.Cluster.Abstractions"]);
        Assert.Empty(ProjectGraph.Code["XGenMM.ServiceDefaults"]);
        Assert.Empty(ProjectGraph.Code["XGenMM.Model.Core"]);
        foreach (var (project, references) in ProjectGraph.Code)
            foreach (var host in Hosts.Where(references.Contains))
                Assert.True(project == "XGenMM.AppHost" && host == "XGenMM.Gateway", $"{project} references the host {host}");
    }

    [Fact]
    public void The_load_tester_references_no_server_project()
    {
        Assert.All(ProjectGraph.Code["XGenMM.LoadTest"], r => Assert.Equal("XGenMM.Gateway.Contracts", r));
    }

    [Fact]
    public void Model_core_and_service_defaults_carry_no_torch_package()
    {
        foreach (var project in new[] { "XGenMM.Model.Core", "XGenMM.ServiceDefaults", "XGenMM.Cluster.Client", "XGenMM.Cluster.Abstractions", "XGenMM.Gateway" })
        {
            var packages = System.Xml.Linq.XDocument.Load(ProjectGraph.ProjectFile(project)).Descendants("PackageReference")
                .Select(p => p.Attribute("Include")!.Value);
            Assert.DoesNotContain(packages, p => p.Contains("torch", StringComparison.OrdinalIgnoreCase));
        }
    }
}
