using System.ComponentModel.DataAnnotations;

namespace XGenMM.Model.Hub;

/// <summary>
/// Which Hugging Face repository to fetch into <c>Model:Path</c>, and the limits of fetching it. Bound from
/// <c>Model:HuggingFace</c> (docs/configuration.md); an empty <see cref="Repo"/> means the checkpoint is already there.
/// </summary>
public sealed class HubDownloadOptions
{
    /// <summary>The hub's base URL: huggingface.co, or a mirror that serves the same API and URL layout.</summary>
    public string Endpoint { get; set; } = "https://huggingface.co";

    /// <summary>owner/name of a model repository; empty = no download.</summary>
    public string Repo { get; set; } = "";

    /// <summary>Branch, tag or commit. A 40-hex commit whose files are complete locally needs no network at all.</summary>
    public string Revision { get; set; } = "main";

    /// <summary>A file that holds the access token (a mounted Secret); read before <see cref="TokenEnvironmentVariable"/>.</summary>
    public string? TokenFile { get; set; }

    /// <summary>The environment variable that holds the access token when no <see cref="TokenFile"/> is set.</summary>
    public string TokenEnvironmentVariable { get; set; } = "HF_TOKEN";

    /// <summary>Comma list of file-name globs (top level of the repository; <c>*</c> and <c>?</c>) to fetch: what the
    /// loader reads (config.json, preprocessor_config.json, tokenizer files with the chat template, the safetensors
    /// shards and their index). The gateway needs no weights: <c>*.json,*.jinja</c>.</summary>
    public string Files { get; set; } = "*.json,*.safetensors,*.jinja";

    /// <summary>Never touch the network: succeed only when a finished download of this repo and revision is there.</summary>
    public bool Offline { get; set; }

    /// <summary>Attempts per request that make no progress before the download fails (an attempt that received bytes
    /// resets the count: a long file on a flaky link keeps resuming).</summary>
    [Range(1, 100)] public int MaxAttempts { get; set; } = 5;

    /// <summary>Wait before the second attempt; doubles with each further attempt up to <see cref="RetryMaxDelaySeconds"/>.</summary>
    [Range(0.0, 600.0)] public double RetryBaseDelaySeconds { get; set; } = 1;

    [Range(0.0, 3600.0)] public double RetryMaxDelaySeconds { get; set; } = 30;

    /// <summary>Limit on an API call, and on a file request until its response headers arrive.</summary>
    [Range(0.1, 3600.0)] public double RequestTimeoutSeconds { get; set; } = 30;

    /// <summary>A file transfer that receives no byte for this long is cut and resumed.</summary>
    [Range(0.1, 3600.0)] public double StallTimeoutSeconds { get; set; } = 60;

    /// <summary>How long a process waits for another one that holds the cache's lock (downloading the same files).</summary>
    [Range(0.0, 86400.0)] public double LockTimeoutSeconds { get; set; } = 7200;

    /// <summary>Redirects followed per request (the hub sends LFS files to its CDN, renamed repos to the new name).</summary>
    [Range(0, 20)] public int MaxRedirects { get; set; } = 5;

    /// <summary>A progress line per file at most this often.</summary>
    [Range(0.1, 3600.0)] public double ProgressLogSeconds { get; set; } = 10;

    public bool Enabled => !string.IsNullOrWhiteSpace(Repo);

    /// <summary>The file globs of <see cref="Files"/>.</summary>
    public IReadOnlyList<string> FilePatterns() =>
        Files.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>Throws a <see cref="HubDownloadException"/> naming the first invalid setting.</summary>
    public void Validate()
    {
        var results = new List<ValidationResult>();
        if (!Validator.TryValidateObject(this, new ValidationContext(this), results, validateAllProperties: true))
            throw new HubDownloadException(HubFailure.Configuration, "Model:HuggingFace: " + string.Join("; ", results.Select(r => r.ErrorMessage)));
        if (!Uri.TryCreate(Endpoint, UriKind.Absolute, out var endpoint) || endpoint.Scheme is not ("https" or "http"))
            throw new HubDownloadException(HubFailure.Configuration, $"Model:HuggingFace:Endpoint must be an absolute http(s) URL; got '{Endpoint}'.");
        if (!HubRepository.IsValidRepoId(Repo))
            throw new HubDownloadException(HubFailure.Configuration, $"Model:HuggingFace:Repo must be owner/name; got '{Repo}'.");
        if (string.IsNullOrWhiteSpace(Revision))
            throw new HubDownloadException(HubFailure.Configuration, "Model:HuggingFace:Revision is empty (use main, a tag or a commit).");
        if (FilePatterns().Count == 0)
            throw new HubDownloadException(HubFailure.Configuration, "Model:HuggingFace:Files names no file pattern.");
        if (RetryMaxDelaySeconds < RetryBaseDelaySeconds)
            throw new HubDownloadException(HubFailure.Configuration, "Model:HuggingFace:RetryMaxDelaySeconds is below RetryBaseDelaySeconds.");
    }
}
