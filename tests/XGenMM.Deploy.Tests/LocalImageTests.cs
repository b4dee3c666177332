using System.Diagnostics;
using XGenMM.Build;
using XGenMM.Deploy.Tests.Infrastructure;
using static XGenMM.Deploy.Tests.Infrastructure.Rendered;

namespace XGenMM.Deploy.Tests;

/// <summary>
/// deploy/images/build-local.sh, run for real (no container is started here; ContainerClusterTests runs them): the
/// images exist under the chart's default names, carry the runtime settings of the registry build, stay within their
/// size budget, are rebuilt only when their inputs change, and the silo image's TorchSharp glue loads on its libstdc++.
/// </summary>
[Collection(LocalImagesDefinition.Name)]
[Trait("Category", "E2E")]
public sealed class LocalImageTests(LocalImages images)
{
    // Measured sizes (podman image inspect .Size): base 269 MB, gateway 322 MB, CPU silo 824 MB (libtorch's CPU build
    // is most of it). The budgets leave room for growth, not for a second runtime or a checkpoint slipping in.
    public static TheoryData<string, long> Budgets() => new()
    {
        { "base", 400_000_000 },
        { "gateway", 500_000_000 },
        { "silo", 1_800_000_000 },
    };

    [Theory(Timeout = 900_000)]
    [MemberData(nameof(Budgets))]
    public async Task Each_image_is_built_under_its_size_budget(string image, long budget)
    {
        string name = image switch { "base" => Podman.BaseImage, "gateway" => Podman.GatewayImage, _ => Podman.SiloImage };
        long size = long.Parse(await Podman.RunAsync("image", "inspect", "--format", "{{.Size}}", name), System.Globalization.CultureInfo.InvariantCulture);
        TestContext.Current.TestOutputHelper?.WriteLine($"{name}: {size / 1e6:F0} MB (build {images.BuildTime.TotalSeconds:F0} s)");
        Assert.InRange(size, 50_000_000, budget);
    }

    [Fact(Timeout = 900_000)]
    public async Task The_images_are_named_as_the_chart_defaults()
    {
        var r = await Helm.RenderAsync("default");
        // The chart names <repository>:<appVersion>; podman keeps a local build under localhost/.
        Assert.Equal("localhost/" + Str(Container(r.Gateway, "gateway"), "image"), Podman.GatewayImage);
        Assert.Equal("localhost/" + Str(Container(r.Silos.First(), "silo"), "image") + "-cpu", Podman.SiloImage);
    }

    public static TheoryData<string, string> Pairs() => new()
    {
        { "gateway.Containerfile", "gateway.Dockerfile" },
        { "silo-cpu.Containerfile", "silo.Dockerfile" },
    };

    [Theory(Timeout = 900_000)]
    [MemberData(nameof(Pairs))]
    public async Task The_built_image_has_the_runtime_settings_of_the_registry_build(string containerfile, string dockerfile)
    {
        var registry = ImageFile.Read("deploy", "docker", dockerfile);
        string image = containerfile.StartsWith("gateway", StringComparison.Ordinal) ? Podman.GatewayImage : Podman.SiloImage;
        var config = JsonNode.Parse(await Podman.RunAsync("image", "inspect", "--format", "{{json .Config}}", image))!.AsObject();

        Assert.Equal(registry.Last("USER"), Str(config, "User"));
        Assert.Equal(registry.Last("WORKDIR"), Str(config, "WorkingDir"));
        Assert.Equal(registry.Last("ENTRYPOINT"), "[" + string.Join(", ", Arr<string>(config, "Entrypoint").Select(e => $"\"{e}\"")) + "]");
        Assert.Equal(registry.Last("EXPOSE").Split(' ').Select(p => p + "/tcp").Order(), Obj(config, "ExposedPorts").Select(p => p.Key).Order());
        var env = Arr<string>(config, "Env").Select(e => e.Split('=', 2)).ToDictionary(e => e[0], e => e[1], StringComparer.Ordinal);
        // The GPU image's NVIDIA settings and its own .NET location are the CUDA base's business, not the CPU image's.
        foreach (var (key, value) in registry.Env.Where(e => !e.Key.StartsWith("NVIDIA_", StringComparison.Ordinal)))
            Assert.True(env.TryGetValue(key, out var actual) && actual == value, $"{image}: ENV {key}={value} expected (as {dockerfile}); has {actual ?? "nothing"}");
        // Docker format: podman keeps the HEALTHCHECK (the OCI format would drop it).
        string health = await Podman.RunAsync("image", "inspect", "--format", "{{json .HealthCheck}}", image);
        Assert.Contains("/healthz", health, StringComparison.Ordinal);
        Assert.Contains(registry.Last("HEALTHCHECK").Split(' ').First(a => a.StartsWith("--start-period=", StringComparison.Ordinal))["--start-period=".Length..].TrimEnd('s'),
            health.Replace("000000000", "", StringComparison.Ordinal), StringComparison.Ordinal);
    }

