using System.Text.RegularExpressions;
using System.Xml.Linq;
using XGenMM.Deploy.Tests.Infrastructure;
using static XGenMM.Deploy.Tests.Infrastructure.Rendered;

namespace XGenMM.Deploy.Tests;

/// <summary>
/// The Dockerfiles, read as text (no container engine runs here): the CUDA build of the silo, multi-stage builds,
/// non-root users, health checks, ports that match the chart, every project of the build copied for restore, and no
/// checkpoint in the build context.
/// </summary>
public sealed partial class ImageTests
{
    public static TheoryData<string, string> Images() => new()
    {
        { "silo.Dockerfile", "src/XGenMM.Silo/XGenMM.Silo.csproj" },
        { "gateway.Dockerfile", "src/XGenMM.Gateway/XGenMM.Gateway.csproj" },
    };

    [Theory]
    [MemberData(nameof(Images))]
    public void Images_are_multi_stage_non_root_and_health_checked(string dockerfile, string project)
    {
        var lines = Instructions(dockerfile);
        Assert.True(lines.Count(l => l.StartsWith("FROM ", StringComparison.Ordinal)) >= 2, "multi-stage: a build stage and a runtime stage");
        Assert.Contains(lines, l => l.StartsWith("RUN dotnet publish " + project, StringComparison.Ordinal));
        Assert.Equal("USER 1654:1654", lines.Last(l => l.StartsWith("USER ", StringComparison.Ordinal)));
        var health = Assert.Single(lines, l => l.StartsWith("HEALTHCHECK ", StringComparison.Ordinal));
        Assert.Contains("/healthz", health, StringComparison.Ordinal);
        string entry = lines.Single(l => l.StartsWith("ENTRYPOINT ", StringComparison.Ordinal));
        Assert.Contains($"\"{Path.GetFileNameWithoutExtension(project)}.dll\"", entry, StringComparison.Ordinal);
        // The runtime stage needs no SDK: it starts from a runtime image.
        string final = lines.Last(l => l.StartsWith("FROM ", StringComparison.Ordinal));
        Assert.DoesNotContain("sdk", final, StringComparison.OrdinalIgnoreCase);
        // Never a checkpoint: no weights copied, nothing fetched from a model hub.
        foreach (var line in lines)
        {
            Assert.DoesNotMatch(@"\.(safetensors|bin|gguf|pt)\b", line);
            Assert.DoesNotContain("huggingface", line, StringComparison.OrdinalIgnoreCase);
        }
    }

