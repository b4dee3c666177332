using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace XGenMM.Model.Hub.Tests;

/// <summary>One request the loopback hub answered: which listener, what was asked, what was sent.</summary>
internal sealed record HubRequest(string Listener, string Path, string? Authorization, long? RangeFrom, int Status, long BodyBytes);

/// <summary>
/// A Hugging Face hub on loopback, in real Kestrel: the model API (<c>/api/models/{repo}/revision/{rev}?blobs=true</c>
/// with <c>sha</c> and <c>siblings</c>), the resolve URLs (<c>/{repo}/resolve/{rev}/{path}</c>) with X-Repo-Commit,
/// ETag / X-Linked-Etag and X-Linked-Size, and LFS files redirected (302) to a CDN on a second port that serves them
/// with Range support. Tests shape its behaviour: a required token, a connection cut mid-file, corrupt bytes, stalls,
/// error statuses. Every request is recorded.
/// </summary>
internal sealed class LoopbackHub : IAsyncDisposable
{
    public const string Commit = "0123456789abcdef0123456789abcdef01234567";

    private readonly WebApplication _app;
    private readonly Dictionary<string, byte[]> _files;
    private readonly Dictionary<string, string> _lfsPathBySha = new(StringComparer.Ordinal);

    public string Repo { get; }
    public string Endpoint { get; }
    public string CdnOrigin { get; }
    public ConcurrentQueue<HubRequest> Requests { get; } = new();

    /// <summary>When set, the hub's own URLs answer 401 unless this Bearer token comes with the request.</summary>
    public string? RequiredToken { get; set; }

    /// <summary>Per file path: the body bytes after which the next transfer of it is cut (once each).</summary>
    public ConcurrentDictionary<string, long> CutAfter { get; } = new(StringComparer.Ordinal);

    /// <summary>Per file path: bytes after which the next transfer stalls (sends nothing more) until the client leaves.</summary>
    public ConcurrentDictionary<string, long> StallAfter { get; } = new(StringComparer.Ordinal);

    /// <summary>Files whose served bytes differ from the listed checksum (one byte flipped).</summary>
    public ConcurrentDictionary<string, bool> Corrupt { get; } = new(StringComparer.Ordinal);

    /// <summary>Answers the next N requests of the hub's API with this status (then normally).</summary>
    public int ApiFailures { get; set; }
    public int ApiFailureStatus { get; set; } = 503;

    /// <summary>Delay before the API answers (for the request timeout).</summary>
    public TimeSpan ApiDelay { get; set; }

    /// <summary>Every LFS request answers with a redirect to itself (a loop).</summary>
    public bool RedirectLoop { get; set; }

    /// <summary>Bytes written per flush; small values make cuts and stalls land mid-file.</summary>
    public int ChunkBytes { get; set; } = 64 * 1024;

    private LoopbackHub(WebApplication app, string repo, Dictionary<string, byte[]> files, string endpoint, string cdn)
    {
        _app = app;
        Repo = repo;
        _files = files;
        Endpoint = endpoint;
        CdnOrigin = cdn;
        foreach (var (path, bytes) in files.Where(f => IsLfs(f.Key)))
            _lfsPathBySha[Sha256(bytes)] = path;
    }

    /// <summary>The files stored in LFS on this hub: safetensors shards and tokenizer.json (as on huggingface.co).</summary>
    public static bool IsLfs(string path) => path.EndsWith(".safetensors", StringComparison.Ordinal) || path == "tokenizer.json";

    public IReadOnlyDictionary<string, byte[]> Files => _files;

    public static async Task<LoopbackHub> StartAsync(string repo, Dictionary<string, byte[]> files)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k =>
        {
            k.Listen(IPAddress.Loopback, 0);
            k.Listen(IPAddress.Loopback, 0);
        });
        var app = builder.Build();
        LoopbackHub? hub = null;
        app.Run(context => hub!.HandleAsync(context));
        await app.StartAsync();
        var addresses = app.Urls.Select(u => new Uri(u)).OrderBy(u => u.Port).ToList();
        hub = new LoopbackHub(app, repo, files, addresses[0].AbsoluteUri.TrimEnd('/'), addresses[1].AbsoluteUri.TrimEnd('/'));
        return hub;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    public static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    /// <summary>Git's blob id: sha1 of "blob {size}\0" followed by the content.</summary>
