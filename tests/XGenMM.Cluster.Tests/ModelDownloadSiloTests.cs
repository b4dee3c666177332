using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using XGenMM.Model.Hub.Tests;

namespace XGenMM.Cluster.Tests;

/// <summary>
/// The silo host fetching its checkpoint from a Hugging Face hub (real Kestrel on loopback serving the golden tiny
/// checkpoint): at start before loading, with readiness following the model; a download that cannot succeed fails the
/// start with one clear line; and the --download-model mode of the chart's init containers.
/// </summary>
public sealed class ModelDownloadSiloTests : IAsyncLifetime
{
    private const string Repo = "xgenmm-tests/golden-tiny";
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly string _root = Directory.CreateTempSubdirectory("xgenmm-silo-dl-").FullName;
    private LoopbackHub _hub = null!;

    public async ValueTask InitializeAsync()
    {
        var files = Directory.GetFiles(Fixtures.GoldenTinyAnyRes)
            .Where(f => !f.EndsWith("expected.safetensors", StringComparison.Ordinal) && !f.EndsWith("inputs.json", StringComparison.Ordinal))
            .ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes, StringComparer.Ordinal);
        _hub = await LoopbackHub.StartAsync(Repo, files);
    }

    public async ValueTask DisposeAsync()
    {
        await _hub.DisposeAsync();
        Directory.Delete(_root, recursive: true);
    }

    private Dictionary<string, string> Environment(string modelDir, string revision = "main") => new()
    {
        ["Silo__HttpPort"] = ChildProcesses.FreePort().ToString(CultureInfo.InvariantCulture),
        ["Model__Path"] = modelDir,
        ["Model__HuggingFace__Endpoint"] = _hub.Endpoint,
        ["Model__HuggingFace__Repo"] = Repo,
        ["Model__HuggingFace__Revision"] = revision,
        ["Model__HuggingFace__MaxAttempts"] = "2",
        ["Model__HuggingFace__RetryBaseDelaySeconds"] = "0.1",
        ["HF_TOKEN"] = "",
        ["Cluster__ClusterId"] = "dl-" + Guid.NewGuid().ToString("N")[..8],
        ["Cluster__SiloPort"] = ChildProcesses.FreePort().ToString(CultureInfo.InvariantCulture),
        ["Cluster__GatewayPort"] = ChildProcesses.FreePort().ToString(CultureInfo.InvariantCulture),
    };

    private static (Process Process, ConcurrentQueue<string> Output) Start(Dictionary<string, string> environment, string arguments = "")
    {
        var info = new ProcessStartInfo("dotnet", $"{ChildProcesses.SiloDll()} {arguments}") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var (k, v) in environment) info.Environment[k] = v;
        var output = new ConcurrentQueue<string>();
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) output.Enqueue(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) output.Enqueue(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return (process, output);
    }

    [Fact(Timeout = 180_000)]
    [Trait("Category", "E2E")]
    public async Task A_silo_configured_with_a_repository_downloads_it_before_loading_and_turns_ready()
    {
        string modelDir = Path.Combine(_root, "model");
        var environment = Environment(modelDir);
        // The hub answers its API only after 3 s: the silo must not be ready before the files are there.
        _hub.ApiDelay = TimeSpan.FromSeconds(3);
        var (silo, output) = Start(environment);
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
            var clock = Stopwatch.StartNew();
            while (true)
            {
                Assert.False(silo.HasExited, "the silo exited: " + string.Join('\n', output));
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(150), "the silo was not ready in 150 s: " + string.Join('\n', output.TakeLast(30)));
                try
                {
                    using var ready = await http.GetAsync(new Uri($"http://127.0.0.1:{environment["Silo__HttpPort"]}/readyz"), Ct);
                    if (ready.StatusCode == HttpStatusCode.OK) break;
                }
                catch (HttpRequestException)
                {
                }
                await Task.Delay(200, Ct);
            }
            Assert.True(clock.Elapsed > TimeSpan.FromSeconds(3), "ready before the hub had answered");
            foreach (var file in new[] { "config.json", "preprocessor_config.json", "tokenizer.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors" })
                Assert.Equal(_hub.Files[file], await File.ReadAllBytesAsync(Path.Combine(modelDir, file), Ct));
            Assert.False(File.Exists(Path.Combine(modelDir, "synthetic_1000x300.png")));
            Assert.Contains(output, l => l.Contains("Model download: " + Repo + "@main", StringComparison.Ordinal));
            Assert.Contains(output, l => l.Contains("is commit " + LoopbackHub.Commit, StringComparison.Ordinal));
        }
        finally
        {
            silo.Kill(entireProcessTree: true);
            await silo.WaitForExitAsync(Ct);
            silo.Dispose();
        }
    }

    [Fact(Timeout = 120_000)]
    [Trait("Category", "E2E")]
    public async Task A_download_that_cannot_succeed_fails_the_silos_start_with_one_clear_line()
    {
        var (silo, output) = Start(Environment(Path.Combine(_root, "missing"), revision: "no-such-branch"));
        using (silo)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(90));
            await silo.WaitForExitAsync(timeout.Token);
            Assert.NotEqual(0, silo.ExitCode);
            var line = Assert.Single(output, l => l.Contains("Model download failed (NotFound)", StringComparison.Ordinal));
            Assert.Contains("no-such-branch", line, StringComparison.Ordinal);
            Assert.Contains("HTTP 404", line, StringComparison.Ordinal);
        }
    }

    [Fact(Timeout = 120_000)]
    [Trait("Category", "E2E")]
    public async Task The_download_model_mode_fetches_and_exits_and_a_second_run_only_checks()
    {
        string modelDir = Path.Combine(_root, "init");
        foreach (int run in new[] { 1, 2 })
        {
            var (process, output) = Start(Environment(modelDir), "--download-model");
            using (process)
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
                timeout.CancelAfter(TimeSpan.FromSeconds(90));
                await process.WaitForExitAsync(timeout.Token);
                Assert.True(process.ExitCode == 0, string.Join('\n', output));
                Assert.Contains(output, l => l.Contains(run == 1 ? "fetched 10 file(s)" : "is complete in", StringComparison.Ordinal));
            }
        }
        Assert.Equal(2, _hub.Requests.Count(r => r.Path.StartsWith("/api/", StringComparison.Ordinal)));
        Assert.All(new[] { "config.json", "model-00001-of-00002.safetensors" }, f => Assert.Single(_hub.FileRequests(f), r => r.Status == 200));
    }
}
