using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace XGenMM.Cluster.Tests;

/// <summary>Real processes for the multi-process tests: the silo host built beside these tests, redis, free ports.</summary>
internal static class ChildProcesses
{
    /// <summary>src/XGenMM.Silo's build output of the configuration these tests were built in.</summary>
    public static string SiloDll()
    {
        // tests/XGenMM.Cluster.Tests/bin/<Configuration>/net10.0 -> src/XGenMM.Silo/bin/<Configuration>/net10.0
        var output = new DirectoryInfo(AppContext.BaseDirectory);
        string configuration = output.Parent!.Name;
        string root = output.Parent!.Parent!.Parent!.Parent!.Parent!.FullName;
        string dll = Path.Combine(root, "src", "XGenMM.Silo", "bin", configuration, "net10.0", "XGenMM.Silo.dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException("Build src/XGenMM.Silo first.", dll);
    }

    /// <summary>Starts a process whose output is read and dropped (a full pipe would block it).</summary>
    public static Process Start(string file, string arguments, Dictionary<string, string> environment)
    {
        var info = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var (k, v) in environment) info.Environment[k] = v;
        var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {file}");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
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
