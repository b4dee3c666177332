using System.Runtime.InteropServices;
using TorchSharp;

namespace XGenMM.Model.Runtime;

/// <summary>Loads the TorchSharp native backend once and turns load failures into an actionable error.</summary>
public static class TorchRuntime
{
    private static readonly Lazy<string> Loaded = new(Load, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Ensures libtorch and the TorchSharp glue are loaded; returns a short description of the backend.</summary>
    /// <exception cref="TorchLoadException">The native libraries could not be loaded.</exception>
    public static string EnsureLoaded() => Loaded.Value;

    private static string Load()
    {
        try
        {
            using var probe = torch.ones(2, 2);
            _ = probe.sum().item<float>();
            bool cuda = torch.cuda.is_available();
            return cuda ? $"libtorch with CUDA ({torch.cuda.device_count()} device(s))" : "libtorch CPU";
        }
        catch (Exception ex) when (ex is DllNotFoundException or TypeInitializationException or NotSupportedException
                                   or EntryPointNotFoundException or BadImageFormatException or ExternalException)
        {
            throw new TorchLoadException(Describe(ex), ex);
        }
    }

    private static string Describe(Exception ex)
    {
        string detail = ex.GetBaseException().Message;
        string hint = detail.Contains("GLIBCXX", StringComparison.Ordinal)
            ? "The host libstdc++ is older than the one TorchSharp was built against. The build marks that version " +
              "requirement weak in the output copy of libLibTorchSharp.so (Directory.Build.targets); rebuild with " +
              "'dotnet build' (not a copy of another machine's output) so the patch runs, or install a newer libstdc++6."
            : "Make sure the project was built with a TorchSharp backend (default TorchBackend=cpu restores " +
              "libtorch-cpu-linux-x64; TorchBackend=cuda needs TorchSharp-cuda-linux) and that the native libraries " +
              "(libtorch*.so, libLibTorchSharp.so) sit next to the application.";
        return $"TorchSharp could not load its native libraries: {detail}. {hint}";
    }
}

/// <summary>TorchSharp's native libraries failed to load; the message names the cause and the fix.</summary>
public sealed class TorchLoadException(string message, Exception inner) : Exception(message, inner);
