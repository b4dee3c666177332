namespace XGenMM.Model;

/// <summary>
/// The embedded default model, xgenmm-nano: a tiny trained xGen-MM committed under models/xgenmm-nano and copied
/// next to every program that serves, so that a model path is optional everywhere.
/// </summary>
public static class DefaultModel
{
    public const string Name = "xgenmm-nano";

    /// <summary>The configured checkpoint directory, or the embedded nano model when none is configured.</summary>
    public static string Resolve(string? configuredDirectory)
    {
        if (!string.IsNullOrWhiteSpace(configuredDirectory)) return configuredDirectory;
        foreach (var candidate in Candidates())
            if (File.Exists(Path.Combine(candidate, "config.json"))) return candidate;
        throw new DirectoryNotFoundException(
            $"No model directory was configured and the embedded {Name} model was not found (looked in: {string.Join(", ", Candidates())}).");
    }

    private static IEnumerable<string> Candidates()
    {
        yield return Path.Combine(AppContext.BaseDirectory, "models", Name);
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null)
        {
            if (File.Exists(Path.Combine(dir.FullName, "XGenMM.Cluster.sln"))) yield return Path.Combine(dir.FullName, "models", Name);
            dir = dir.Parent;
        }
    }
}
