using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Prometheus;

namespace XGenMM.ServiceDefaults;

/// <summary>
/// One Prometheus registry per host, not prometheus-net's process-wide default: counters exported from engine totals
/// (IncTo) would otherwise report the largest total of any host in the process, and tests run several hosts in one.
/// </summary>
public static class MetricsRegistration
{
    public static IServiceCollection AddXGenMMMetricsRegistry(this IServiceCollection services)
    {
        services.TryAddSingleton(_ =>
        {
            var registry = Metrics.NewCustomRegistry();
            DotNetStats.Register(registry);
            return registry;
        });
        return services;
    }

    /// <summary>Serves this host's registry in the Prometheus text format.</summary>
    public static IEndpointConventionBuilder MapXGenMMMetrics(this IEndpointRouteBuilder endpoints, string pattern = "/metrics")
    {
        var registry = endpoints.ServiceProvider.GetRequiredService<CollectorRegistry>();
        return endpoints.MapMetrics(settings => settings.Registry = registry, pattern);
    }
}
