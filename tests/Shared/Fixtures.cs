namespace XGenMM.Testing;

/// <summary>Locates the shared fixtures folder that sits beside the repository root. Compiled into every test project
/// (tests/Directory.Build.props) rather than copied into each.</summary>
internal static class Fixtures
{
    private static readonly Lazy<string> Shared = new(Find);

    public static string SharedDir => Shared.Value;

    public static string Path(params string[] parts) => System.IO.Path.Combine([SharedDir, .. parts]);

    public static string GoldenTinyAnyRes => Path("fixtures", "golden", "tiny-anyres");

    private static string Find()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "XGenMM.Cluster.sln")))
            {
                foreach (var candidate in new[] { System.IO.Path.Combine(dir.FullName, "shared"), System.IO.Path.Combine(dir.Parent?.FullName ?? dir.FullName, "shared") })
                    if (Directory.Exists(System.IO.Path.Combine(candidate, "fixtures"))) return candidate;
            }
            dir = dir.Parent;
        }
        throw new DirectoryNotFoundException("The shared fixtures folder (shared/fixtures beside the repository root) was not found.");
    }
}
