using Microsoft.Extensions.Logging;

namespace XGenMM.Model.Hub;

/// <summary>
/// The hosts' download step, shared by the silo (before it loads) and by the <c>--download-model</c> mode of the silo
/// and gateway executables (the Helm chart's init containers): one start line, the download, and on failure one
/// critical line that says what failed and why.
/// </summary>
public static partial class HubDownloadCommand
{
    /// <summary>The argument that makes a host download its model into Model:Path and exit (0 when the files are there).</summary>
    public const string Argument = "--download-model";

    public static bool Requested(IEnumerable<string> args) => args.Contains(Argument, StringComparer.Ordinal);

    /// <summary>Downloads into <paramref name="directory"/>; throws <see cref="HubDownloadException"/> after logging it.</summary>
    public static async Task<HubDownloadResult> RunAsync(HubDownloadOptions options, string? directory, ILogger logger, CancellationToken cancellationToken)
    {
        try
        {
            if (string.IsNullOrWhiteSpace(directory))
                throw new HubDownloadException(HubFailure.Configuration, "Model:HuggingFace:Repo is set but Model:Path is empty: Model:Path names the directory the repository is downloaded into.");
            using var downloader = new HubDownloader(options, logger);
            // Without user info: an endpoint URL could carry credentials of a mirror.
            string endpoint = new UriBuilder(options.Endpoint) { UserName = "", Password = "" }.Uri.AbsoluteUri;
            LogStarting(logger, options.Repo, options.Revision, endpoint, directory, downloader.HasToken, options.Offline);
            return await downloader.DownloadAsync(directory, cancellationToken).ConfigureAwait(false);
        }
        catch (HubDownloadException e)
        {
            LogFailed(logger, e.Failure, e.Message);
            throw;
        }
    }

    /// <summary>The <c>--download-model</c> mode: the process exit code (0 done, 1 failed).</summary>
    public static async Task<int> RunToExitCodeAsync(HubDownloadOptions options, string? directory, ILogger logger, CancellationToken cancellationToken)
    {
        if (!options.Enabled)
        {
            LogNothingToDo(logger, directory ?? "");
            return 0;
        }
        try
        {
            await RunAsync(options, directory, logger, cancellationToken).ConfigureAwait(false);
            return 0;
        }
        catch (HubDownloadException)
        {
            return 1;
        }
    }

    [LoggerMessage(EventId = 920, Level = LogLevel.Information, Message = "Model download: {Repo}@{Revision} from {Endpoint} into {Directory} (token: {HasToken}, offline: {Offline})")]
    private static partial void LogStarting(ILogger logger, string repo, string revision, string endpoint, string directory, bool hasToken, bool offline);

    [LoggerMessage(EventId = 921, Level = LogLevel.Critical, Message = "Model download failed ({Failure}): {Reason}")]
    private static partial void LogFailed(ILogger logger, HubFailure failure, string reason);

    [LoggerMessage(EventId = 922, Level = LogLevel.Information, Message = "Model download: Model:HuggingFace:Repo is empty, nothing to download; serving {Directory} as it is")]
    private static partial void LogNothingToDo(ILogger logger, string directory);
}
