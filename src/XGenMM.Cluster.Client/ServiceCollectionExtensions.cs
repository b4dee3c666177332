using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace XGenMM.Cluster.Client;

public static class ServiceCollectionExtensions
{
    /// <summary>Registers <see cref="IClusterChat"/> (routing + recovery) with options from <c>Cluster:Routing</c>.</summary>
    public static IServiceCollection AddXGenMMClusterChat(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<ClusterChatOptions>().Bind(configuration.GetSection("Cluster:Routing"))
            .Validate(o => o.MaxRecoveryAttempts >= 0 && o.StreamBatchSize >= 1 && o.RegistryRefresh >= TimeSpan.Zero,
                "Cluster:Routing needs MaxRecoveryAttempts >= 0, StreamBatchSize >= 1 and a non-negative RegistryRefresh.")
            .ValidateOnStart();
        services.AddSingleton<IClusterChat, ClusterChat>();
        return services;
    }
}
