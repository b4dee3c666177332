using XGenMM.Gateway.Hosting;
using XGenMM.Model.Hub;
using XGenMM.ServiceDefaults;

// The gateway in front of remote silos (Cluster mode): an Orleans client that needs Cluster:* and Tenants:* from
// configuration (docs/configuration.md). The single-process system is src/XGenMM.AppHost.
if (HubDownloadCommand.Requested(args))
{
    // The Helm chart's init container: the gateway image's own downloader fetches what the gateway reads of Model:Path
    // (Model:HuggingFace:Files, the configuration and tokenizer files), then exits.
    var configuration = WebApplication.CreateBuilder(args).Configuration;
    using var loggers = LoggerFactory.Create(l => l.AddConfiguration(configuration.GetSection("Logging")).AddConsole());
    var download = configuration.GetSection("Model:HuggingFace").Get<HubDownloadOptions>() ?? new HubDownloadOptions();
    return await HubDownloadCommand.RunToExitCodeAsync(download, configuration["Model:Path"], loggers.CreateLogger("XGenMM.ModelDownload"), CancellationToken.None);
}
var app = GatewayApp.Build(args);
return app.RunToExitCode();
