using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace XGenMM.LoadTest.Tests.Autoscaling;

/// <summary>A child process whose output goes to a log file and stays searchable in memory.</summary>
internal sealed class LoggedProcess : IDisposable
{
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly StreamWriter _log;
    private readonly Lock _gate = new();

    private LoggedProcess(string name, Process process, string logPath)
    {
        Name = name;
        Process = process;
        LogPath = logPath;
        _log = new StreamWriter(logPath) { AutoFlush = true };
    }

    public string Name { get; }
    public Process Process { get; }
    public string LogPath { get; }
    public IEnumerable<string> Lines => _lines;
    public bool HasExited => Process.HasExited;

    public static LoggedProcess Start(string name, string file, IEnumerable<string> arguments, IReadOnlyDictionary<string, string> environment, string logDirectory)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in arguments) info.ArgumentList.Add(a);
        foreach (var (k, v) in environment) info.Environment[k] = v;
        var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {file}");
        var logged = new LoggedProcess(name, process, Path.Combine(logDirectory, name + ".log"));
        process.OutputDataReceived += (_, e) => logged.Add(e.Data);
        process.ErrorDataReceived += (_, e) => logged.Add(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return logged;
    }

    private void Add(string? line)
    {
        if (line is null) return;
        _lines.Enqueue(line);
        lock (_gate) _log.WriteLine(line);
    }

    /// <summary>SIGTERM, as the kubelet sends it when a pod is deleted (Process.Kill would be SIGKILL).</summary>
    public void Terminate()
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", ["-TERM", Process.Id.ToString(CultureInfo.InvariantCulture)]) { UseShellExecute = false })!;
        kill.WaitForExit();
        if (kill.ExitCode != 0 && !Process.HasExited) throw new InvalidOperationException($"kill -TERM {Process.Id} failed with {kill.ExitCode}");
    }

    public void Dispose()
    {
        try
        {
            if (!Process.HasExited) Process.Kill(entireProcessTree: true);
            Process.WaitForExit(5000);
        }
        catch (InvalidOperationException)
        {
        }
        lock (_gate) _log.Dispose();
        Process.Dispose();
    }
}

/// <summary>Paths of the repository and the hosts built beside these tests, and free loopback ports.</summary>
internal static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "XGenMM.Cluster.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"No XGenMM.Cluster.sln above '{AppContext.BaseDirectory}'.");
    }

    /// <summary>The build output of a host project in the configuration these tests were built in.</summary>
    public static string HostDll(string project)
    {
        string configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;
        string dll = Path.Combine(Root, "src", project, "bin", configuration, "net10.0", project + ".dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException($"Build src/{project} ({configuration}) first.", dll);
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public static string Require(string path, string why) =>
        File.Exists(path) ? path : throw new InvalidOperationException($"{path} is missing: {why} (build/install-test-deps.sh installs it).");
}

/// <summary>The chart rendered by the real helm and turned into JSON by the deployment tests' validator.</summary>
internal static class ChartRender
{
    public static async Task<IReadOnlyList<JsonObject>> RenderAsync(string release, string ns, string values, IEnumerable<string> apiVersions, string scratch, CancellationToken ct)
    {
        string helm = RepoPaths.Require(Path.Combine(RepoPaths.Root, ".tools", "helm", "helm"), "helm renders the chart");
        string validator = RepoPaths.Require(Path.Combine(RepoPaths.Root, "tests", "XGenMM.Deploy.Tests", "validator", "validate.mjs"), "the validator reads YAML");
        string valuesFile = Path.Combine(scratch, "values.yaml");
        await File.WriteAllTextAsync(valuesFile, values, ct);
        var env = new Dictionary<string, string>
        {
            ["HELM_CACHE_HOME"] = Path.Combine(scratch, "helm-cache"), ["HELM_CONFIG_HOME"] = Path.Combine(scratch, "helm-config"),
            ["HELM_DATA_HOME"] = Path.Combine(scratch, "helm-data"), ["KUBECONFIG"] = Path.Combine(scratch, "no-kubeconfig"),
        };
        string manifests = await RunAsync(helm, ["template", release, Path.Combine(RepoPaths.Root, "helm", "xgenmm"), "--namespace", ns, "-f", valuesFile,
            .. apiVersions.SelectMany(a => new[] { "--api-versions", a })], env, ct);
        string rendered = Path.Combine(scratch, "rendered.yaml");
        await File.WriteAllTextAsync(rendered, manifests, ct);
        var report = JsonNode.Parse(await RunAsync("node", [validator, rendered], new Dictionary<string, string>(), ct))!.AsObject();
        var problems = report["problems"]!.AsArray();
        if (problems.Count > 0) throw new InvalidOperationException("The rendered chart is not valid: " + problems.ToJsonString());
        return [.. report["objects"]!.AsArray().Select(o => o!.AsObject())];
    }

    private static async Task<string> RunAsync(string file, IEnumerable<string> args, IReadOnlyDictionary<string, string> env, CancellationToken ct)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = RepoPaths.Root };
        foreach (var a in args) info.ArgumentList.Add(a);
        foreach (var (k, v) in env) info.Environment[k] = v;
        using var p = Process.Start(info)!;
        var stdout = p.StandardOutput.ReadToEndAsync(ct);
        var stderr = p.StandardError.ReadToEndAsync(ct);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(90));
        await p.WaitForExitAsync(timeout.Token);
        if (p.ExitCode != 0) throw new InvalidOperationException($"{file} failed ({p.ExitCode}): {await stderr}");
        return await stdout;
    }
}

