using System.Buffers;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;

namespace XGenMM.Model.Hub;

/// <summary>What a download did.</summary>
/// <param name="Commit">The commit the revision resolved to (and whose files the directory now holds).</param>
/// <param name="Files">The files of the directory that the globs selected.</param>
/// <param name="FilesFetched">Files transferred by this call (0 when everything was there).</param>
/// <param name="BytesReceived">Body bytes received over all attempts: above the fetched files' size only when a transfer
/// was cut and resumed, or restarted.</param>
/// <param name="AskedHub">Whether the hub was asked at all (false: a finished download of a pinned commit, or offline).</param>
public sealed record HubDownloadResult(string Commit, IReadOnlyList<HubFile> Files, int FilesFetched, long BytesReceived, bool AskedHub, TimeSpan Elapsed);

/// <summary>
/// Fetches the files of a Hugging Face model repository that the loader needs into a directory. One commit is resolved
/// through the model API and every file is fetched at that commit, so a branch that moves mid-download cannot mix two
/// commits. Each file is transferred into <c>.xgenmm-download/partial/{content id}.part</c>, resumed with a Range
/// request after a cut, verified (sha256 for LFS files, the git blob id for the others) and renamed into place; a
/// mismatching file is deleted. A lock file keeps two processes on one cache from fetching the same files: the second
/// waits and then finds them finished. The token goes only to the hub's own origin, never to the CDN it redirects to,
/// and never into a log line or an exception message.
/// </summary>
public sealed partial class HubDownloader : IDisposable
{
    /// <summary>The folder inside the model directory with the lock, the manifest and partial transfers.</summary>
    public const string StateDirectoryName = ".xgenmm-download";

    /// <summary>How often a process waiting for the lock tries it again.</summary>
    public static readonly TimeSpan LockPollInterval = TimeSpan.FromMilliseconds(250);

    private const int BufferBytes = 1 << 20;

    private readonly HubDownloadOptions _options;
    private readonly ILogger _logger;
    private readonly HttpClient _http;
    private readonly Uri _endpoint;
    private readonly string? _token;
    private readonly IReadOnlyList<string> _globs;
    private long _bytesReceived;

    public HubDownloader(HubDownloadOptions options, ILogger logger)
    {
        options.Validate();
        _options = options;
        _logger = logger;
        _endpoint = new Uri(options.Endpoint);
        _globs = options.FilePatterns();
        _token = ReadToken(options);
        // Redirects are followed by hand: the Authorization header must not travel to the CDN, the Range header must.
        _http = new HttpClient(new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = TimeSpan.FromSeconds(options.RequestTimeoutSeconds),
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("xgenmm-model-hub", "1.0"));
    }

    /// <summary>Whether a token was found (for the start-up log; the token itself is never shown).</summary>
    public bool HasToken => _token is not null;

    public void Dispose() => _http.Dispose();

