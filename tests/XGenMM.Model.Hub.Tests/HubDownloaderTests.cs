using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using XGenMM.Model.Checkpoints;
using XGenMM.Model.Configuration;
using XGenMM.Model.Tokenization;

namespace XGenMM.Model.Hub.Tests;

/// <summary>
/// The downloader against a hub in real Kestrel on loopback (the model API, resolve URLs, LFS files redirected to a CDN
/// on a second port), with a checkpoint generated in the Hugging Face layout: what it fetches, how it resumes, what it
/// refuses, what it logs, and every limit.
/// </summary>
public sealed class HubDownloaderTests : IAsyncLifetime
{
    private readonly List<string> _dirs = [];
    private readonly CapturedLogs _logs = new();
    private LoopbackHub _hub = null!;

    public async ValueTask InitializeAsync() => _hub = await LoopbackHub.StartAsync(TestCheckpoint.Repo, TestCheckpoint.Files());

    public async ValueTask DisposeAsync()
    {
        await _hub.DisposeAsync();
        foreach (var dir in _dirs.Where(Directory.Exists)) Directory.Delete(dir, recursive: true);
    }

    private string NewDirectory()
    {
        string dir = Path.Combine(Path.GetTempPath(), "xgenmm-hub-" + Guid.NewGuid().ToString("N")[..10], "model");
        _dirs.Add(Path.GetDirectoryName(dir)!);
        return dir;
    }

    private HubDownloadOptions Options(Action<HubDownloadOptions>? change = null)
    {
        var options = new HubDownloadOptions
        {
            Endpoint = _hub.Endpoint,
            Repo = _hub.Repo,
            Revision = "main",
            // The machine's own HF_TOKEN (if any) must not leak into these tests.
            TokenEnvironmentVariable = "",
            RetryBaseDelaySeconds = 0.05,
            RetryMaxDelaySeconds = 0.2,
        };
        change?.Invoke(options);
        return options;
    }

    private async Task<HubDownloadResult> DownloadAsync(string dir, Action<HubDownloadOptions>? change = null)
    {
        using var downloader = new HubDownloader(Options(change), _logs);
        return await downloader.DownloadAsync(dir, TestContext.Current.CancellationToken);
    }

    private async Task<HubDownloadException> FailAsync(string dir, Action<HubDownloadOptions>? change = null) =>
        await Assert.ThrowsAsync<HubDownloadException>(() => DownloadAsync(dir, change));

    private string LargestShard => _hub.Files.Where(f => f.Key.EndsWith(".safetensors", StringComparison.Ordinal)).MaxBy(f => f.Value.Length).Key;

    private List<HubRequest> Transfers(string file) => _hub.FileRequests(file).Where(r => r.Status is 200 or 206).ToList();

