namespace XGenMM.LoadTest.Tests;

/// <summary>Locates the shared fixtures folder that sits beside the repository root (as the gateway's tests do).</summary>
internal static class Fixtures
{
    private static readonly Lazy<string> Shared = new(Find);

    public static string GoldenTinyAnyRes => Path.Combine(Shared.Value, "fixtures", "golden", "tiny-anyres");

    private static string Find()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null)
        {
            if (File.Exists(Path.Combine(dir.FullName, "XGenMM.Cluster.sln")))
            {
                foreach (var candidate in new[] { Path.Combine(dir.FullName, "shared"), Path.Combine(dir.Parent?.FullName ?? dir.FullName, "shared") })
                    if (Directory.Exists(Path.Combine(candidate, "fixtures"))) return candidate;
            }
            dir = dir.Parent;
        }
        throw new DirectoryNotFoundException("The shared fixtures folder (shared/fixtures beside the repository root) was not found.");
    }
}
