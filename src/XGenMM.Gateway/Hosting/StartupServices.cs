using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using XGenMM.Cluster.Abstractions;
using XGenMM.Gateway.Tenants;

namespace XGenMM.Gateway.Hosting;

/// <summary>The development key of Local mode (null when tenants are configured).</summary>
public sealed record StartupBanner(string? DevelopmentApiKey);

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

/// <summary>Prints where the gateway listens, the served model and, in Local mode, the development API key.</summary>
internal sealed class StartupAnnouncer(IServer server, StartupBanner banner, ServedModel model, IHostApplicationLifetime lifetime,
    XGenMM.ServiceDefaults.ManagementOptions management) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        lifetime.ApplicationStarted.Register(() =>
        {
            var addresses = server.Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
            Console.WriteLine();
            Console.WriteLine($"XGenMM gateway serving model '{model.Id}' from {model.Directory}");
            foreach (var address in addresses)
            {
                bool isManagement = management.Port > 0 && Uri.TryCreate(address.Replace("*", "localhost", StringComparison.Ordinal).Replace("+", "localhost", StringComparison.Ordinal), UriKind.Absolute, out var uri) && uri.Port == management.Port;
                Console.WriteLine(isManagement ? $"  metrics and probes: {address}" : $"  chat page and API: {address}");
            }
            if (banner.DevelopmentApiKey is { } key)
                Console.WriteLine($"  development API key (tenant 'dev'): {key}");
            Console.WriteLine();
        });
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