    /// <summary>Makes <paramref name="directory"/> hold the selected files of the repository at the configured revision.</summary>
    public async Task<HubDownloadResult> DownloadAsync(string directory, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        directory = Path.GetFullPath(directory);
        string state = Path.Combine(directory, StateDirectoryName);
        Directory.CreateDirectory(state);
        string repo = _options.Repo, revision = _options.Revision;

        // A finished download of a pinned commit is answered from disk, without the lock or the network.
        var manifest = DownloadManifest.Read(state);
        if (!_options.Offline && HubRepository.IsCommitHash(revision) && manifest is not null && manifest.IsFor(revision)
            && manifest.CompleteFor(directory, repo, _globs) is { } pinned)
        {
            LogAlreadyComplete(repo, revision, manifest.Commit, directory);
            return new HubDownloadResult(manifest.Commit, pinned, 0, 0, false, clock.Elapsed);
        }

        using var held = await AcquireLockAsync(state, cancellationToken).ConfigureAwait(false);
        manifest = DownloadManifest.Read(state);
        var local = manifest is not null && manifest.IsFor(revision) ? manifest.CompleteFor(directory, repo, _globs) : null;
        if (_options.Offline)
        {
            if (local is null)
                throw new HubDownloadException(HubFailure.OfflineIncomplete,
                    $"Model:HuggingFace:Offline is set, but {directory} holds no finished download of {repo}@{revision} (files {_options.Files}).");
            LogAlreadyComplete(repo, revision, manifest!.Commit, directory);
            return new HubDownloadResult(manifest.Commit, local, 0, 0, false, clock.Elapsed);
        }

        HubRevision remote;
        try
        {
            remote = await GetRevisionAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (HubDownloadException e) when (e.Failure == HubFailure.Unavailable && local is not null)
        {
            LogServingLocalCopy(repo, revision, manifest!.Commit, e.Message);
            return new HubDownloadResult(manifest.Commit, local, 0, 0, true, clock.Elapsed);
        }

        var wanted = HubRepository.Select(remote.Files, _globs);
        if (wanted.Count == 0)
            throw new HubDownloadException(HubFailure.NotFound, $"{repo}@{revision} (commit {remote.Commit}) has no file that matches Model:HuggingFace:Files '{_options.Files}'.");

        // Files of an earlier commit whose content did not change stay; so do files put there by hand when they verify.
        var next = new DownloadManifest { Repo = repo, Revision = revision, Commit = remote.Commit, Listing = [.. remote.Files] };
        if (manifest is not null && string.Equals(manifest.Repo, repo, StringComparison.OrdinalIgnoreCase))
            foreach (var file in wanted.Where(f => manifest.Holds(directory, f)))
                next.Fetched[file.Path] = file.ContentId;
        foreach (var file in wanted.Where(f => !next.Fetched.ContainsKey(f.Path)))
        {
            string path = Path.Combine(directory, file.Path);
            if (File.Exists(path) && new FileInfo(path).Length == file.Size && await MatchesAsync(path, file, cancellationToken).ConfigureAwait(false))
                next.Fetched[file.Path] = file.ContentId;
        }
        var missing = wanted.Where(f => !next.Fetched.ContainsKey(f.Path)).ToList();
        next.Write(state);
        long missingBytes = missing.Sum(f => f.Size);
        LogResolved(repo, revision, remote.Commit, wanted.Count, missing.Count, missingBytes);

        long receivedBefore = Interlocked.Read(ref _bytesReceived);
        foreach (var file in missing)
        {
            await FetchFileAsync(directory, state, remote.Commit, file, cancellationToken).ConfigureAwait(false);
            next.Fetched[file.Path] = file.ContentId;
            next.Write(state);
        }
        RemoveStalePartials(state, wanted);
        long received = Interlocked.Read(ref _bytesReceived) - receivedBefore;
        if (missing.Count > 0)
        {
            var elapsed = clock.Elapsed;
            double rate = Rate(received, elapsed);
            LogFinished(repo, remote.Commit, missing.Count, received, elapsed.TotalSeconds, rate);
        }
        else
            LogAlreadyComplete(repo, revision, remote.Commit, directory);
        return new HubDownloadResult(remote.Commit, wanted, missing.Count, received, true, clock.Elapsed);
    }

    private async Task<FileStream> AcquireLockAsync(string state, CancellationToken cancellationToken)
    {
        string path = Path.Combine(state, "lock");
        var waited = Stopwatch.StartNew();
        bool logged = false;
        while (true)
        {
            try
            {
                // FileShare.None takes an exclusive advisory lock (flock) on Unix, released by the kernel when the
                // process dies: a crashed downloader leaves no stale lock behind.
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (waited.Elapsed.TotalSeconds < _options.LockTimeoutSeconds)
            {
                if (!logged)
                {
                    LogWaitingForLock(path, _options.LockTimeoutSeconds);
                    logged = true;
                }
                await Task.Delay(LockPollInterval, cancellationToken).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                throw new HubDownloadException(HubFailure.LockTimeout,
                    $"Another process held {path} for more than {_options.LockTimeoutSeconds} s (Model:HuggingFace:LockTimeoutSeconds); is a download of the same cache stuck?", e);
            }
        }
    }

    private async Task<HubRevision> GetRevisionAsync(CancellationToken cancellationToken)
    {
        var uri = HubRepository.RevisionUri(_endpoint, _options.Repo, _options.Revision);
        string what = $"{_options.Repo}@{_options.Revision}";
        return await RetryAsync(what, () => 0, async () =>
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(_options.RequestTimeoutSeconds));
            try
            {
                using var response = await SendAsync(uri, null, timeout.Token).ConfigureAwait(false);
                ThrowForStatus(response, what);
                string json = await response.Content.ReadAsStringAsync(timeout.Token).ConfigureAwait(false);
                return HubRepository.ParseRevision(json, _options.Repo);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new TimeoutException($"the hub did not answer within {_options.RequestTimeoutSeconds} s (Model:HuggingFace:RequestTimeoutSeconds)");
            }
        }, cancellationToken).ConfigureAwait(false);
    }