/// <summary>
/// A Prometheus server (the Debian package's binary) on a free loopback port with its own storage, scraping targets
/// from a file_sd file that <see cref="SetTargets"/> rewrites as processes come and go, as Kubernetes pod discovery
/// would list pods with their namespace and pod labels.
/// </summary>
internal sealed class PrometheusServer : IDisposable
{
    public const string Binary = "/usr/bin/prometheus";
    private readonly string _targets;
    private readonly LoggedProcess _process;

    private PrometheusServer(string targets, LoggedProcess process, Uri address)
    {
        _targets = targets;
        _process = process;
        Address = address;
    }

    public Uri Address { get; }

    public static async Task<PrometheusServer> StartAsync(string directory, double scrapeIntervalSeconds, string logDirectory, CancellationToken ct)
    {
        RepoPaths.Require(Binary, "the autoscaling test evaluates the chart's queries with a real Prometheus");
        Directory.CreateDirectory(directory);
        string targets = Path.Combine(directory, "targets.json");
        await File.WriteAllTextAsync(targets, "[]", ct);
        string interval = scrapeIntervalSeconds.ToString("0.###", CultureInfo.InvariantCulture) + "s";
        string config = Path.Combine(directory, "prometheus.yml");
        await File.WriteAllTextAsync(config, $"""
            global:
              scrape_interval: {interval}
              scrape_timeout: {interval}
              evaluation_interval: {interval}
            scrape_configs:
              - job_name: xgenmm
                file_sd_configs:
                  - files: ["{targets}"]
                    refresh_interval: {interval}
            """, ct);
        int port = RepoPaths.FreePort();
        var process = LoggedProcess.Start("prometheus", Binary,
            [$"--config.file={config}", $"--storage.tsdb.path={Path.Combine(directory, "data")}", $"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            new Dictionary<string, string>(), logDirectory);
        var server = new PrometheusServer(targets, process, new Uri($"http://127.0.0.1:{port}/"));
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited)
                throw new InvalidOperationException($"prometheus exited with {process.Process.ExitCode}: {string.Join('\n', process.Lines.TakeLast(20))}");
            try
            {
                if ((await http.GetAsync(new Uri(server.Address, "-/ready"), ct)).IsSuccessStatusCode) return server;
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException) when (!ct.IsCancellationRequested)
            {
            }
            if (clock.Elapsed > TimeSpan.FromSeconds(60)) throw new TimeoutException("prometheus was not ready in 60 s");
            await Task.Delay(200, ct);
        }
    }

    /// <summary>Rewrites the file_sd file at once (write then rename: Prometheus never reads half a file).</summary>
    public void SetTargets(IEnumerable<(string Address, IReadOnlyDictionary<string, string> Labels)> targets)
    {
        var groups = new JsonArray(targets.Select(t => (JsonNode?)new JsonObject
        {
            ["targets"] = new JsonArray((JsonNode?)t.Address),
            ["labels"] = new JsonObject(t.Labels.Select(l => KeyValuePair.Create(l.Key, (JsonNode?)l.Value))),
        }).ToArray());
        string temp = _targets + ".tmp";
        File.WriteAllText(temp, groups.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.Move(temp, _targets, overwrite: true);
    }

    public void Dispose() => _process.Dispose();
}