    [Fact(Timeout = 900_000)]
    public async Task A_second_build_with_unchanged_inputs_rebuilds_nothing()
    {
        string[] all = [Podman.BaseImage, Podman.GatewayImage, Podman.SiloImage, Podman.RedisImage];
        var before = await Task.WhenAll(all.Select(i => Podman.RunAsync("image", "inspect", "--format", "{{.Id}}", i)));
        var clock = Stopwatch.StartNew();
        var again = await Podman.BuildImagesAsync(TimeSpan.FromMinutes(2));
        TestContext.Current.TestOutputHelper?.WriteLine($"warm build: {clock.Elapsed.TotalSeconds:F1} s\n{again.StdOut}");
        Assert.Equal(4, again.StdOut.Split('\n').Count(l => l.Contains("is up to date", StringComparison.Ordinal)));
        Assert.DoesNotContain("debootstrap", again.StdOut, StringComparison.Ordinal);
        Assert.DoesNotContain("dotnet publish", again.StdOut, StringComparison.Ordinal);
        Assert.Equal(before, await Task.WhenAll(all.Select(i => Podman.RunAsync("image", "inspect", "--format", "{{.Id}}", i))));
    }

    [Fact(Timeout = 900_000)]
    public async Task The_silo_image_carries_a_TorchSharp_glue_that_its_libstdcxx_loads()
    {
        // TorchSharp's glue asks for GLIBCXX_3.4.32, which Debian 12's libstdc++ lacks; the build marks that need weak
        // (Directory.Build.targets). The image must carry either the patched glue or a libstdc++ that has the version.
        // Read from the image's own files (podman image mount: no container runs).
        string root = await Podman.RunAsync("image", "mount", Podman.SiloImage);
        try
        {
            string glue = Path.Combine(root, "app", "libLibTorchSharp.so");
            var libstdcxx = new FileInfo(Path.Combine(root, "usr", "lib", "x86_64-linux-gnu", "libstdc++.so.6"));
            string real = Path.Combine(libstdcxx.DirectoryName!, libstdcxx.LinkTarget ?? libstdcxx.Name);
            const string Version = "GLIBCXX_3.4.32";
            bool libstdcxxHasIt = File.ReadAllText(real, System.Text.Encoding.Latin1).Contains(Version + "\0", StringComparison.Ordinal);
            var need = ElfVersionNeeds.Find(File.ReadAllBytes(glue), Version);
            bool weakOrAbsent = need is null || (need.Value.Flags & ElfVersionNeeds.VerFlgWeak) != 0;
            Assert.True(libstdcxxHasIt || weakOrAbsent, $"the image's {Path.GetFileName(real)} lacks {Version} and its libLibTorchSharp.so still requires it (not weakened)");
        }
        finally
        {
            await Podman.TryRunAsync(TimeSpan.FromSeconds(30), "image", "unmount", Podman.SiloImage);
        }
    }

    private static IEnumerable<T> Arr<T>(JsonNode? node, string path) => (At(node, path) as JsonArray ?? []).Select(n => n!.GetValue<T>());
}
