using Microsoft.AspNetCore.Authentication;
using XGenMM.Gateway.Hosting;

namespace XGenMM.Gateway.Tenants;

/// <summary>Tenant policy in one place: who the tenants are, how their API keys authenticate, and how their limits
/// reach the tenant grains.</summary>
internal static class TenantServices
{
    /// <summary>Registers the tenant directory, API-key authentication and the limits publisher. In Local mode without
    /// configured tenants, one development tenant "dev" is made; its key (configured or random) is returned.</summary>
    public static string? AddXGenMMTenants(this IServiceCollection services, IConfiguration configuration, GatewayMode mode, string configuredDevelopmentKey)
    {
        var tenants = TenantDirectory.Load(configuration);
        string? developmentKey = null;
        if (tenants.Count == 0)
        {
            if (mode != GatewayMode.Local)
                throw new InvalidOperationException("No tenants are configured: set Tenants:File (or Tenants:Tenants) in Cluster mode.");
            developmentKey = string.IsNullOrWhiteSpace(configuredDevelopmentKey) ? TenantDirectory.NewKey() : configuredDevelopmentKey;
            tenants.Add(new TenantEntry { Id = "dev", KeySha256 = [TenantDirectory.Hash(developmentKey)] });
        }
        services.AddSingleton(new TenantDirectory(tenants));
        services.AddHostedService<TenantLimitsPublisher>();
        services.AddAuthentication(ApiKeyAuthenticationHandler.SchemeName)
            .AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
        return developmentKey;
    }
}
