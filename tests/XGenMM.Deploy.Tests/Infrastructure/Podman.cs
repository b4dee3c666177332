namespace XGenMM.Deploy.Tests.Infrastructure;

/// <summary>
/// Debian's podman with the settings this kind of host needs (deploy/images/containers.conf, runc, cgroupfs), as root:
/// deploy/images/build-local.sh builds into root's image store, so the tests read the same one (through `sudo -n` when
/// the tests do not run as root).
/// </summary>
internal static class Podman
{
    public static string ContainersConf => Repo.File("deploy", "images", "containers.conf");

    /// <summary>The tags build-local.sh gives, from the chart's appVersion (the chart's own image tag default).</summary>
    public static string Tag => Repo.ReadAllText("helm", "xgenmm", "Chart.yaml").Split('\n')
        .Single(l => l.StartsWith("appVersion:", StringComparison.Ordinal))["appVersion:".Length..].Trim().Trim('"');

    public static string BaseImage => $"localhost/xgenmm/base:{Tag}";
    public static string GatewayImage => $"localhost/xgenmm/gateway:{Tag}";
    public static string SiloImage => $"localhost/xgenmm/silo:{Tag}-cpu";
    public static string RedisImage => $"localhost/xgenmm/redis:{Tag}-test";

    /// <summary>Runs podman; a non-zero exit throws with podman's own message.</summary>
    public static async Task<string> RunAsync(TimeSpan timeout, params string[] arguments)
    {
        var result = await TryRunAsync(timeout, arguments).ConfigureAwait(false);
        if (result.ExitCode != 0)
            throw new InvalidOperationException($"`podman {string.Join(' ', arguments)}` exited with {result.ExitCode}: {result.StdErr.Trim()} {result.StdOut.Trim()}");
        return result.StdOut.Trim();
    }

    public static Task<string> RunAsync(params string[] arguments) => RunAsync(TimeSpan.FromSeconds(60), arguments);

    public static Task<ToolResult> TryRunAsync(TimeSpan timeout, params string[] arguments)
    {
        RequireInstalled();
        string runc = File.Exists("/usr/sbin/runc") ? "/usr/sbin/runc" : "/usr/bin/runc";
        string[] podman = ["podman", "--runtime", runc, "--cgroup-manager=cgroupfs", .. arguments];
        return Environment.IsPrivilegedProcess
            ? Tool.RunAsync(podman[0], podman[1..], new Dictionary<string, string> { ["CONTAINERS_CONF"] = ContainersConf }, timeout)
            : Tool.RunAsync("sudo", ["-n", "env", $"CONTAINERS_CONF={ContainersConf}", .. podman], timeout: timeout);
    }

    /// <summary>Runs deploy/images/build-local.sh (it rebuilds only what changed).</summary>
    public static async Task<ToolResult> BuildImagesAsync(TimeSpan timeout)
    {
        RequireInstalled();
        string script = Repo.File("deploy", "images", "build-local.sh");
        var result = Environment.IsPrivilegedProcess
            ? await Tool.RunAsync("bash", [script], timeout: timeout).ConfigureAwait(false)
            : await Tool.RunAsync("sudo", ["-n", "--preserve-env=PATH,DOTNET_ROOT", "bash", script], timeout: timeout).ConfigureAwait(false);
        if (result.ExitCode != 0)
            throw new InvalidOperationException($"deploy/images/build-local.sh exited with {result.ExitCode}:\n{result.StdOut}\n{result.StdErr}");
        return result;
    }

    private static void RequireInstalled()
    {
        foreach (var (tool, paths) in new[] { ("podman", new[] { "/usr/bin/podman" }), ("runc", ["/usr/sbin/runc", "/usr/bin/runc"]), ("debootstrap", ["/usr/sbin/debootstrap"]) })
            if (!paths.Any(File.Exists))
                throw new InvalidOperationException($"{tool} is not installed ({string.Join(" or ", paths)} missing): run build/install-test-deps.sh (./test.sh does), which installs podman, runc and debootstrap from Debian.");
        if (!Environment.IsPrivilegedProcess && !File.Exists("/usr/bin/sudo"))
            throw new InvalidOperationException("The container tests need root (debootstrap chroots; images live in root's podman store): run them as root or with passwordless sudo.");
    }
}
