using System.Diagnostics;
using System.Text.Json;

namespace XGenMM.Architecture.Tests;

/// <summary>
/// The gateway's restore graph and its publish output carry no libtorch: what `dotnet list package
/// --include-transitive` reads and what its container image copies. Reads the build of the solution that ran before
/// the tests (./test.sh builds it in Release).
/// </summary>
public sealed class TorchFreeGatewayTests
{
#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

    [Fact]
    public void The_gateways_transitive_packages_have_no_torch()
    {
        string assets = Path.Combine(Path.GetDirectoryName(ProjectGraph.ProjectFile("XGenMM.Gateway"))!, "obj", "project.assets.json");
        using var json = JsonDocument.Parse(File.ReadAllText(assets));
        var libraries = json.RootElement.GetProperty("libraries").EnumerateObject().Select(p => p.Name).ToList();
        Assert.Contains(libraries, l => l.StartsWith("Microsoft.Orleans.Client/", StringComparison.Ordinal));
        Assert.Contains(libraries, l => l.StartsWith("XGenMM.Model.Core/", StringComparison.Ordinal));
        Assert.DoesNotContain(libraries, l => l.Contains("torch", StringComparison.OrdinalIgnoreCase));
        Assert.DoesNotContain(libraries, l => l.StartsWith("XGenMM.Model/", StringComparison.Ordinal) || l.StartsWith("XGenMM.Engine/", StringComparison.Ordinal)
            || l.StartsWith("XGenMM.Cluster/", StringComparison.Ordinal));
    }

    [Fact(Timeout = 300_000)]
    public async Task The_gateways_publish_output_has_no_libtorch()
    {
        string output = Path.Combine(Path.GetTempPath(), "xgenmm-gateway-publish-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var start = new ProcessStartInfo("dotnet", ["publish", ProjectGraph.ProjectFile("XGenMM.Gateway"), "-c", Configuration, "--no-build", "-o", output, "--nologo", "-v", "q"])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                WorkingDirectory = ProjectGraph.RepoRoot,
            };
            using var process = Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
            var stderr = process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
            await process.WaitForExitAsync(TestContext.Current.CancellationToken);
            Assert.True(process.ExitCode == 0, $"dotnet publish failed: {await stdout}{await stderr}");

            var files = Directory.EnumerateFiles(output, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(output, f)).ToList();
            Assert.Contains("XGenMM.Gateway.dll", files);
            Assert.Contains("XGenMM.Model.Core.dll", files);
            Assert.Contains(files, f => f.EndsWith("signalr.min.js", StringComparison.Ordinal));
            Assert.DoesNotContain(files, f => Path.GetFileName(f).Contains("torch", StringComparison.OrdinalIgnoreCase));
            Assert.DoesNotContain("XGenMM.Model.dll", files);
            Assert.DoesNotContain("XGenMM.Engine.dll", files);
            Assert.DoesNotContain("XGenMM.Cluster.dll", files);
        }
        finally
        {
            if (Directory.Exists(output)) Directory.Delete(output, recursive: true);
        }
    }
}