    private async Task FetchFileAsync(string directory, string state, string commit, HubFile file, CancellationToken cancellationToken)
    {
        string partialDir = Path.Combine(state, "partial");
        Directory.CreateDirectory(partialDir);
        string partial = Path.Combine(partialDir, file.ContentId + ".part");
        string target = Path.Combine(directory, file.Path);
        var uri = HubRepository.ResolveUri(_endpoint, _options.Repo, commit, file.Path);
        long resumeAt = PartialLength(partial);
        LogFetching(file.Path, file.Size, resumeAt);
        var clock = Stopwatch.StartNew();
        await RetryAsync(file.Path, () => PartialLength(partial), async () =>
        {
            await TransferAsync(uri, file, partial, cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken).ConfigureAwait(false);

        if (!await MatchesAsync(partial, file, cancellationToken).ConfigureAwait(false))
        {
            File.Delete(partial);
            string expected = file.IsLfs ? $"sha256 {file.Sha256}" : $"git blob id {file.BlobId}";
            throw new HubDownloadException(HubFailure.ChecksumMismatch,
                $"{_options.Repo}@{commit}: {file.Path} does not match its {expected} listed by the hub; the file was deleted (a corrupt mirror or proxy?).");
        }
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        File.Move(partial, target, overwrite: true);
        var took = clock.Elapsed;
        double fileRate = Rate(file.Size - resumeAt, took);
        LogFetched(file.Path, file.Size, took.TotalSeconds, fileRate, file.IsLfs ? "sha256" : "git blob id");
    }

    /// <summary>One attempt at a file: resumes from the partial file's length and appends until the listed size.</summary>
    private async Task TransferAsync(Uri uri, HubFile file, string partial, CancellationToken cancellationToken)
    {
        long offset = PartialLength(partial);
        if (offset > file.Size)
        {
            File.Delete(partial);
            offset = 0;
        }
        if (offset == file.Size) return;

        using var headers = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        headers.CancelAfter(TimeSpan.FromSeconds(_options.RequestTimeoutSeconds));
        HttpResponseMessage response;
        try
        {
            response = await SendAsync(uri, offset > 0 ? offset : null, headers.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"no response headers within {_options.RequestTimeoutSeconds} s (Model:HuggingFace:RequestTimeoutSeconds)");
        }
        using (response)
        {
            if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable)
            {
                // The partial file is not a prefix the server recognises: start the file over.
                File.Delete(partial);
                throw new TransientStatusException(response.StatusCode, null);
            }
            ThrowForStatus(response, file.Path);
            if (response.StatusCode == HttpStatusCode.PartialContent)
            {
                long? from = response.Content.Headers.ContentRange?.From;
                if (from != offset)
                    throw new HubDownloadException(HubFailure.Protocol, $"{file.Path}: asked for the bytes from {offset}, the server sent a range from {from?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "(none)"}.");
            }
            else if (offset > 0)
            {
                // 200 to a Range request: the server sends the whole file again.
                offset = 0;
            }
            long? length = response.Content.Headers.ContentLength;
            if (length is long n && offset + n != file.Size)
                throw new HubDownloadException(HubFailure.Protocol,
                    $"{file.Path}: the server sends {offset + n} bytes, the hub's listing says {file.Size} (a stale mirror?).");

            await using var output = new FileStream(partial, offset == 0 ? FileMode.Create : FileMode.Open, FileAccess.Write, FileShare.None, BufferBytes, FileOptions.Asynchronous);
            output.Seek(offset, SeekOrigin.Begin);
            output.SetLength(offset);
            await using var body = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
            using var stall = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var stallAfter = TimeSpan.FromSeconds(_options.StallTimeoutSeconds);
            byte[] buffer = ArrayPool<byte>.Shared.Rent(BufferBytes);
            var clock = Stopwatch.StartNew();
            var logEvery = TimeSpan.FromSeconds(_options.ProgressLogSeconds);
            var nextLog = logEvery;
            long written = offset, thisAttempt = 0;
            try
            {
                while (true)
                {
                    stall.CancelAfter(stallAfter);
                    int read;
                    try
                    {
                        read = await body.ReadAsync(buffer.AsMemory(0, BufferBytes), stall.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                    {
                        throw new TimeoutException($"no byte for {_options.StallTimeoutSeconds} s (Model:HuggingFace:StallTimeoutSeconds) after {written} of {file.Size} bytes");
                    }
                    if (read == 0) break;
                    if (written + read > file.Size)
                        throw new HubDownloadException(HubFailure.Protocol, $"{file.Path}: the server sends more than the {file.Size} bytes the hub lists.");
                    await output.WriteAsync(buffer.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
                    written += read;
                    thisAttempt += read;
                    Interlocked.Add(ref _bytesReceived, read);
                    if (clock.Elapsed >= nextLog)
                    {
                        nextLog = clock.Elapsed + logEvery;
                        double rate = Rate(thisAttempt, clock.Elapsed);
                        LogProgress(file.Path, written, file.Size, rate);
                    }
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
                // What arrived is kept (flushed to disk) so the next attempt resumes after it.
                await output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                output.Flush(flushToDisk: true);
            }
            if (written < file.Size)
                throw new IOException($"the connection ended after {written} of {file.Size} bytes");
        }
    }

    /// <summary>Sends a GET, following redirects by hand: the token only to the hub's own origin, the Range header to every hop.</summary>
    private async Task<HttpResponseMessage> SendAsync(Uri uri, long? rangeFrom, CancellationToken cancellationToken)
    {
        for (int hop = 0; ; hop++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, uri);
            if (_token is not null && SameOrigin(uri, _endpoint))
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _token);
            if (rangeFrom is long from)
                request.Headers.Range = new RangeHeaderValue(from, null);
            var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
            if ((int)response.StatusCode is not (301 or 302 or 303 or 307 or 308)) return response;

            var location = response.Headers.Location;
            response.Dispose();
            if (location is null)
                throw new HubDownloadException(HubFailure.Protocol, $"{uri.Host} answered a redirect without a Location.");
            if (hop >= _options.MaxRedirects)
                throw new HubDownloadException(HubFailure.Protocol, $"More than {_options.MaxRedirects} redirects (Model:HuggingFace:MaxRedirects) from {_endpoint.Host}; a redirect loop?");
            var next = location.IsAbsoluteUri ? location : new Uri(uri, location);
            if (next.Scheme is not ("https" or "http") || (uri.Scheme == "https" && next.Scheme == "http"))
                throw new HubDownloadException(HubFailure.Protocol, $"{uri.Host} redirected to a {next.Scheme} URL; only http(s) without a downgrade from https is followed.");
            // Only the host: a CDN's URL carries signed query parameters that do not belong in logs.
            bool withToken = _token is not null && SameOrigin(next, _endpoint);
            LogRedirect(uri.Host, next.Host, withToken);
            uri = next;
        }
    }

    private async Task<T> RetryAsync<T>(string what, Func<long> progress, Func<Task<T>> attempt, CancellationToken cancellationToken)
    {
        int withoutProgress = 0;
        while (true)
        {
            long before = progress();
            try
            {
                return await attempt().ConfigureAwait(false);
            }
            catch (Exception e) when (IsTransient(e, cancellationToken))
            {
                withoutProgress = progress() > before ? 0 : withoutProgress + 1;
                string reason = Describe(e);
                if (withoutProgress >= _options.MaxAttempts)
                    throw new HubDownloadException(HubFailure.Unavailable,
                        $"{_options.Repo}: {what} failed {withoutProgress} times in a row without progress (Model:HuggingFace:MaxAttempts {_options.MaxAttempts}); last: {reason}.", e,
                        (e as TransientStatusException)?.Status is { } s ? (int)s : null);
                var delay = Backoff(Math.Max(1, withoutProgress), (e as TransientStatusException)?.RetryAfter);
                LogRetrying(what, withoutProgress, _options.MaxAttempts, reason, delay.TotalSeconds);
                await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    internal TimeSpan Backoff(int failures, TimeSpan? retryAfter)
    {
        double seconds = _options.RetryBaseDelaySeconds * Math.Pow(2, failures - 1);
        if (retryAfter is { } asked) seconds = Math.Max(seconds, asked.TotalSeconds);
        return TimeSpan.FromSeconds(Math.Min(seconds, _options.RetryMaxDelaySeconds));
    }

    private static bool IsTransient(Exception e, CancellationToken cancellationToken) =>
        !cancellationToken.IsCancellationRequested && e is HttpRequestException or IOException or TimeoutException or TransientStatusException;

    private static string Describe(Exception e) => e switch
    {
        TransientStatusException s => $"HTTP {(int)s.Status}",
        HttpRequestException h when h.InnerException is { } inner => $"{h.Message} ({inner.Message})",
        _ => e.Message,
    };

    private void ThrowForStatus(HttpResponseMessage response, string what)
    {
        int status = (int)response.StatusCode;
        if (response.IsSuccessStatusCode) return;
        // The hub explains refusals in X-Error-Code / X-Error-Message (RepoNotFound, GatedRepo, RevisionNotFound...).
        string code = Header(response, "X-Error-Code"), message = Header(response, "X-Error-Message");
        string detail = (code, message) switch
        {
            ("", "") => "",
            (_, "") => $" [{code}]",
            ("", _) => $": {message}",
            _ => $" [{code}]: {message}",
        };
        switch (status)
        {
            case 401 or 403:
                throw new HubDownloadException(HubFailure.Unauthorized, _token is null
                    ? $"{_options.Repo}: {what} refused with HTTP {status}{detail}. A gated or private repository needs a token with access (Model:HuggingFace:TokenFile or ${_options.TokenEnvironmentVariable}); the hub also answers 401 for a repository that does not exist."
                    : $"{_options.Repo}: {what} refused with HTTP {status}{detail}. The token given was not accepted for this repository (expired, or no access granted to a gated repository?).",
                    statusCode: status);
            case 404:
                throw new HubDownloadException(HubFailure.NotFound,
                    $"{_options.Repo}: {what} not found on {_endpoint.Host} (HTTP 404){detail}. Check Model:HuggingFace:Repo and Revision.", statusCode: status);
            case 408 or 429 or >= 500:
                throw new TransientStatusException(response.StatusCode, RetryAfter(response));
            default:
                throw new HubDownloadException(HubFailure.Protocol, $"{_options.Repo}: {what} answered HTTP {status}{detail}.", statusCode: status);
        }
    }

    private static TimeSpan? RetryAfter(HttpResponseMessage response) =>
        response.Headers.RetryAfter is { } r ? r.Delta ?? (r.Date is { } at ? at - DateTimeOffset.UtcNow : null) : null;

    private static string Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? string.Join(' ', values).Trim() : "";

    private static bool SameOrigin(Uri a, Uri b) =>
        string.Equals(a.Scheme, b.Scheme, StringComparison.OrdinalIgnoreCase) && string.Equals(a.Host, b.Host, StringComparison.OrdinalIgnoreCase) && a.Port == b.Port;

    private static long PartialLength(string partial) => File.Exists(partial) ? new FileInfo(partial).Length : 0;

    private static double Rate(long bytes, TimeSpan elapsed) => elapsed.TotalSeconds > 0 ? bytes / 1e6 / elapsed.TotalSeconds : 0;

    /// <summary>Whether a file's bytes are the listed ones: sha256 for LFS files, the git blob id (sha1 of
    /// "blob {size}\0" + content) for files stored in git.</summary>
    internal static async Task<bool> MatchesAsync(string path, HubFile file, CancellationToken cancellationToken)
    {
        await using var input = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, BufferBytes, FileOptions.Asynchronous | FileOptions.SequentialScan);
        if (input.Length != file.Size) return false;
        // Git names blobs by SHA-1: matching that id is an integrity check against the hub's listing, not a security boundary.
#pragma warning disable CA5350
        using var hash = IncrementalHash.CreateHash(file.IsLfs ? HashAlgorithmName.SHA256 : HashAlgorithmName.SHA1);
#pragma warning restore CA5350
        if (!file.IsLfs) hash.AppendData(Encoding.ASCII.GetBytes(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"blob {file.Size}\0")));
        byte[] buffer = ArrayPool<byte>.Shared.Rent(BufferBytes);
        try
        {
            int read;
            while ((read = await input.ReadAsync(buffer.AsMemory(0, BufferBytes), cancellationToken).ConfigureAwait(false)) > 0)
                hash.AppendData(buffer, 0, read);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return string.Equals(Convert.ToHexStringLower(hash.GetHashAndReset()), file.IsLfs ? file.Sha256 : file.BlobId, StringComparison.Ordinal);
    }

    private static void RemoveStalePartials(string state, IReadOnlyList<HubFile> wanted)
    {
        string partialDir = Path.Combine(state, "partial");
        if (!Directory.Exists(partialDir)) return;
        var keep = wanted.Select(f => f.ContentId + ".part").ToHashSet(StringComparer.Ordinal);
        foreach (var stale in Directory.EnumerateFiles(partialDir).Where(p => !keep.Contains(Path.GetFileName(p))))
            File.Delete(stale);
    }

    private static string? ReadToken(HubDownloadOptions options)
    {
        string? token;
        if (!string.IsNullOrWhiteSpace(options.TokenFile))
        {
            if (!File.Exists(options.TokenFile))
                throw new HubDownloadException(HubFailure.Configuration, $"Model:HuggingFace:TokenFile '{options.TokenFile}' does not exist.");
            token = File.ReadAllText(options.TokenFile);
        }
        else
        {
            token = string.IsNullOrWhiteSpace(options.TokenEnvironmentVariable) ? null : Environment.GetEnvironmentVariable(options.TokenEnvironmentVariable);
        }
        token = token?.Trim();
        return string.IsNullOrEmpty(token) ? null : token;
    }

    /// <summary>A status worth another attempt (5xx, 429, 408, 416), with the server's Retry-After when it sent one.</summary>
    private sealed class TransientStatusException(HttpStatusCode status, TimeSpan? retryAfter) : Exception($"HTTP {(int)status}")
    {
        public HttpStatusCode Status { get; } = status;
        public TimeSpan? RetryAfter { get; } = retryAfter;
    }

    [LoggerMessage(EventId = 900, Level = LogLevel.Information, Message = "{Repo}@{Revision} is commit {Commit}: {Files} file(s) selected, {Missing} to fetch ({Bytes} bytes)")]
    private partial void LogResolved(string repo, string revision, string commit, int files, int missing, long bytes);

    [LoggerMessage(EventId = 901, Level = LogLevel.Information, Message = "{Repo}@{Revision}: commit {Commit} is complete in {Directory}")]
    private partial void LogAlreadyComplete(string repo, string revision, string commit, string directory);

    [LoggerMessage(EventId = 902, Level = LogLevel.Information, Message = "Fetching {File} ({Size} bytes, resuming at {Offset})")]
    private partial void LogFetching(string file, long size, long offset);

    [LoggerMessage(EventId = 903, Level = LogLevel.Information, Message = "{File}: {Done} of {Size} bytes ({Rate:F1} MB/s)")]
    private partial void LogProgress(string file, long done, long size, double rate);

    [LoggerMessage(EventId = 904, Level = LogLevel.Information, Message = "Fetched {File} ({Size} bytes) in {Seconds:F2} s ({Rate:F1} MB/s), {Check} verified")]
    private partial void LogFetched(string file, long size, double seconds, double rate, string check);

    [LoggerMessage(EventId = 905, Level = LogLevel.Warning, Message = "{What}: attempt failed ({Failures} of {MaxAttempts} without progress): {Reason}; retrying in {Delay:F1} s")]
    private partial void LogRetrying(string what, int failures, int maxAttempts, string reason, double delay);

    [LoggerMessage(EventId = 906, Level = LogLevel.Information, Message = "Another process holds {LockFile}; waiting up to {Seconds} s for it to finish")]
    private partial void LogWaitingForLock(string lockFile, double seconds);

    [LoggerMessage(EventId = 907, Level = LogLevel.Warning, Message = "{Repo}@{Revision}: the hub is unreachable ({Reason}); using the finished local copy of commit {Commit}")]
    private partial void LogServingLocalCopy(string repo, string revision, string commit, string reason);

    [LoggerMessage(EventId = 908, Level = LogLevel.Information, Message = "{Repo}@{Commit}: fetched {Files} file(s), {Bytes} bytes received in {Seconds:F1} s ({Rate:F1} MB/s)")]
    private partial void LogFinished(string repo, string commit, int files, long bytes, double seconds, double rate);

    [LoggerMessage(EventId = 909, Level = LogLevel.Debug, Message = "Redirect from {From} to {To} (token sent there: {WithToken})")]
    private partial void LogRedirect(string from, string to, bool withToken);
}
