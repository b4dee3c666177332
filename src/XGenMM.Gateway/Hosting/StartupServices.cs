using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using XGenMM.Cluster.Abstractions;
using XGenMM.Gateway.Tenants;

namespace XGenMM.Gateway.Hosting;

/// <summary>The development key of Local mode (null when tenants are configured).</summary>
public sealed record StartupBanner(string? DevelopmentApiKey);

/// <summary>Prints where the gateway listens, the served model and, in Local mode, the development API key.</summary>
internal sealed class StartupAnnouncer(IServer server, StartupBanner banner, ServedModel model, IHostApplicationLifetime lifetime) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        lifetime.ApplicationStarted.Register(() =>
        {
            var addresses = server.Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
            Console.WriteLine();
            Console.WriteLine($"XGenMM gateway serving model '{model.Id}' from {model.Directory}");
            foreach (var address in addresses) Console.WriteLine($"  chat page and API: {address}");
            if (banner.DevelopmentApiKey is { } key)
                Console.WriteLine($"  development API key (tenant 'dev'): {key}");
            Console.WriteLine();
        });
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
