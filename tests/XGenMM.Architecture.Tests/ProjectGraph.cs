using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace XGenMM.Architecture.Tests;

/// <summary>The repository's projects and their <c>ProjectReference</c>s, read from the .csproj files.</summary>
internal static partial class ProjectGraph
{
    public static string RepoRoot { get; } = FindRoot();

    /// <summary>Every project under src/, bench/ and loadtest/, by name, with the names of the projects it references.</summary>
    public static IReadOnlyDictionary<string, IReadOnlySet<string>> Code { get; } = ReadCode();

    /// <summary>The graph drawn in docs/architecture.md: node labels name projects (without "XGenMM."), edges read
    /// "A --> B" as "A references B".</summary>
    public static IReadOnlyDictionary<string, IReadOnlySet<string>> Documented { get; } = ReadDocumented();

    public static IReadOnlySet<string> Reachable(IReadOnlyDictionary<string, IReadOnlySet<string>> graph, string from)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var stack = new Stack<string>(graph.TryGetValue(from, out var direct) ? direct : []);
        while (stack.TryPop(out var next))
            if (seen.Add(next) && graph.TryGetValue(next, out var more))
                foreach (var m in more) stack.Push(m);
        return seen;
    }

    public static string ProjectFile(string name) =>
        Directory.EnumerateFiles(RepoRoot, name + ".csproj", SearchOption.AllDirectories).Single(f => !f.Contains("/obj/", StringComparison.Ordinal));

    private static Dictionary<string, IReadOnlySet<string>> ReadCode()
    {
        var graph = new Dictionary<string, IReadOnlySet<string>>(StringComparer.Ordinal);
        foreach (var folder in new[] { "src", "bench", "loadtest" })
        {
            foreach (var file in Directory.EnumerateFiles(Path.Combine(RepoRoot, folder), "*.csproj", SearchOption.AllDirectories))
            {
                if (file.Contains("/node_modules/", StringComparison.Ordinal)) continue;
                var references = XDocument.Load(file).Descendants("ProjectReference")
                    .Select(r => Path.GetFileNameWithoutExtension(r.Attribute("Include")!.Value.Replace('\\', '/')))
                    .ToHashSet(StringComparer.Ordinal);
                graph[Path.GetFileNameWithoutExtension(file)] = references;
            }
        }
        return graph;
    }

    private static Dictionary<string, IReadOnlySet<string>> ReadDocumented()
    {
        string doc = File.ReadAllText(Path.Combine(RepoRoot, "docs", "architecture.md"));
        var block = MermaidBlock().Match(doc);
        if (!block.Success) throw new InvalidDataException("docs/architecture.md has no ```mermaid block.");
        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (Match node in NodeLabel().Matches(block.Value))
            names[node.Groups["id"].Value] = "XGenMM." + node.Groups["name"].Value.Trim();
        var graph = names.Values.ToDictionary(n => n, _ => (IReadOnlySet<string>)new HashSet<string>(StringComparer.Ordinal), StringComparer.Ordinal);
        foreach (Match edge in Edge().Matches(block.Value))
        {
            string from = names[edge.Groups["from"].Value], to = names[edge.Groups["to"].Value];
            ((HashSet<string>)graph[from]).Add(to);
        }
        return graph;
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "XGenMM.Cluster.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("The repository root (XGenMM.Cluster.sln) was not found above " + AppContext.BaseDirectory);
    }

    [GeneratedRegex("```mermaid\\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex MermaidBlock();

    /// <summary><c>Id["Name&lt;br/&gt;more"]</c> or <c>Id["Name (more)"]</c>: the label's first words name the project.</summary>
    [GeneratedRegex("(?<id>\\w+)\\[\"(?<name>[\\w.]+)")]
    private static partial Regex NodeLabel();

    [GeneratedRegex("^\\s*(?<from>\\w+)(\\[\"[^\"]*\"\\])?\\s*-->\\s*(?<to>\\w+)\\s*$", RegexOptions.Multiline)]
    private static partial Regex Edge();
}
