namespace XGenMM.Model.Hub;

/// <summary>Why a download failed; callers and tests tell the cases apart without parsing messages.</summary>
public enum HubFailure
{
    /// <summary>A setting of Model:HuggingFace is invalid.</summary>
    Configuration,
    /// <summary>401/403: a gated or private repository without (or with a wrong) token.</summary>
    Unauthorized,
    /// <summary>404: no such repository, revision or file.</summary>
    NotFound,
    /// <summary>A file's bytes do not match the checksum the hub lists.</summary>
    ChecksumMismatch,
    /// <summary>The hub answered something this client cannot use (bad JSON, wrong sizes, a redirect loop).</summary>
    Protocol,
    /// <summary>Network errors, timeouts or 5xx/429 answers through every attempt.</summary>
    Unavailable,
    /// <summary>Another process held the cache's lock longer than Model:HuggingFace:LockTimeoutSeconds.</summary>
    LockTimeout,
    /// <summary>Offline, and no finished download of this repository and revision is in the directory.</summary>
    OfflineIncomplete,
}

/// <summary>A download that could not finish. The message names the repository, the file and the cause, never the token.</summary>
public sealed class HubDownloadException : Exception
{
    public HubFailure Failure { get; }

    /// <summary>The HTTP status of the answer that ended the download, when one did.</summary>
    public int? StatusCode { get; }

    public HubDownloadException(HubFailure failure, string message, Exception? inner = null, int? statusCode = null)
        : base(message, inner)
    {
        Failure = failure;
        StatusCode = statusCode;
    }

    public HubDownloadException()
    {
    }

    public HubDownloadException(string message) : base(message)
    {
    }

    public HubDownloadException(string message, Exception innerException) : base(message, innerException)
    {
    }
}
