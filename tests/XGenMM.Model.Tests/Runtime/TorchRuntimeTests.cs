using TorchSharp;
using XGenMM.Build;
using XGenMM.Model.Runtime;
using static TorchSharp.torch;

namespace XGenMM.Model.Tests.Runtime;

public sealed class TorchRuntimeTests
{
    private const string Version = "GLIBCXX_3.4.32";

    [Fact]
    public void A_real_tensor_computation_runs_in_the_test_process()
    {
        Assert.Contains("libtorch", TorchRuntime.EnsureLoaded(), StringComparison.Ordinal);
        using var scope = NewDisposeScope();
        var a = tensor(new float[] { 1, 2, 3, 4 }).reshape(2, 2);
        var b = tensor(new float[] { 5, 6, 7, 8 }).reshape(2, 2);
        var c = matmul(a, b);
        Assert.Equal(new float[] { 19, 22, 43, 50 }, c.data<float>().ToArray());
    }

    [Fact]
    public void The_output_copy_of_the_glue_library_is_weakened_exactly_when_the_host_lacks_the_version()
    {
        string glue = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        if (!File.Exists(glue)) glue = Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so");
        Assert.True(File.Exists(glue), $"TorchSharp glue not found in {AppContext.BaseDirectory}");

        var entry = ElfVersionNeeds.Find(File.ReadAllBytes(glue), Version);
        Assert.NotNull(entry); // TorchSharp 0.107 does require it; if a future version stops, revisit the build patch.
        bool weak = (entry.Value.Flags & ElfVersionNeeds.VerFlgWeak) != 0;
        Assert.Equal(!HostDefines(Version), weak);
    }

    [Fact]
    public void The_package_cache_copy_is_left_untouched()
    {
        string cacheCopy = Path.Combine(NuGetRoot(), "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.True(File.Exists(cacheCopy), cacheCopy);
        var entry = ElfVersionNeeds.Find(File.ReadAllBytes(cacheCopy), Version);
        Assert.NotNull(entry);
        Assert.Equal(0, entry.Value.Flags & ElfVersionNeeds.VerFlgWeak);
    }

    [Fact]
    public void Weakening_is_idempotent_and_changes_only_the_flag()
    {
        string cacheCopy = Path.Combine(NuGetRoot(), "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        string tmp = Path.Combine(Path.GetTempPath(), $"glue-{Guid.NewGuid():N}.so");
        File.Copy(cacheCopy, tmp);
        try
        {
            byte[] before = File.ReadAllBytes(tmp);
            Assert.Equal("marked weak", ElfVersionNeeds.Weaken(tmp, Version));
            Assert.Equal("already weak", ElfVersionNeeds.Weaken(tmp, Version));
            byte[] after = File.ReadAllBytes(tmp);
            int diffs = before.Zip(after).Count(p => p.First != p.Second);
            Assert.Equal(1, diffs);
            Assert.Equal("no requirement on GLIBCXX_9.9.99", ElfVersionNeeds.Weaken(tmp, "GLIBCXX_9.9.99"));
        }
        finally
        {
            File.Delete(tmp);
        }
    }

    [Fact]
    public void A_file_that_is_not_ELF_is_refused()
    {
        Assert.Throws<InvalidDataException>(() => ElfVersionNeeds.Find(new byte[128], Version));
    }

    private static bool HostDefines(string version)
    {
        foreach (var lib in new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6" })
        {
            if (File.Exists(lib))
                return File.ReadAllBytes(lib).AsSpan().IndexOf(System.Text.Encoding.ASCII.GetBytes(version + "\0")) >= 0;
        }
        return false;
    }

    private static string NuGetRoot() =>
        Environment.GetEnvironmentVariable("NUGET_PACKAGES")
        ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
}
