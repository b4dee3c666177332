using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace XGenMM.Cluster.Client;

public static class ServiceCollectionExtensions
{
    /// <summary>Registers <see cref="IClusterChat"/> (routing + recovery) with options from <c>Cluster:Routing</c> and
    /// admission control from <c>Cluster:Admission</c>.</summary>
    public static IServiceCollection AddXGenMMClusterChat(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<ClusterChatOptions>().Bind(configuration.GetSection("Cluster:Routing"))
            .Configure(o => configuration.GetSection("Cluster:Admission").Bind(o.Admission))
            .Configure(o => configuration.GetSection("Cluster:Deadlines").Bind(o.Deadlines))
            .Validate(o => o.MaxRecoveryAttempts >= 0 && o.StreamBatchSize >= 1 && o.RegistryRefresh >= TimeSpan.Zero,
                "Cluster:Routing needs MaxRecoveryAttempts >= 0, StreamBatchSize >= 1 and a non-negative RegistryRefresh.")
            .Validate(o => o.Admission.TtftTargetSeconds >= 0 && o.Admission.MaxRetryAfterSeconds >= 1,
                "Cluster:Admission needs TtftTargetSeconds >= 0 (0 = off) and MaxRetryAfterSeconds >= 1.")
            .Validate(o => new[] { o.Deadlines.Tenant, o.Deadlines.Encode, o.Deadlines.Registry, o.Deadlines.RegistryMaxAge, o.Deadlines.ViewPoll, o.Deadlines.View, o.Deadlines.StreamDispose }
                .All(t => t > TimeSpan.Zero && t <= TimeSpan.FromHours(1)),
                "Cluster:Deadlines: every deadline must be positive and at most an hour.")
            .ValidateOnStart();
        services.AddSingleton<IClusterChat, ClusterChat>();
        return services;
    }
}
