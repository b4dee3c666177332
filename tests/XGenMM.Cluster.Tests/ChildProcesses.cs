using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace XGenMM.Cluster.Tests;

/// <summary>Real processes for the multi-process tests: the silo host built beside these tests, redis, free ports.</summary>
internal static class ChildProcesses
{
    /// <summary>src/XGenMM.Silo's build output of the configuration these tests were built in.</summary>
    // tests/XGenMM.Cluster.Tests/bin/<Configuration>/net10.0 -> src/XGenMM.Silo/bin/<Configuration>/net10.0
    public static string SiloDll() => Sibling("XGenMM.Silo");

    /// <summary>src/XGenMM.Gateway's build output of the configuration these tests were built in.</summary>
    public static string GatewayDll() => Sibling("XGenMM.Gateway");

    private static string Sibling(string project)
    {
        var output = new DirectoryInfo(AppContext.BaseDirectory);
        string configuration = output.Parent!.Name;
        string root = output.Parent!.Parent!.Parent!.Parent!.Parent!.FullName;
        string dll = Path.Combine(root, "src", project, "bin", configuration, "net10.0", project + ".dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException($"Build src/{project} first.", dll);
    }

    /// <summary>Starts a process whose output is read and dropped (a full pipe would block it), or kept in
    /// <paramref name="output"/> when given.</summary>
    public static Process Start(string file, string arguments, Dictionary<string, string> environment, ConcurrentQueue<string>? output = null)
    {
        var info = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var (k, v) in environment) info.Environment[k] = v;
        var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {file}");
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) output?.Enqueue(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) output?.Enqueue(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
