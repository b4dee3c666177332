using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;
using Orleans.Runtime.MembershipService.SiloMetadata;
using StackExchange.Redis;
using XGenMM.Cluster.Grains;
using XGenMM.Cluster.Placement;
using XGenMM.Engine.Decoding;
using XGenMM.Engine.Vision;
using XGenMM.Model.Hub;
using XGenMM.ServiceDefaults;

namespace XGenMM.Cluster.Hosting;

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
        // Orleans' default grain directory ends every activation whose registration lived in a departed silo's part
        // of the directory, wherever that activation runs: each time a silo left (a scale-down), decoder grains on
        // silos that stay lost their open token streams (EnumerationAbortedException, resumed by the gateway). The
        // distributed directory hands registrations over to the new owners instead. Only decoder grains use it: with
        // every grain on it, a silo killed with -9 held up vision and view calls until the directory's recovery
        // (a typed 503 took 11 s instead of 3.5 s), while a decoder stream is moved by the gateway's own watch.
#pragma warning disable ORLEANSEXP003 // experimental in Orleans 10: chosen for the hand-off described above
        silo.AddDistributedGrainDirectory(DecoderGrain.DirectoryName);
#pragma warning restore ORLEANSEXP003

        var services = silo.Services;
        services.AddOptions<SiloSettings>().Bind(configuration.GetSection("Silo")).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<ModelSettings>().Bind(configuration.GetSection("Model"));
        services.AddOptions<HubDownloadOptions>().Bind(configuration.GetSection("Model:HuggingFace")).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<DecodeEngineOptions>().Bind(configuration.GetSection("Engine:Decode"))
            .Validate(o => { o.Validate(); return true; }).ValidateOnStart();
        services.AddOptions<VisionEngineOptions>().Bind(configuration.GetSection("Engine:Vision"))
            .Validate(o => { o.Validate(); return true; }).ValidateOnStart();
        services.AddSingleton<EngineHost>();
        services.AddSingleton<SiloState>();
        services.AddSingleton<IHostReadiness>(sp => sp.GetRequiredService<SiloState>());
        services.AddXGenMMMetricsRegistry();
        services.AddSingleton<EngineMetrics>();
        services.AddSingleton(TimeProvider.System);
        services.AddHostedService<EngineLifecycle>();

        var orleans = OrleansSettings.From(configuration);
        if (orleans.UsesRedis)
            silo.AddRedisGrainStorage("tenants", o => o.ConfigurationOptions = orleans.RedisOptions());
        else
            silo.AddMemoryGrainStorage("tenants");
        silo.Configure<SiloMessagingOptions>(o => o.CancelRequestOnTimeout = true);
        return silo;
    }
}
