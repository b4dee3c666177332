using System.Text.Json;
using System.Text.RegularExpressions;

namespace XGenMM.Model.Hub;

/// <summary>One file of a repository at a commit, as the hub lists it (<c>siblings</c> with <c>blobs=true</c>).</summary>
/// <param name="Path">Path inside the repository (<c>rfilename</c>).</param>
/// <param name="Size">Bytes of the file's content (the LFS object's size for LFS files).</param>
/// <param name="Sha256">Lower-case hex sha256 of the content for LFS files; null for files stored in git.</param>
/// <param name="BlobId">The git blob id (sha1 of "blob {size}\0" + content) for files stored in git; for LFS files it
/// names the pointer, not the content.</param>
public sealed record HubFile(string Path, long Size, string? Sha256, string? BlobId)
{
    [System.Text.Json.Serialization.JsonIgnore]
    public bool IsLfs => Sha256 is not null;

    /// <summary>The content's identity: what a partial transfer and the manifest are keyed by.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public string ContentId => Sha256 ?? BlobId ?? throw new InvalidOperationException($"{Path} has neither an LFS sha256 nor a blob id.");
}

/// <summary>A repository at one commit: <c>GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true</c>.</summary>
public sealed record HubRevision(string Commit, IReadOnlyList<HubFile> Files);

internal static partial class HubRepository
{
    public static bool IsValidRepoId(string repo) => RepoId().IsMatch(repo);

    public static bool IsCommitHash(string revision) => CommitHash().IsMatch(revision);

    /// <summary>The API URL of a repository at a revision; the revision is one path segment (refs/pr/1 escapes its slashes).</summary>
    public static Uri RevisionUri(Uri endpoint, string repo, string revision) =>
        new(Base(endpoint), $"api/models/{EscapeRepo(repo)}/revision/{Uri.EscapeDataString(revision)}?blobs=true");

    /// <summary>The download URL of one file at a commit: <c>{endpoint}/{repo}/resolve/{commit}/{path}</c>.</summary>
    public static Uri ResolveUri(Uri endpoint, string repo, string commit, string path) =>
        new(Base(endpoint), $"{EscapeRepo(repo)}/resolve/{Uri.EscapeDataString(commit)}/{string.Join('/', path.Split('/').Select(Uri.EscapeDataString))}");

    public static HubRevision ParseRevision(string json, string repo)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            string commit = root.TryGetProperty("sha", out var sha) && sha.ValueKind == JsonValueKind.String ? sha.GetString()! : "";
            if (!IsCommitHash(commit))
                throw new HubDownloadException(HubFailure.Protocol, $"The hub's answer for {repo} names no commit (\"sha\"); is the endpoint a Hugging Face hub?");
            if (!root.TryGetProperty("siblings", out var siblings) || siblings.ValueKind != JsonValueKind.Array)
                throw new HubDownloadException(HubFailure.Protocol, $"The hub's answer for {repo} lists no files (\"siblings\").");
            var files = new List<HubFile>();
            foreach (var s in siblings.EnumerateArray())
            {
                string path = s.GetProperty("rfilename").GetString() ?? "";
                if (!IsSafeRelativePath(path))
                    throw new HubDownloadException(HubFailure.Protocol, $"The hub lists a file path that would leave the model directory: '{path}'.");
                string? blobId = s.TryGetProperty("blobId", out var b) && b.ValueKind == JsonValueKind.String ? b.GetString() : null;
                string? sha256 = null;
                long size = s.TryGetProperty("size", out var sz) && sz.ValueKind == JsonValueKind.Number ? sz.GetInt64() : -1;
                if (s.TryGetProperty("lfs", out var lfs) && lfs.ValueKind == JsonValueKind.Object)
                {
                    sha256 = lfs.TryGetProperty("sha256", out var h) ? h.GetString()?.ToLowerInvariant() : null;
                    if (lfs.TryGetProperty("size", out var lfsSize) && lfsSize.ValueKind == JsonValueKind.Number) size = lfsSize.GetInt64();
                    if (sha256 is null || !Sha256Hex().IsMatch(sha256))
                        throw new HubDownloadException(HubFailure.Protocol, $"The hub lists {path} as an LFS file without a sha256.");
                }
                if (size < 0 || (sha256 is null && blobId is null))
                    throw new HubDownloadException(HubFailure.Protocol, $"The hub lists {path} without its size or checksum (was blobs=true ignored?).");
                files.Add(new HubFile(path, size, sha256, blobId?.ToLowerInvariant()));
            }
            return new HubRevision(commit.ToLowerInvariant(), files);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new HubDownloadException(HubFailure.Protocol, $"The hub's answer for {repo} is not the model API's JSON: {e.Message}", e);
        }
    }

    /// <summary>Files whose path matches one of the globs. Globs apply to the whole path and <c>*</c> does not cross
    /// <c>/</c>, so <c>*.json</c> takes the top level only (not a repository's sample folders).</summary>
    public static IReadOnlyList<HubFile> Select(IEnumerable<HubFile> files, IReadOnlyList<string> globs)
    {
        var regexes = globs.Select(GlobToRegex).ToList();
        return files.Where(f => regexes.Any(r => r.IsMatch(f.Path))).OrderBy(f => f.Path, StringComparer.Ordinal).ToList();
    }

    internal static bool IsSafeRelativePath(string path) =>
        path.Length > 0 && !path.StartsWith('/') && !path.Contains('\\', StringComparison.Ordinal) && !path.Contains('\0', StringComparison.Ordinal)
        && path.Split('/').All(segment => segment.Length > 0 && segment != "." && segment != "..");

    private static Regex GlobToRegex(string glob) =>
        new("^" + Regex.Escape(glob).Replace("\\*", "[^/]*", StringComparison.Ordinal).Replace("\\?", "[^/]", StringComparison.Ordinal) + "$",
            RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));

    private static Uri Base(Uri endpoint) => endpoint.AbsoluteUri.EndsWith('/') ? endpoint : new Uri(endpoint.AbsoluteUri + "/");

    private static string EscapeRepo(string repo) => string.Join('/', repo.Split('/').Select(Uri.EscapeDataString));

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")]
    private static partial Regex RepoId();

    [GeneratedRegex("^[0-9a-f]{40}$")]
    private static partial Regex CommitHash();

    [GeneratedRegex("^[0-9a-f]{64}$")]
    private static partial Regex Sha256Hex();
}
