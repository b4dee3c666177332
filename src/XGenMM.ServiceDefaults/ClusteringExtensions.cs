using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;
using Orleans.Hosting;
using Orleans.Runtime;
using StackExchange.Redis;

namespace XGenMM.ServiceDefaults;

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

    /// <summary>How long a client (the gateway) keeps trying to reach the cluster at start before it gives up: the
    /// membership store or every silo may still be starting (a pod scheduled before them). 0 tries once.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromMinutes(5);

    public bool UsesRedis => string.Equals(Clustering, "Redis", StringComparison.OrdinalIgnoreCase);

    /// <summary>The Redis connection options every XGenMM host uses for membership and grain storage. A Redis that is
    /// not up yet is waited for (the multiplexer keeps reconnecting in the background) instead of failing the host's
    /// start: in a cluster the store, the silos and the gateway start in any order. <c>abortConnect=</c> in the
    /// connection string is honoured when given.</summary>
    public ConfigurationOptions RedisOptions()
    {
        var options = ConfigurationOptions.Parse(RedisConnectionString);
        if (!RedisConnectionString.Contains("abortConnect", StringComparison.OrdinalIgnoreCase)) options.AbortOnConnectFail = false;
        return options;
    }

    /// <summary>Redis options for a health probe of the store: each attempt fails within <paramref name="timeout"/>
    /// while the store is down (no command backlog), reconnecting by itself.</summary>
    public ConfigurationOptions RedisProbeOptions(TimeSpan timeout, string clientName)
    {
        var options = RedisOptions();
        options.AbortOnConnectFail = false;
        options.BacklogPolicy = BacklogPolicy.FailFast;
        options.ConnectTimeout = options.SyncTimeout = options.AsyncTimeout = (int)Math.Ceiling(timeout.TotalMilliseconds);
        options.ClientName = clientName;
        return options;
    }

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

/// <summary>XGenMM's failure-detection defaults for Orleans membership (Cluster:Membership overrides them).</summary>
public static class MembershipDefaults
{
    /// <summary>Period of the silos' probes of each other and the time a probe may take (Orleans: 5 s).</summary>
    public static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(2);
    /// <summary>Missed probes before a silo votes another one dead (Orleans: 3).</summary>
    public const int NumMissedProbesLimit = 2;
}

/// <summary>How silos and clients of one XGenMM cluster find each other: the same settings on both sides.</summary>
public static class ClusteringExtensions
{
    /// <summary>Clustering, ids and endpoints of a silo from <c>Cluster</c>: Redis membership or localhost development clustering.</summary>
    public static ISiloBuilder UseXGenMMClustering(this ISiloBuilder silo, IConfiguration configuration)
    {
        var o = OrleansSettings.From(configuration);
        if (o.UsesRedis)
        {
            silo.UseRedisClustering(r => r.ConfigurationOptions = o.RedisOptions());
            silo.Services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(sp => new MembershipStoreWait(o,
                sp.GetRequiredService<Microsoft.Extensions.Logging.ILogger<MembershipStoreWait>>(), TimeProvider.System));
            silo.Configure<ClusterOptions>(c => { c.ClusterId = o.ClusterId; c.ServiceId = o.ServiceId; });
            var ip = string.IsNullOrWhiteSpace(o.AdvertisedIP) ? IPAddress.Loopback : IPAddress.Parse(o.AdvertisedIP);
            silo.ConfigureEndpoints(ip, o.SiloPort, o.GatewayPort, listenOnAnyHostAddress: !string.IsNullOrWhiteSpace(o.AdvertisedIP));
        }
        else
        {
            silo.UseLocalhostClustering(o.SiloPort, o.GatewayPort, serviceId: o.ServiceId, clusterId: o.ClusterId);
        }
        if (!string.IsNullOrWhiteSpace(o.SiloName)) silo.Configure<SiloOptions>(s => s.SiloName = o.SiloName);
        // How fast a dead silo is declared dead: the calls on its requests are only broken, and gateways only re-route
        // them, once it is. Orleans' defaults (5 s probes, 3 missed) take about 15 s; ours about 4 s (docs/configuration.md,
        // "Failure detection"). Cluster:Membership overrides any ClusterMembershipOptions property.
        silo.Configure<ClusterMembershipOptions>(m =>
        {
            m.ProbeTimeout = MembershipDefaults.ProbeTimeout;
            m.NumMissedProbesLimit = MembershipDefaults.NumMissedProbesLimit;
        });
        silo.Configure<ClusterMembershipOptions>(configuration.GetSection("Cluster:Membership"));
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
            client.UseRedisClustering(r => r.ConfigurationOptions = o.RedisOptions());
            client.Configure<ClusterOptions>(c => { c.ClusterId = o.ClusterId; c.ServiceId = o.ServiceId; });
        }
        else
        {
            client.UseLocalhostClustering(o.GatewayPort, o.ServiceId, o.ClusterId);
        }
        client.Configure<ClientMessagingOptions>(m => m.CancelRequestOnTimeout = true);
        client.Services.AddSingleton<IClientConnectionRetryFilter>(sp => new ClusterConnectRetryFilter(o.ConnectTimeout,
            sp.GetRequiredService<Microsoft.Extensions.Logging.ILogger<ClusterConnectRetryFilter>>(), TimeProvider.System));
        client.AddActivityPropagation();
        return client;
    }
}
