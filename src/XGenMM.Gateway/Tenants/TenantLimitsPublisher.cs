using XGenMM.Cluster.Abstractions;

namespace XGenMM.Gateway.Tenants;

/// <summary>Writes every configured tenant's limits to its tenant grain once the cluster is reachable (grain state is the
/// authority every gateway reads; configuration is where operators change it).</summary>
internal sealed partial class TenantLimitsPublisher(TenantDirectory tenants, IGrainFactory grains, IHostApplicationLifetime lifetime,
    ILogger<TenantLimitsPublisher> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var started = new TaskCompletionSource();
        using (lifetime.ApplicationStarted.Register(() => started.TrySetResult()))
            await started.Task.WaitAsync(stoppingToken).ConfigureAwait(false);
        foreach (var tenant in tenants.Tenants)
        {
            for (int attempt = 1; !stoppingToken.IsCancellationRequested; attempt++)
            {
                try
                {
                    await grains.GetGrain<ITenantGrain>(tenant.Id).SetLimits(tenant.Limits.ToLimits()).WaitAsync(TimeSpan.FromSeconds(10), stoppingToken).ConfigureAwait(false);
                    break;
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogPublishFailed(e, tenant.Id, attempt);
                    await Task.Delay(TimeSpan.FromSeconds(Math.Min(30, attempt * 2)), stoppingToken).ConfigureAwait(false);
                }
            }
        }
    }

    [LoggerMessage(EventId = 711, Level = LogLevel.Warning, Message = "Could not write the limits of tenant {Tenant} (attempt {Attempt}); retrying")]
    private partial void LogPublishFailed(Exception exception, string tenant, int attempt);
}
