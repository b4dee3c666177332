using Microsoft.Extensions.Configuration.Memory;
using XGenMM.Cluster.Hosting;
using XGenMM.Gateway.Hosting;
using XGenMM.ServiceDefaults;

namespace XGenMM.AppHost;

/// <summary>
/// Composes the gateway with a co-hosted silo of both roles, as an AppHost composes services: one process is a whole
/// cluster. The gateway itself stays torch-free; the silo brings the engines.
/// </summary>
public static class LocalApp
{
    /// <summary>Local mode's defaults; anything configured wins over them.</summary>
    private static readonly Dictionary<string, string?> Defaults = new()
    {
        ["Gateway:Mode"] = "Local",
        ["Silo:Roles"] = "vision,decoder",
        ["Cluster:Clustering"] = "Localhost",
    };

    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var app = GatewayApp.Build(args,
            configure: builder =>
            {
                builder.Configuration.Sources.Insert(0, new MemoryConfigurationSource { InitialData = Defaults });
                configure?.Invoke(builder);
            },
            cohostSilo: builder => builder.UseOrleans(silo => silo.UseXGenMMClustering(builder.Configuration).AddXGenMMSilo(builder.Configuration)));
        // Engine metrics export from the first scrape on (the registry is the gateway's: one /metrics for the process).
        app.Services.GetRequiredService<EngineMetrics>();
        return app;
    }
}
