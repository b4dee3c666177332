using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;
using Orleans.Runtime.MembershipService.SiloMetadata;
using StackExchange.Redis;
using XGenMM.Cluster.Placement;
using XGenMM.Engine.Decoding;
using XGenMM.Engine.Vision;

namespace XGenMM.Cluster.Hosting;

/// <summary>Cluster membership settings. Bound from <c>Cluster</c> (not <c>Orleans</c>: Orleans reads that section itself).</summary>
public sealed class OrleansSettings
{
    public string ClusterId { get; set; } = "xgenmm";
    public string ServiceId { get; set; } = "xgenmm";
    /// <summary>Redis or Localhost.</summary>
    public string Clustering { get; set; } = "Localhost";
    public string RedisConnectionString { get; set; } = "";
    public int SiloPort { get; set; } = 11111;
    public int GatewayPort { get; set; } = 30000;
    public string AdvertisedIP { get; set; } = "";
    public string SiloName { get; set; } = "";

    public bool UsesRedis => string.Equals(Clustering, "Redis", StringComparison.OrdinalIgnoreCase);

    public static OrleansSettings From(IConfiguration configuration)
    {
        var settings = configuration.GetSection("Cluster").Get<OrleansSettings>() ?? new OrleansSettings();
        if (!settings.UsesRedis && !string.Equals(settings.Clustering, "Localhost", StringComparison.OrdinalIgnoreCase))
            throw new InvalidOperationException($"Cluster:Clustering '{settings.Clustering}' is not one of Redis, Localhost.");
        if (settings.UsesRedis && string.IsNullOrWhiteSpace(settings.RedisConnectionString))
            throw new InvalidOperationException("Cluster:Clustering is Redis but Cluster:RedisConnectionString is empty.");
        return settings;
    }
}

public static class ClusterHostingExtensions
{
    /// <summary>
    /// Makes this silo an XGenMM silo: roles as silo metadata, role/decoder placement, the engines for its roles
    /// and devices, the registry announcements, drain on shutdown, tenant storage, engine metrics.
    /// </summary>
    public static ISiloBuilder AddXGenMMSilo(this ISiloBuilder silo, IConfiguration configuration)
    {
        var siloSettings = configuration.GetSection("Silo").Get<SiloSettings>() ?? new SiloSettings();
        var roles = SiloRoles.Parse(siloSettings.Roles);
        if (roles.Count == 0 || roles.Any(r => r is not (SiloRoles.Vision or SiloRoles.Decoder)))
            throw new InvalidOperationException($"Silo:Roles '{siloSettings.Roles}' must list vision and/or decoder.");
        silo.UseSiloMetadata(new Dictionary<string, string> { [SiloRoles.MetadataKey] = string.Join(',', roles.Order(StringComparer.Ordinal)) });
        silo.AddPlacementDirector<VisionSiloPlacement, VisionSiloPlacementDirector>();
        silo.AddPlacementDirector<DecoderPlacement, DecoderPlacementDirector>();

        var services = silo.Services;
        services.AddOptions<SiloSettings>().Bind(configuration.GetSection("Silo")).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<ModelSettings>().Bind(configuration.GetSection("Model"));
        services.AddOptions<DecodeEngineOptions>().Bind(configuration.GetSection("Engine:Decode"))
            .Validate(o => { o.Validate(); return true; }).ValidateOnStart();
        services.AddOptions<VisionEngineOptions>().Bind(configuration.GetSection("Engine:Vision"))
            .Validate(o => { o.Validate(); return true; }).ValidateOnStart();
        services.AddSingleton<EngineHost>();
        services.AddSingleton<SiloState>();
        services.AddXGenMMMetricsRegistry();
        services.AddSingleton<EngineMetrics>();
        services.AddSingleton(TimeProvider.System);
        services.AddHostedService<EngineLifecycle>();

        var orleans = OrleansSettings.From(configuration);
        if (orleans.UsesRedis)
            silo.AddRedisGrainStorage("tenants", o => o.ConfigurationOptions = ConfigurationOptions.Parse(orleans.RedisConnectionString));
        else
            silo.AddMemoryGrainStorage("tenants");
        silo.Configure<SiloMessagingOptions>(o => o.CancelRequestOnTimeout = true);
        return silo;
    }

    /// <summary>Clustering, ids and endpoints of a silo from <c>Cluster</c>: Redis membership or localhost development clustering.</summary>
    public static ISiloBuilder UseXGenMMClustering(this ISiloBuilder silo, IConfiguration configuration)
    {
        var o = OrleansSettings.From(configuration);
        if (o.UsesRedis)
        {
            silo.UseRedisClustering(r => r.ConfigurationOptions = ConfigurationOptions.Parse(o.RedisConnectionString));
            silo.Configure<ClusterOptions>(c => { c.ClusterId = o.ClusterId; c.ServiceId = o.ServiceId; });
            var ip = string.IsNullOrWhiteSpace(o.AdvertisedIP) ? IPAddress.Loopback : IPAddress.Parse(o.AdvertisedIP);
            silo.ConfigureEndpoints(ip, o.SiloPort, o.GatewayPort, listenOnAnyHostAddress: !string.IsNullOrWhiteSpace(o.AdvertisedIP));
        }
        else
        {
            silo.UseLocalhostClustering(o.SiloPort, o.GatewayPort, serviceId: o.ServiceId, clusterId: o.ClusterId);
        }
        if (!string.IsNullOrWhiteSpace(o.SiloName)) silo.Configure<SiloOptions>(s => s.SiloName = o.SiloName);
        // Trace context flows with grain calls, so one request is one trace from gateway to vision to decoder.
        silo.AddActivityPropagation();
        return silo;
    }

    /// <summary>The client side of <see cref="UseXGenMMClustering(ISiloBuilder, IConfiguration)"/>.</summary>
    public static IClientBuilder UseXGenMMClustering(this IClientBuilder client, IConfiguration configuration)
    {
        var o = OrleansSettings.From(configuration);
        if (o.UsesRedis)
        {
            client.UseRedisClustering(r => r.ConfigurationOptions = ConfigurationOptions.Parse(o.RedisConnectionString));
            client.Configure<ClusterOptions>(c => { c.ClusterId = o.ClusterId; c.ServiceId = o.ServiceId; });
        }
        else
        {
            client.UseLocalhostClustering(o.GatewayPort, o.ServiceId, o.ClusterId);
        }
        client.Configure<ClientMessagingOptions>(m => m.CancelRequestOnTimeout = true);
        client.AddActivityPropagation();
        return client;
    }
}
