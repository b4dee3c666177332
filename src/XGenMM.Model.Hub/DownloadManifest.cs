using System.Text.Json;
using System.Text.Json.Serialization;

namespace XGenMM.Model.Hub;

/// <summary>
/// What a directory holds of a repository: the commit its revision resolved to, that commit's file listing, and the
/// files fetched and verified so far (path -> content id). Kept in <c>.xgenmm-download/manifest.json</c>, rewritten
/// (temp file + rename) after every file, so a restart fetches only what is missing and an unchanged commit needs no
/// transfer at all.
/// </summary>
internal sealed class DownloadManifest
{
    public string Repo { get; set; } = "";
    public string Revision { get; set; } = "";
    public string Commit { get; set; } = "";
    public List<HubFile> Listing { get; set; } = [];
    public Dictionary<string, string> Fetched { get; set; } = new(StringComparer.Ordinal);

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    public static string PathIn(string stateDirectory) => Path.Combine(stateDirectory, "manifest.json");

    /// <summary>The manifest of a directory, or null when there is none or it cannot be read (then everything is fetched again).</summary>
    public static DownloadManifest? Read(string stateDirectory)
    {
        try
        {
            string path = PathIn(stateDirectory);
            return File.Exists(path) ? JsonSerializer.Deserialize<DownloadManifest>(File.ReadAllText(path), Json) : null;
        }
        catch (Exception e) when (e is JsonException or IOException)
        {
            return null;
        }
    }

    public void Write(string stateDirectory)
    {
        string path = PathIn(stateDirectory), temp = path + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(this, Json));
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>True when <paramref name="file"/> was fetched and verified and is still there with its size.</summary>
    public bool Holds(string directory, HubFile file)
    {
        if (!Fetched.TryGetValue(file.Path, out var id) || id != file.ContentId) return false;
        var info = new FileInfo(Path.Combine(directory, file.Path));
        return info.Exists && info.Length == file.Size;
    }

    /// <summary>The files of the listing that the globs select, when every one of them is held; null otherwise.</summary>
    public IReadOnlyList<HubFile>? CompleteFor(string directory, string repo, IReadOnlyList<string> globs)
    {
        if (!string.Equals(Repo, repo, StringComparison.OrdinalIgnoreCase) || Listing.Count == 0) return null;
        var wanted = HubRepository.Select(Listing, globs);
        return wanted.Count > 0 && wanted.All(f => Holds(directory, f)) ? wanted : null;
    }

    /// <summary>Whether this manifest answers for <paramref name="revision"/> without asking the hub: the same name it
    /// was resolved from, or the very commit.</summary>
    public bool IsFor(string revision) =>
        string.Equals(Revision, revision, StringComparison.Ordinal) || string.Equals(Commit, revision, StringComparison.OrdinalIgnoreCase);
}
