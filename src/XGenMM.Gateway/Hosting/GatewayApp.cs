using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration.Memory;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Options;
using OpenTelemetry.Trace;
using Prometheus;
using XGenMM.Cluster.Client;
using XGenMM.Cluster.Hosting;
using XGenMM.Gateway.Chat;
using XGenMM.Gateway.Hubs;
using XGenMM.Gateway.Images;
using XGenMM.Gateway.OpenAi;
using XGenMM.Gateway.Telemetry;
using XGenMM.Gateway.Tenants;

namespace XGenMM.Gateway.Hosting;

/// <summary>Builds the gateway application; Program.cs runs it and the tests host it on loopback ports of their own.</summary>
public static class GatewayApp
{
    /// <summary>Local mode's defaults; anything configured wins over them.</summary>
    private static readonly Dictionary<string, string?> LocalDefaults = new()
    {
        ["Silo:Roles"] = "vision,decoder",
        ["Cluster:Clustering"] = "Localhost",
    };

    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        configure?.Invoke(builder);
        var gateway = builder.Configuration.GetSection("Gateway").Get<GatewayOptions>() ?? new GatewayOptions();
        if (gateway.Mode == GatewayMode.Local)
            builder.Configuration.Sources.Insert(0, new MemoryConfigurationSource { InitialData = LocalDefaults });

        var services = builder.Services;
        services.AddOptions<GatewayOptions>().Bind(builder.Configuration.GetSection("Gateway"));
        services.AddOptions<RequestLimits>().Bind(builder.Configuration.GetSection("Gateway:Limits")).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<RemoteImageOptions>().Bind(builder.Configuration.GetSection("Gateway:RemoteImages")).ValidateDataAnnotations().ValidateOnStart();
        var limits = builder.Configuration.GetSection("Gateway:Limits").Get<RequestLimits>() ?? new RequestLimits();

        // Kestrel's own cap sits just above ours so that our check, with its JSON error, is the one that fires.
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = limits.MaxBodyBytes + 1);

        if (gateway.Mode == GatewayMode.Local)
            builder.UseOrleans(silo => silo.UseXGenMMClustering(builder.Configuration).AddXGenMMSilo(builder.Configuration));
        else
            builder.UseOrleansClient(client => client.UseXGenMMClustering(builder.Configuration));
        services.AddXGenMMClusterChat(builder.Configuration);

        var model = ServedModel.From(builder.Configuration);
        services.AddSingleton(model);
        var tenants = TenantDirectory.Load(builder.Configuration);
        string? developmentKey = null;
        if (tenants.Count == 0)
        {
            if (gateway.Mode != GatewayMode.Local)
                throw new InvalidOperationException("No tenants are configured: set Tenants:File (or Tenants:Tenants) in Cluster mode.");
            developmentKey = string.IsNullOrWhiteSpace(gateway.DevelopmentApiKey) ? TenantDirectory.NewKey() : gateway.DevelopmentApiKey;
            tenants.Add(new TenantEntry { Id = "dev", KeySha256 = [TenantDirectory.Hash(developmentKey)] });
        }
        services.AddSingleton(new TenantDirectory(tenants));
        services.AddSingleton(new StartupBanner(developmentKey));
        services.AddHostedService<TenantLimitsPublisher>();
        services.AddHostedService<StartupAnnouncer>();

        services.AddXGenMMMetricsRegistry();
        services.AddSingleton<GatewayMetrics>();
        services.AddSingleton<ChatService>();
        services.AddSingleton<RemoteImageFetcher>();
        services.AddAuthentication(ApiKeyAuthenticationHandler.SchemeName)
            .AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
        services.AddAuthorization();
        services.AddSignalR(o =>
        {
            o.MaximumReceiveMessageSize = limits.MaxBodyBytes;
            o.MaximumParallelInvocationsPerClient = limits.MaxStreamsPerConnection + 1;
        }).AddMessagePackProtocol();

        services.AddXGenMMTracing(builder.Configuration, tracing => tracing.AddAspNetCoreInstrumentation());

        var app = builder.Build();
        if (gateway.Mode == GatewayMode.Local) app.Services.GetRequiredService<EngineMetrics>();
        app.Services.GetRequiredService<GatewayMetrics>();

        var web = new PhysicalFileProvider(Path.Combine(AppContext.BaseDirectory, "web"));
        app.UseDefaultFiles(new DefaultFilesOptions { FileProvider = web });
        app.UseStaticFiles(new StaticFileOptions { FileProvider = web });
        app.UseAuthentication();
        app.UseAuthorization();

        app.MapGet("/healthz", () => Results.Ok(new { status = "alive" }));
        app.MapGet("/readyz", Readiness.CheckAsync);
        app.MapXGenMMMetrics();
        app.MapOpenAiApi();
        app.MapHub<ChatHub>("/hubs/chat");
        return app;
    }
}
