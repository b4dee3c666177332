using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Options;
using OpenTelemetry.Trace;
using Prometheus;
using XGenMM.Cluster.Client;
using XGenMM.Gateway.Chat;
using XGenMM.Gateway.Hubs;
using XGenMM.Gateway.Images;
using XGenMM.Gateway.OpenAi;
using XGenMM.Gateway.Telemetry;
using XGenMM.Gateway.Tenants;
using XGenMM.ServiceDefaults;

namespace XGenMM.Gateway.Hosting;

/// <summary>Builds the gateway application; Program.cs runs it, XGenMM.AppHost composes it with a silo (Local mode) and
/// the tests host it on loopback ports of their own.</summary>
public static class GatewayApp
{
    /// <summary>
    /// The gateway alone: an Orleans client of remote silos (Cluster mode). With <paramref name="cohostSilo"/> the host
    /// adds a silo to the same process (Local mode) before the gateway's services; the gateway then uses that silo's
    /// grain factory instead of a client, and its readiness includes the silo's.
    /// </summary>
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null, Action<WebApplicationBuilder>? cohostSilo = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        configure?.Invoke(builder);
        var gateway = builder.Configuration.GetSection("Gateway").Get<GatewayOptions>() ?? new GatewayOptions();
        var mode = cohostSilo is null ? GatewayMode.Cluster : GatewayMode.Local;
        if (gateway.Mode is { } configured && configured != mode)
            throw new InvalidOperationException(mode == GatewayMode.Cluster
                ? "Gateway:Mode is Local, but this host has no silo: run src/XGenMM.AppHost for a single-process cluster, or set Gateway:Mode=Cluster."
                : "Gateway:Mode is Cluster, but this host co-hosts a silo: run src/XGenMM.Gateway for a gateway in front of remote silos.");

        var services = builder.Services;
        services.AddOptions<GatewayOptions>().Bind(builder.Configuration.GetSection("Gateway")).PostConfigure(o => o.Mode = mode);
        services.AddOptions<RequestLimits>().Bind(builder.Configuration.GetSection("Gateway:Limits")).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<RemoteImageOptions>().Bind(builder.Configuration.GetSection("Gateway:RemoteImages")).ValidateDataAnnotations().ValidateOnStart();
        var limits = builder.Configuration.GetSection("Gateway:Limits").Get<RequestLimits>() ?? new RequestLimits();

        // Kestrel's own cap sits just above ours so that our check, with its JSON error, is the one that fires.
        // Slow bodies are cut by Kestrel's minimum data rate (240 bytes/s after a 5 s grace), slow headers here.
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = limits.MaxBodyBytes + 1;
            k.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(limits.RequestHeadersTimeoutSeconds);
        });
        var management = builder.AddXGenMMManagementPort();
        services.AddSingleton(management);

        if (cohostSilo is not null)
            cohostSilo(builder);
        else
            builder.UseOrleansClient(client => client.UseXGenMMClustering(builder.Configuration));
        services.AddXGenMMClusterChat(builder.Configuration);
        services.AddSingleton<MembershipStoreHealth>();
        services.AddOptions<MembershipProbeOptions>().Bind(builder.Configuration.GetSection("Cluster:MembershipProbe"))
            .Validate(o => o.Interval > TimeSpan.Zero && o.Timeout > TimeSpan.Zero && o.FailuresBeforeUnreachable >= 1,
                "Cluster:MembershipProbe needs a positive Interval and Timeout and FailuresBeforeUnreachable >= 1.")
            .ValidateOnStart();
        // Local mode has no membership store to probe (localhost clustering inside this process).
        if (cohostSilo is null) services.AddHostedService<MembershipStoreProbe>();

        var model = ServedModel.From(builder.Configuration);
        services.AddSingleton(model);
        string? developmentKey = services.AddXGenMMTenants(builder.Configuration, mode, gateway.DevelopmentApiKey);
        services.AddSingleton(new StartupBanner(developmentKey, mode.ToString(),
            mode == GatewayMode.Local ? builder.Configuration["Silo:Roles"] ?? "" : null));
        services.AddHostedService<StartupAnnouncer>();
        services.AddHostedService<DecoderLimitsRefresher>();

        services.AddXGenMMMetricsRegistry();
        services.AddSingleton<GatewayMetrics>();
        services.AddSingleton<Hubs.TenantConnections>();
        services.AddSingleton<ChatService>();
        services.AddSingleton<RemoteImageFetcher>();
        services.AddAuthorization();
        services.AddSignalR(o =>
        {
            o.MaximumReceiveMessageSize = limits.MaxBodyBytes;
            o.MaximumParallelInvocationsPerClient = limits.MaxStreamsPerConnection + 1;
        }).AddMessagePackProtocol();

        services.AddXGenMMTracing(builder.Configuration, tracing => tracing.AddAspNetCoreInstrumentation(o => o.EnrichWithHttpRequest = SecretRedaction.EnrichRequest));
        // Last before Build: it wraps the logger providers registered so far (the hub's key arrives as ?access_token=).
        services.AddXGenMMLogRedaction();

        var app = builder.Build();
        app.Services.GetRequiredService<GatewayMetrics>();

        app.UseXGenMMManagementPort(management);
        var web = new PhysicalFileProvider(Path.Combine(AppContext.BaseDirectory, "web"));
        app.UseDefaultFiles(new DefaultFilesOptions { FileProvider = web });
        app.UseStaticFiles(new StaticFileOptions { FileProvider = web });
        app.UseAuthentication();
        app.UseAuthorization();

        app.MapXGenMMLiveness();
        app.MapGet("/readyz", Readiness.CheckAsync);
        app.MapXGenMMMetrics();
        app.MapOpenAiApi();
        app.MapHub<ChatHub>("/hubs/chat");
        return app;
    }
}
