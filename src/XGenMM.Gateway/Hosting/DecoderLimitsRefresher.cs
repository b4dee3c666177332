using XGenMM.Cluster.Client;

namespace XGenMM.Gateway.Hosting;

/// <summary>Keeps <see cref="ServedModel.ContextLength"/> current from the decoders' load reports between requests, so
/// that the page and /v1/models show the engines' limit before the first chat turn.</summary>
internal sealed partial class DecoderLimitsRefresher(IClusterChat cluster, ServedModel model, IHostApplicationLifetime lifetime,
    ILogger<DecoderLimitsRefresher> logger) : BackgroundService
{
    private static readonly TimeSpan Every = TimeSpan.FromSeconds(2);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var started = new TaskCompletionSource();
        using (lifetime.ApplicationStarted.Register(() => started.TrySetResult()))
            await started.Task.WaitAsync(stoppingToken).ConfigureAwait(false);
        using var timer = new PeriodicTimer(Every);
        do
        {
            try
            {
                model.LearnFrom(await cluster.GetDecodersAsync(stoppingToken).WaitAsync(Every, stoppingToken).ConfigureAwait(false));
            }
            catch (Exception e) when (e is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
            {
                LogRefreshFailed(e.Message);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    [LoggerMessage(EventId = 712, Level = LogLevel.Debug, Message = "Could not read the decoders' limits: {Reason}")]
    private partial void LogRefreshFailed(string reason);
}
