using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using XGenMM.Cluster.Abstractions;
using XGenMM.Gateway.Tenants;

namespace XGenMM.Gateway.Hosting;

/// <summary>What the startup banner says beyond the model: the mode, the co-hosted silo's roles (Local mode only) and the
/// development key of Local mode (null when tenants are configured).</summary>
public sealed record StartupBanner(string? DevelopmentApiKey, string Mode, string? Roles);

/// <summary>
/// Prints what a person needs to start: where the gateway listens, the served model and what it knows, the mode and the
/// co-hosted silo's roles and, in Local mode, the development API key. Written straight to stdout (not through a log
/// level that configuration could hide), as the first thing after the framework's own startup; with JSON console logs
/// (Logging:Console:FormatterName=json) it is one structured log entry instead, so that every line stays JSON.
/// </summary>
internal sealed partial class StartupAnnouncer(IServer server, StartupBanner banner, ServedModel model, IHostApplicationLifetime lifetime,
    IConfiguration configuration, XGenMM.ServiceDefaults.ManagementOptions management, ILogger<StartupAnnouncer> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        lifetime.ApplicationStarted.Register(() =>
        {
            var all = server.Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
            bool IsManagement(string address) => management.Port > 0
                && Uri.TryCreate(address.Replace("*", "localhost", StringComparison.Ordinal).Replace("+", "localhost", StringComparison.Ordinal), UriKind.Absolute, out var uri)
                && uri.Port == management.Port;
            var addresses = string.Join(", ", all.Where(a => !IsManagement(a)));
            var managementAddresses = string.Join(", ", all.Where(IsManagement));
            if (string.Equals(configuration["Logging:Console:FormatterName"], "json", StringComparison.OrdinalIgnoreCase))
            {
                LogBanner(model.Id, model.Directory, addresses, banner.Mode, banner.Roles ?? "", banner.DevelopmentApiKey ?? "");
                return;
            }
            var text = new System.Text.StringBuilder();
            text.AppendLine();
            text.AppendLine(banner.Roles is { } roles
                ? $"XGenMM gateway in Local mode (with a silo of roles {roles} in this process), serving model '{model.Id}'"
                : $"XGenMM gateway in {banner.Mode} mode, serving model '{model.Id}'");
            text.AppendLine($"  model directory: {model.Directory}");
            if (model.Card.Length > 0) text.AppendLine($"  about the model: {model.Card}");
            text.AppendLine($"  chat page and API: {addresses}");
            if (managementAddresses.Length > 0) text.AppendLine($"  metrics and probes: {managementAddresses}");
            if (banner.DevelopmentApiKey is { } key)
                text.AppendLine($"  development API key (tenant 'dev'): {key}");
            Console.Out.WriteLine(text.ToString());
            Console.Out.Flush();
        });
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(EventId = 700, Level = LogLevel.Information,
        Message = "XGenMM gateway in {Mode} mode serving model '{Model}' from {ModelDirectory} at {Addresses}; silo roles: {Roles}; development API key (tenant 'dev'): {DevelopmentApiKey}")]
    private partial void LogBanner(string model, string modelDirectory, string addresses, string mode, string roles, string developmentApiKey);
}