    [Fact]
    public void The_silo_image_is_the_cuda_build_on_a_cuda_runtime_base()
    {
        var lines = Instructions("silo.Dockerfile");
        Assert.Contains(lines, l => l.StartsWith("RUN dotnet restore ", StringComparison.Ordinal) && l.Contains("-p:TorchBackend=cuda", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("RUN dotnet publish ", StringComparison.Ordinal) && l.Contains("-p:TorchBackend=cuda", StringComparison.Ordinal));
        var cudaArg = Assert.Single(lines, l => l.StartsWith("ARG CUDA_IMAGE=", StringComparison.Ordinal));
        Assert.Matches(@"^ARG CUDA_IMAGE=nvidia/cuda:12\.[0-9.]+-(cudnn-)?runtime-", cudaArg);
        Assert.EndsWith("FROM ${CUDA_IMAGE} AS final", lines.Last(l => l.StartsWith("FROM ", StringComparison.Ordinal)), StringComparison.Ordinal);
        // The .NET runtime comes from Microsoft's runtime image, not the SDK.
        Assert.Contains(lines, l => l.StartsWith("COPY --from=dotnet /usr/share/dotnet", StringComparison.Ordinal));
        Assert.Contains(lines, l => Regex.IsMatch(l, @"^FROM mcr\.microsoft\.com/dotnet/aspnet:\S+ AS dotnet$"));
        // The TorchBackend property the build reads exists and selects the CUDA package.
        Assert.Contains("TorchSharp-cuda-linux\" Condition=\"'$(TorchBackend)' == 'cuda'\"", Repo.ReadAllText("src", "XGenMM.Model", "XGenMM.Model.csproj"), StringComparison.Ordinal);
    }

    [Fact]
    public void The_gateway_image_has_no_gpu_build()
    {
        var lines = Instructions("gateway.Dockerfile");
        Assert.DoesNotContain(lines, l => l.Contains("TorchBackend=cuda", StringComparison.Ordinal) || l.Contains("nvidia", StringComparison.OrdinalIgnoreCase));
        Assert.Contains(lines, l => l.Contains("Gateway__Mode=Cluster", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Exposed_ports_are_the_ones_the_chart_wires()
    {
        var r = await Helm.RenderAsync("default");
        var silo = Container(r.Silos.First(), "silo");
        int[] siloPorts = [ContainerPort(silo, "http"), ContainerPort(silo, "orleans-silo"), ContainerPort(silo, "orleans-gw")];
        Assert.Equal(siloPorts, Exposed("silo.Dockerfile"));
        Assert.Equal([ContainerPort(Container(r.Gateway, "gateway"), "http")], Exposed("gateway.Dockerfile"));
        Assert.Contains(Instructions("gateway.Dockerfile"), l => l.Contains($"ASPNETCORE_HTTP_PORTS={siloPorts[0]}", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Images))]
    public void The_restore_layer_copies_every_project_the_image_builds(string dockerfile, string project)
    {
        var lines = Instructions(dockerfile);
        int restore = lines.FindIndex(l => l.StartsWith("RUN dotnet restore " + project, StringComparison.Ordinal));
        Assert.True(restore > 0, $"{dockerfile} restores {project} before copying the sources.");
        var copied = lines.Take(restore).Where(l => l.StartsWith("COPY ", StringComparison.Ordinal))
            .SelectMany(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).SkipLast(1)).ToHashSet(StringComparer.Ordinal);
        foreach (var needed in ProjectClosure(project))
            Assert.True(copied.Contains(needed), $"{dockerfile} does not copy {needed} before `dotnet restore` (a ProjectReference of {project}).");
        foreach (var file in new[] { "global.json", "Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props", "build/" })
            Assert.Contains(file, copied);
    }

    [Fact]
    public void The_build_context_leaves_out_outputs_tools_and_checkpoints()
    {
        var rules = Repo.ReadAllText(".dockerignore").Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        foreach (var pattern in new[] { ".git", ".tools", "**/bin", "**/obj", "**/node_modules", "**/*.safetensors" })
            Assert.Contains(pattern, rules);
        // The one exception is the tiny embedded demo model.
        Assert.Equal(["!models/xgenmm-nano/**"], rules.Where(r => r.StartsWith('!')));
        // What the Dockerfiles copy is not ignored.
        foreach (var kept in new[] { "src", "build", "models", "global.json", "Directory.Build.props" })
            Assert.DoesNotContain(kept, rules);
    }

    private static List<string> Instructions(string dockerfile)
    {
        // Join continuation lines, drop comments and blank lines.
        string text = Repo.ReadAllText("deploy", "docker", dockerfile).Replace("\\\n", " ", StringComparison.Ordinal);
        return text.Split('\n').Select(l => Spaces().Replace(l.Trim(), " ")).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
    }

    private static int[] Exposed(string dockerfile) =>
        Instructions(dockerfile).Single(l => l.StartsWith("EXPOSE ", StringComparison.Ordinal)).Split(' ').Skip(1)
            .Select(p => int.Parse(p, System.Globalization.CultureInfo.InvariantCulture)).ToArray();

    /// <summary>The project and every project it references, transitively, as repository-relative paths.</summary>
    private static SortedSet<string> ProjectClosure(string project)
    {
        var seen = new SortedSet<string>(StringComparer.Ordinal);
        var pending = new Stack<string>([project]);
        while (pending.Count > 0)
        {
            string current = pending.Pop();
            if (!seen.Add(current)) continue;
            string dir = Path.GetDirectoryName(current)!;
            foreach (var reference in XDocument.Load(Repo.File(current.Split('/'))).Descendants("ProjectReference"))
            {
                string full = Path.GetFullPath(Path.Combine(Repo.Root, dir, reference.Attribute("Include")!.Value));
                pending.Push(Path.GetRelativePath(Repo.Root, full).Replace('\\', '/'));
            }
        }
        return seen;
    }

    [GeneratedRegex(@"\s+")]
    private static partial Regex Spaces();
}