#pragma warning disable CA5350 // git's object id, not a security use
    public static string GitBlobId(byte[] bytes) =>
        Convert.ToHexStringLower(SHA1.HashData([.. Encoding.ASCII.GetBytes($"blob {bytes.Length}\0"), .. bytes]));
#pragma warning restore CA5350

    public IEnumerable<HubRequest> FileRequests(string path) =>
        Requests.Where(r => r.Path.EndsWith("/" + path, StringComparison.Ordinal) || (IsLfs(path) && r.Path == "/lfs/" + Sha256(_files[path])));

    private async Task HandleAsync(HttpContext context)
    {
        string path = context.Request.Path.Value ?? "";
        bool onCdn = context.Connection.LocalPort == new Uri(CdnOrigin).Port;
        string listener = onCdn ? "cdn" : "hub";
        string? authorization = context.Request.Headers.Authorization.FirstOrDefault();
        long? rangeFrom = ParseRange(context.Request.Headers.Range.FirstOrDefault());
        var sent = new long[1];
        try
        {
            if (onCdn) await ServeCdnAsync(context, path, rangeFrom, sent);
            else await ServeHubAsync(context, path, authorization, rangeFrom, sent);
        }
        finally
        {
            Requests.Enqueue(new HubRequest(listener, path, authorization, rangeFrom, context.Response.StatusCode, sent[0]));
        }
    }

    private async Task ServeHubAsync(HttpContext context, string path, string? authorization, long? rangeFrom, long[] sent)
    {
        if (RequiredToken is not null && authorization != "Bearer " + RequiredToken)
        {
            context.Response.StatusCode = 401;
            context.Response.Headers["X-Error-Code"] = "GatedRepo";
            context.Response.Headers["X-Error-Message"] = "Access to model " + Repo + " is restricted.";
            return;
        }
        string apiPrefix = $"/api/models/{Repo}/revision/";
        if (path.StartsWith(apiPrefix, StringComparison.Ordinal))
        {
            if (ApiDelay > TimeSpan.Zero) await Task.Delay(ApiDelay, context.RequestAborted);
            if (ApiFailures > 0)
            {
                ApiFailures--;
                context.Response.StatusCode = ApiFailureStatus;
                return;
            }
            string revision = Uri.UnescapeDataString(path[apiPrefix.Length..]);
            if (revision is not ("main" or Commit))
            {
                context.Response.StatusCode = 404;
                context.Response.Headers["X-Error-Code"] = "RevisionNotFound";
                context.Response.Headers["X-Error-Message"] = "Invalid rev id: " + revision;
                return;
            }
            bool blobs = context.Request.Query["blobs"] == "true";
            var siblings = _files.OrderBy(f => f.Key, StringComparer.Ordinal).Select(f => (object)(blobs
                ? IsLfs(f.Key)
                    ? new { rfilename = f.Key, blobId = GitBlobId(Encoding.ASCII.GetBytes("pointer " + f.Key)), size = f.Value.Length, lfs = new { sha256 = Sha256(f.Value), size = f.Value.Length, pointerSize = 134 } }
                    : new { rfilename = f.Key, blobId = GitBlobId(f.Value), size = f.Value.Length }
                : new { rfilename = f.Key }));
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(JsonSerializer.Serialize(new { id = Repo, sha = Commit, @private = false, siblings }));
            return;
        }
        string resolvePrefix = $"/{Repo}/resolve/";
        if (!path.StartsWith(resolvePrefix, StringComparison.Ordinal))
        {
            context.Response.StatusCode = 401; // what the hub answers for a repository it does not show
            context.Response.Headers["X-Error-Code"] = "RepoNotFound";
            return;
        }
        string rest = path[resolvePrefix.Length..];
        int slash = rest.IndexOf('/', StringComparison.Ordinal);
        string revisionOfFile = Uri.UnescapeDataString(rest[..slash]), file = Uri.UnescapeDataString(rest[(slash + 1)..]);
        if (revisionOfFile is not ("main" or Commit) || !_files.TryGetValue(file, out var bytes))
        {
            context.Response.StatusCode = 404;
            context.Response.Headers["X-Error-Code"] = "EntryNotFound";
            return;
        }
        context.Response.Headers["X-Repo-Commit"] = Commit;
        if (IsLfs(file))
        {
            string sha = Sha256(bytes);
            context.Response.Headers["X-Linked-Etag"] = $"\"{sha}\"";
            context.Response.Headers["X-Linked-Size"] = bytes.Length.ToString(CultureInfo.InvariantCulture);
            context.Response.Headers.ETag = $"\"{GitBlobId(Encoding.ASCII.GetBytes("pointer " + file))}\"";
            context.Response.StatusCode = 302;
            // Like the hub's CDN links, the URL carries a signature that must not reach a log.
            context.Response.Headers.Location = $"{CdnOrigin}/lfs/{sha}?X-Amz-Signature=cdn-signature-secret";
            return;
        }
        context.Response.Headers.ETag = $"\"{GitBlobId(bytes)}\"";
        await ServeBytesAsync(context, file, bytes, rangeFrom, sent);
    }

    private async Task ServeCdnAsync(HttpContext context, string path, long? rangeFrom, long[] sent)
    {
        if (RedirectLoop)
        {
            context.Response.StatusCode = 302;
            context.Response.Headers.Location = CdnOrigin + path;
            return;
        }
        if (!path.StartsWith("/lfs/", StringComparison.Ordinal) || !_lfsPathBySha.TryGetValue(path[5..], out var file))
        {
            context.Response.StatusCode = 404;
            return;
        }
        await ServeBytesAsync(context, file, _files[file], rangeFrom, sent);
    }

    private async Task ServeBytesAsync(HttpContext context, string file, byte[] bytes, long? rangeFrom, long[] sent)
    {
        long from = rangeFrom ?? 0;
        if (from >= bytes.Length && bytes.Length > 0)
        {
            context.Response.StatusCode = 416;
            context.Response.Headers.ContentRange = $"bytes */{bytes.Length}";
            return;
        }
        byte[] body = bytes;
        if (Corrupt.ContainsKey(file))
        {
            body = (byte[])bytes.Clone();
            body[body.Length / 2] ^= 0xFF;
        }
        context.Response.StatusCode = rangeFrom is null ? 200 : 206;
        if (rangeFrom is not null) context.Response.Headers.ContentRange = $"bytes {from}-{bytes.Length - 1}/{bytes.Length}";
        context.Response.ContentLength = bytes.Length - from;
        context.Response.ContentType = "application/octet-stream";
        long cut = CutAfter.TryRemove(file, out var c) ? c : long.MaxValue;
        long stall = StallAfter.TryRemove(file, out var s) ? s : long.MaxValue;
        long position = from;
        while (position < bytes.Length)
        {
            long limit = Math.Min(cut, stall);
            int n = (int)Math.Min(Math.Min(ChunkBytes, bytes.Length - position), Math.Max(0, limit - sent[0]));
            if (n == 0)
            {
                if (sent[0] >= cut)
                {
                    context.Abort();
                    return;
                }
                // Stalled: hold the connection open and silent until the client gives up.
                try
                {
                    await Task.Delay(Timeout.InfiniteTimeSpan, context.RequestAborted);
                }
                catch (OperationCanceledException)
                {
                }
                return;
            }
            await context.Response.Body.WriteAsync(body.AsMemory((int)position, n));
            await context.Response.Body.FlushAsync();
            position += n;
            sent[0] += n;
        }
    }

    private static long? ParseRange(string? range)
    {
        if (range is null || !range.StartsWith("bytes=", StringComparison.Ordinal) || !range.EndsWith('-')) return null;
        return long.Parse(range[6..^1], CultureInfo.InvariantCulture);
    }
}
