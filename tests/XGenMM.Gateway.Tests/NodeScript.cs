using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace XGenMM.Gateway.Tests;

/// <summary>
/// Runs a script of tests/XGenMM.Gateway.Tests/node with <c>node</c>: the input goes in as one JSON argument, the
/// script's last stdout line is its JSON result; anything else it prints (stderr) comes back in failure messages.
/// The packages come from node/package-lock.json (build/install-test-deps.sh runs npm ci).
/// </summary>
internal static class NodeScript
{
    public const string Chromium = "/usr/bin/chromium";

    public static string Directory => Path.Combine(NanoGatewayFixture.RepositoryRoot(), "tests", "XGenMM.Gateway.Tests", "node");

    /// <summary>Fails with what to install when node, the npm packages or (for browser tests) Chromium are missing.</summary>
    public static void RequireInstalled(bool chromium = false)
    {
        string modules = Path.Combine(Directory, "node_modules");
        if (!System.IO.Directory.Exists(Path.Combine(modules, "openai")) || !System.IO.Directory.Exists(Path.Combine(modules, "playwright-core")))
            Assert.Fail($"The test's npm packages are missing in {modules}: run build/install-test-deps.sh (npm ci in {Directory}).");
        if (chromium && !File.Exists(Chromium))
            Assert.Fail($"{Chromium} is missing: run build/install-test-deps.sh (apt-get install chromium).");
    }

    public static async Task<JsonNode> RunAsync(string script, object input, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo("node")
        {
            WorkingDirectory = Directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(script);
        start.ArgumentList.Add(JsonSerializer.Serialize(input));
        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            Assert.Fail($"Cannot start node ({e.Message}): Node.js 20 or newer must be on the PATH.");
            throw;
        }
        using var _ = process;
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (stdout) stdout.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync(CancellationToken.None);
            Assert.Fail($"node {script} ran longer than {timeout.TotalSeconds:F0} s.\n{Output()}");
        }
        process.WaitForExit(); // flushes the redirected streams

        string Output()
        {
            lock (stdout) lock (stderr) return $"--- stdout\n{stdout}--- stderr\n{stderr}";
        }

        string? last;
        lock (stdout) last = stdout.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault();
        JsonNode? result = null;
        try
        {
            if (last is not null) result = JsonNode.Parse(last);
        }
        catch (JsonException)
        {
        }
        if (process.ExitCode != 0 || result is null)
            Assert.Fail($"node {script} exited with {process.ExitCode}{(result?["error"] is { } error ? ": " + error : "")}.\n{Output()}");
        TestContext.Current.TestOutputHelper?.WriteLine($"node {script}: {last}");
        return result!;
    }
}
