using System.Text.RegularExpressions;

namespace XGenMM.Deploy.Tests.Infrastructure;

/// <summary>A Dockerfile or Containerfile read as instructions: continuation lines joined, comments and blanks dropped.</summary>
internal sealed partial class ImageFile
{
    private ImageFile(List<string> instructions) => Instructions = instructions;

    public IReadOnlyList<string> Instructions { get; }

    public static ImageFile Read(params string[] path)
    {
        string text = Repo.ReadAllText(path).Replace("\\\n", " ", StringComparison.Ordinal);
        return new(text.Split('\n').Select(l => Spaces().Replace(l.Trim(), " ")).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList());
    }

    /// <summary>The instructions of the last stage (after its last FROM), the ones that make the image.</summary>
    public IEnumerable<string> FinalStage => Instructions.Skip(Instructions.ToList().FindLastIndex(l => l.StartsWith("FROM ", StringComparison.Ordinal)));

    public IEnumerable<string> All(string keyword) => FinalStage.Where(l => l.StartsWith(keyword + " ", StringComparison.Ordinal)).Select(l => l[(keyword.Length + 1)..]);

    public string Last(string keyword) => All(keyword).Last();

    /// <summary>The final stage's ENV settings (KEY=value pairs; values here hold no spaces).</summary>
    public Dictionary<string, string> Env => All("ENV").SelectMany(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        .Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1], StringComparer.Ordinal);

    [GeneratedRegex(@"\s+")]
    private static partial Regex Spaces();
}
