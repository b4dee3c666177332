using XGenMM.Cluster.Hosting;
using XGenMM.Model.Hub;
using XGenMM.ServiceDefaults;

// An XGenMM silo: what it does (Silo:Roles, Silo:Gpus), how it joins (Cluster:*) and what it serves (Model:Path)
// all come from configuration (docs/configuration.md); HTTP on Silo:HttpAddress:Silo:HttpPort for probes and metrics.
var builder = WebApplication.CreateBuilder(args);
if (HubDownloadCommand.Requested(args))
{
    // The Helm chart's init container: this image's own downloader fills Model:Path from Model:HuggingFace, then exits.
    using var loggers = LoggerFactory.Create(l => l.AddConfiguration(builder.Configuration.GetSection("Logging")).AddConsole());
    var download = builder.Configuration.GetSection("Model:HuggingFace").Get<HubDownloadOptions>() ?? new HubDownloadOptions();
    return await HubDownloadCommand.RunToExitCodeAsync(download, builder.Configuration["Model:Path"], loggers.CreateLogger("XGenMM.ModelDownload"), CancellationToken.None);
}
var silo = builder.Configuration.GetSection("Silo").Get<SiloSettings>() ?? new SiloSettings();
if (!System.Net.IPAddress.TryParse(silo.HttpAddress, out var httpAddress))
    throw new InvalidOperationException($"Silo:HttpAddress must be an IP address (0.0.0.0 for every interface); got '{silo.HttpAddress}'.");
builder.WebHost.ConfigureKestrel(k => k.Listen(httpAddress, silo.HttpPort));
builder.Services.AddXGenMMTracing(builder.Configuration);
builder.UseOrleans(orleans => orleans.UseXGenMMClustering(builder.Configuration).AddXGenMMSilo(builder.Configuration));
// SIGTERM: readiness flips and decoders drain (up to the drain timeout) before the silo leaves the cluster.
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(silo.DrainTimeoutSeconds + 30));

var app = builder.Build();
app.Services.GetRequiredService<EngineMetrics>();
app.MapXGenMMLiveness();
app.MapXGenMMReadiness(app.Services.GetRequiredService<SiloState>());
app.MapXGenMMMetrics();
return app.RunToExitCode();