    [Fact]
    public async Task A_download_fetches_the_loader_files_verified_and_the_real_loader_loads_them()
    {
        string dir = NewDirectory();
        var result = await DownloadAsync(dir);

        var expected = TestCheckpoint.LoaderFiles(_hub.Files).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(expected, result.Files.Select(f => f.Path));
        Assert.Contains("model.safetensors.index.json", expected);
        Assert.True(expected.Count(f => f.EndsWith(".safetensors", StringComparison.Ordinal)) >= 3, "the 2 MB shard limit must give several shards");
        foreach (var path in expected)
            Assert.Equal(_hub.Files[path], await File.ReadAllBytesAsync(Path.Combine(dir, path), TestContext.Current.CancellationToken));
        // Neither the remote code, the README nor the sample folder: the loader does not read them.
        Assert.False(File.Exists(Path.Combine(dir, "README.md")));
        Assert.False(File.Exists(Path.Combine(dir, "modeling_xgenmm.py")));
        Assert.False(Directory.Exists(Path.Combine(dir, "test_samples")));
        Assert.Equal(LoopbackHub.Commit, result.Commit);
        Assert.Equal(expected.Count, result.FilesFetched);
        Assert.Equal(expected.Sum(p => (long)_hub.Files[p].Length), result.BytesReceived);
        Assert.Empty(Directory.GetFiles(Path.Combine(dir, HubDownloader.StateDirectoryName, "partial")));

        // Every file was asked for at the resolved commit; LFS files came from the CDN, the others from the hub.
        Assert.All(_hub.Requests.Where(r => r.Path.Contains("/resolve/", StringComparison.Ordinal)), r => Assert.Contains("/resolve/" + LoopbackHub.Commit + "/", r.Path, StringComparison.Ordinal));
        Assert.All(expected.Where(LoopbackHub.IsLfs), p => Assert.Equal("cdn", Assert.Single(Transfers(p)).Listener));
        Assert.All(expected.Where(p => !LoopbackHub.IsLfs(p)), p => Assert.Equal("hub", Assert.Single(Transfers(p)).Listener));

        using var model = new XGenMMModel(XGenMMConfig.FromDirectory(dir));
        var report = CheckpointLoader.Load(model, dir);
        Assert.Equal(CheckpointLoader.ExpectedTensors(model).Count, report.Tensors);
        var tokenizer = XGenMMTokenizer.FromDirectory(dir);
        Assert.NotEmpty(tokenizer.Encode("a photo of a cat"));
        Assert.NotNull(ChatTemplate.FromDirectory(dir));
        Assert.Contains(_logs.Lines, l => l.Contains($"is commit {LoopbackHub.Commit}", StringComparison.Ordinal));
        Assert.Contains(_logs.Lines, l => l.Contains("sha256 verified", StringComparison.Ordinal));
        Assert.Contains(_logs.Lines, l => l.Contains("git blob id verified", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_restart_on_the_same_revision_asks_the_hub_once_a_pinned_commit_or_offline_not_at_all()
    {
        string dir = NewDirectory();
        await DownloadAsync(dir);
        int before = _hub.Requests.Count;

        var again = await DownloadAsync(dir);
        Assert.Equal(0, again.FilesFetched);
        Assert.True(again.AskedHub);
        var asked = Assert.Single(_hub.Requests.Skip(before));
        Assert.StartsWith("/api/models/", asked.Path, StringComparison.Ordinal);

        before = _hub.Requests.Count;
        var pinned = await DownloadAsync(dir, o => o.Revision = LoopbackHub.Commit);
        var offline = await DownloadAsync(dir, o => o.Offline = true);
        Assert.False(pinned.AskedHub);
        Assert.False(offline.AskedHub);
        Assert.Equal(before, _hub.Requests.Count);
        Assert.Equal(again.Files, offline.Files);

        // The hub gone: the finished copy is used, with a warning, after the attempts.
        var gone = await DownloadAsync(dir, o => { o.Endpoint = $"http://127.0.0.1:{ClosedPort()}"; o.MaxAttempts = 2; });
        Assert.Equal(LoopbackHub.Commit, gone.Commit);
        Assert.Contains(_logs.Lines, l => l.StartsWith("Warning", StringComparison.Ordinal) && l.Contains("using the finished local copy", StringComparison.Ordinal));

        var empty = await FailAsync(NewDirectory(), o => o.Offline = true);
        Assert.Equal(HubFailure.OfflineIncomplete, empty.Failure);
    }

    [Fact]
    public async Task A_file_changed_on_disk_is_fetched_again_and_a_hand_placed_verified_file_is_kept()
    {
        string dir = NewDirectory();
        await DownloadAsync(dir);
        string shard = LargestShard;
        await File.WriteAllTextAsync(Path.Combine(dir, shard), "truncated", TestContext.Current.CancellationToken);
        File.Delete(Path.Combine(dir, HubDownloader.StateDirectoryName, "manifest.json"));

        var repaired = await DownloadAsync(dir);
        // Without the manifest every present file was hashed: only the damaged shard is fetched again.
        Assert.Equal(1, repaired.FilesFetched);
        Assert.Equal(2, Transfers(shard).Count);
        Assert.Equal(_hub.Files[shard], await File.ReadAllBytesAsync(Path.Combine(dir, shard), TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task A_transfer_cut_mid_file_resumes_with_a_range_request_for_the_rest_only()
    {
        string dir = NewDirectory();
        string shard = LargestShard;
        long size = _hub.Files[shard].Length, cut = size / 2 / _hub.ChunkBytes * _hub.ChunkBytes;
        _hub.CutAfter[shard] = cut;

        var result = await DownloadAsync(dir);

        var transfers = Transfers(shard);
        Assert.Equal(2, transfers.Count);
        Assert.Null(transfers[0].RangeFrom);
        Assert.Equal(cut, transfers[0].BodyBytes);
        long resumedAt = transfers[1].RangeFrom ?? -1;
        Assert.InRange(resumedAt, 1, cut);
        Assert.Equal(206, transfers[1].Status);
        Assert.Equal(size - resumedAt, transfers[1].BodyBytes);
        Assert.Equal(_hub.Files[shard], await File.ReadAllBytesAsync(Path.Combine(dir, shard), TestContext.Current.CancellationToken));
        // The client kept every byte it received: it wrote each file's size once.
        Assert.Equal(result.Files.Sum(f => f.Size), result.BytesReceived);
        Assert.Contains(_logs.Lines, l => l.Contains($"{shard}: attempt failed", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_stalled_transfer_is_cut_after_the_stall_timeout_and_resumed()
    {
        string dir = NewDirectory();
        string shard = LargestShard;
        _hub.StallAfter[shard] = 4 * _hub.ChunkBytes;
        var clock = Stopwatch.StartNew();

        await DownloadAsync(dir, o => o.StallTimeoutSeconds = 0.5);

        Assert.InRange(clock.Elapsed.TotalSeconds, 0.5, 20);
        var transfers = Transfers(shard);
        Assert.Equal(2, transfers.Count);
        Assert.InRange(transfers[1].RangeFrom ?? -1, 1, 4 * _hub.ChunkBytes);
        Assert.Contains(_logs.Lines, l => l.Contains("no byte for 0.5 s", StringComparison.Ordinal));
        Assert.Equal(_hub.Files[shard], await File.ReadAllBytesAsync(Path.Combine(dir, shard), TestContext.Current.CancellationToken));
    }

    [Theory]
    [InlineData("lfs")]
    [InlineData("git")]
    public async Task A_checksum_mismatch_fails_clearly_and_keeps_no_bad_file(string kind)
    {
        string dir = NewDirectory();
        string file = kind == "lfs" ? LargestShard : "config.json";
        _hub.Corrupt[file] = true;

        var error = await FailAsync(dir);

        Assert.Equal(HubFailure.ChecksumMismatch, error.Failure);
        Assert.Contains(file, error.Message, StringComparison.Ordinal);
        Assert.Contains(kind == "lfs" ? "sha256 " + LoopbackHub.Sha256(_hub.Files[file]) : "git blob id " + LoopbackHub.GitBlobId(_hub.Files[file]), error.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(dir, file)));
        Assert.Empty(Directory.GetFiles(Path.Combine(dir, HubDownloader.StateDirectoryName, "partial")));
    }

    [Fact]
    public async Task Two_downloaders_on_one_cache_fetch_each_file_once_the_second_waits_for_the_first()
    {
        string dir = NewDirectory();
        // The first holds the lock while the API answers slowly: the second certainly arrives while it is held.
        _hub.ApiDelay = TimeSpan.FromMilliseconds(400);
        var first = DownloadAsync(dir);
        var second = DownloadAsync(dir);
        var results = await Task.WhenAll(first, second);

        Assert.All(TestCheckpoint.LoaderFiles(_hub.Files), f => Assert.Single(Transfers(f)));
        Assert.Equal(TestCheckpoint.LoaderFiles(_hub.Files).Count(), results.Sum(r => r.FilesFetched));
        Assert.Contains(results, r => r.FilesFetched == 0);
        Assert.Single(_logs.Lines, l => l.Contains("Another process holds", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_lock_held_past_the_lock_timeout_fails_clearly()
    {
        string dir = NewDirectory();
        string state = Path.Combine(dir, HubDownloader.StateDirectoryName);
        Directory.CreateDirectory(state);
        using var held = new FileStream(Path.Combine(state, "lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        var clock = Stopwatch.StartNew();

        var error = await FailAsync(dir, o => o.LockTimeoutSeconds = 0.6);

        Assert.Equal(HubFailure.LockTimeout, error.Failure);
        Assert.Contains("0.6 s", error.Message, StringComparison.Ordinal);
        Assert.InRange(clock.Elapsed.TotalSeconds, 0.6, 10);
        Assert.Empty(_hub.Requests);
    }

    [Theory]
    [InlineData("file")]
    [InlineData("environment")]
    public async Task The_token_goes_as_bearer_to_the_hub_never_to_the_cdn_and_never_into_a_log(string source)
    {
        string token = "hf_" + Guid.NewGuid().ToString("N");
        _hub.RequiredToken = token;
        string dir = NewDirectory();
        string tokenFile = Path.Combine(Path.GetDirectoryName(dir)!, "token");
        string variable = "XGENMM_TEST_HF_TOKEN_" + Guid.NewGuid().ToString("N")[..8];
        Directory.CreateDirectory(Path.GetDirectoryName(tokenFile)!);
        await File.WriteAllTextAsync(tokenFile, token + "\n", TestContext.Current.CancellationToken);
        Environment.SetEnvironmentVariable(variable, token);
        try
        {
            await DownloadAsync(dir, o =>
            {
                if (source == "file") o.TokenFile = tokenFile;
                else o.TokenEnvironmentVariable = variable;
            });
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, null);
        }

        var hub = _hub.Requests.Where(r => r.Listener == "hub").ToList();
        var cdn = _hub.Requests.Where(r => r.Listener == "cdn").ToList();
        Assert.NotEmpty(cdn);
        Assert.All(hub, r => Assert.Equal("Bearer " + token, r.Authorization));
        Assert.All(cdn, r => Assert.Null(r.Authorization));
        Assert.NotEmpty(_logs.Lines);
        Assert.DoesNotContain(token, _logs.All, StringComparison.Ordinal);
        Assert.DoesNotContain("cdn-signature-secret", _logs.All, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_gated_repository_without_a_token_or_with_a_wrong_one_gives_a_clear_401_error()
    {
        _hub.RequiredToken = "hf_right";
        var anonymous = await FailAsync(NewDirectory());
        Assert.Equal(HubFailure.Unauthorized, anonymous.Failure);
        Assert.Equal(401, anonymous.StatusCode);
        Assert.Contains("HTTP 401 [GatedRepo]", anonymous.Message, StringComparison.Ordinal);
        Assert.Contains("needs a token", anonymous.Message, StringComparison.Ordinal);

        string wrong = "hf_wrong_" + Guid.NewGuid().ToString("N");
        string tokenFile = Path.Combine(Path.GetTempPath(), "xgenmm-token-" + Guid.NewGuid().ToString("N"));
        await File.WriteAllTextAsync(tokenFile, wrong, TestContext.Current.CancellationToken);
        try
        {
            var refused = await FailAsync(NewDirectory(), o => o.TokenFile = tokenFile);
            Assert.Equal(HubFailure.Unauthorized, refused.Failure);
            Assert.Contains("was not accepted", refused.Message, StringComparison.Ordinal);
            Assert.DoesNotContain(wrong, refused.ToString(), StringComparison.Ordinal);
            Assert.DoesNotContain(wrong, _logs.All, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(tokenFile);
        }
        // Refusals are final: one request each, no retries.
        Assert.Equal(2, _hub.Requests.Count);
    }

    [Fact]
    public async Task An_unknown_revision_gives_a_clear_404_error_without_retries()
    {
        var error = await FailAsync(NewDirectory(), o => o.Revision = "v9.9");
        Assert.Equal(HubFailure.NotFound, error.Failure);
        Assert.Contains("HTTP 404", error.Message, StringComparison.Ordinal);
        Assert.Contains("RevisionNotFound", error.Message, StringComparison.Ordinal);
        Assert.Contains("v9.9", error.Message, StringComparison.Ordinal);
        Assert.Single(_hub.Requests);
    }

    [Fact]
    public async Task Files_that_match_nothing_are_a_clear_error()
    {
        var error = await FailAsync(NewDirectory(), o => o.Files = "*.gguf");
        Assert.Equal(HubFailure.NotFound, error.Failure);
        Assert.Contains("*.gguf", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Transient_failures_are_retried_up_to_max_attempts_with_doubling_backoff()
    {
        _hub.ApiFailures = 2;
        var clock = Stopwatch.StartNew();
        await DownloadAsync(NewDirectory(), o => { o.MaxAttempts = 3; o.RetryBaseDelaySeconds = 0.2; o.RetryMaxDelaySeconds = 5; });
        // Two failures: waits of 0.2 s and 0.4 s before the third attempt.
        Assert.InRange(clock.Elapsed.TotalSeconds, 0.6, 30);
        Assert.Equal(3, _hub.Requests.Count(r => r.Path.StartsWith("/api/", StringComparison.Ordinal)));

        _hub.ApiFailures = 100;
        _hub.ApiFailureStatus = 429;
        int before = _hub.Requests.Count;
        var error = await FailAsync(NewDirectory(), o => o.MaxAttempts = 3);
        Assert.Equal(HubFailure.Unavailable, error.Failure);
        Assert.Equal(429, error.StatusCode);
        Assert.Contains("MaxAttempts 3", error.Message, StringComparison.Ordinal);
        Assert.Contains("HTTP 429", error.Message, StringComparison.Ordinal);
        Assert.Equal(3, _hub.Requests.Count - before);
    }

    [Fact]
    public void Backoff_doubles_from_the_base_honours_retry_after_and_stops_at_the_maximum()
    {
        using var downloader = new HubDownloader(Options(o => { o.RetryBaseDelaySeconds = 1; o.RetryMaxDelaySeconds = 30; }), _logs);
        Assert.Equal(TimeSpan.FromSeconds(1), downloader.Backoff(1, null));
        Assert.Equal(TimeSpan.FromSeconds(2), downloader.Backoff(2, null));
        Assert.Equal(TimeSpan.FromSeconds(16), downloader.Backoff(5, null));
        Assert.Equal(TimeSpan.FromSeconds(30), downloader.Backoff(6, null));
        Assert.Equal(TimeSpan.FromSeconds(7), downloader.Backoff(1, TimeSpan.FromSeconds(7)));
        Assert.Equal(TimeSpan.FromSeconds(30), downloader.Backoff(1, TimeSpan.FromHours(1)));
    }

    [Fact]
    public async Task An_api_call_past_the_request_timeout_is_retried_then_fails_clearly()
    {
        _hub.ApiDelay = TimeSpan.FromSeconds(5);
        var clock = Stopwatch.StartNew();
        var error = await FailAsync(NewDirectory(), o => { o.RequestTimeoutSeconds = 0.3; o.MaxAttempts = 2; });
        Assert.Equal(HubFailure.Unavailable, error.Failure);
        Assert.Contains("did not answer within 0.3 s", error.Message, StringComparison.Ordinal);
        Assert.InRange(clock.Elapsed.TotalSeconds, 0.6, 4.5);
    }

    [Fact]
    public async Task A_redirect_loop_stops_after_max_redirects()
    {
        _hub.RedirectLoop = true;
        var error = await FailAsync(NewDirectory(), o => { o.MaxRedirects = 3; o.Files = "*.safetensors"; });
        Assert.Equal(HubFailure.Protocol, error.Failure);
        Assert.Contains("More than 3 redirects", error.Message, StringComparison.Ordinal);
        // The hub's resolve URL, then three hops on the CDN.
        Assert.Equal(3, _hub.Requests.Count(r => r.Listener == "cdn"));
    }

    [Theory]
    [InlineData("no-slash")]
    [InlineData("../escape/x")]
    [InlineData("owner/name/extra")]
    public void A_malformed_repo_id_is_a_configuration_error(string repo)
    {
        var error = Assert.Throws<HubDownloadException>(() => new HubDownloader(Options(o => o.Repo = repo), _logs));
        Assert.Equal(HubFailure.Configuration, error.Failure);
        Assert.Contains("owner/name", error.Message, StringComparison.Ordinal);
    }

    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
