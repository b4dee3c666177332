using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime;
using XGenMM.Cluster.Abstractions;
using XGenMM.Cluster.Grains;
using XGenMM.Cluster.Placement;
using XGenMM.Model.Hub;

namespace XGenMM.Cluster.Hosting;

/// <summary>
/// Loads the engines before the silo takes traffic, announces this silo's decoders to the registry every second,
/// and drains on shutdown: readiness flips, decoders report draining and refuse new work, in-flight generations
/// get up to <see cref="SiloSettings.DrainTimeoutSeconds"/> to finish, then the silo leaves the cluster.
/// </summary>
internal sealed partial class EngineLifecycle(EngineHost engines, SiloState state, IGrainFactory grains, ILocalSiloDetails silo,
    IHostApplicationLifetime lifetime, IOptions<SiloSettings> settings, IOptions<ModelSettings> model, IOptions<HubDownloadOptions> download,
    ILogger<EngineLifecycle> logger) : BackgroundService
{
    private static readonly TimeSpan ReportEvery = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan StreamDeliveryGrace = TimeSpan.FromMilliseconds(250);

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        // With Model:HuggingFace:Repo set the checkpoint is fetched (or found complete) into Model:Path first;
        // readiness stays "starting" until the engines are loaded from it.
        if (download.Value.Enabled)
        {
            try
            {
                await HubDownloadCommand.RunAsync(download.Value, model.Value.Path, logger, cancellationToken).ConfigureAwait(false);
            }
            catch (HubDownloadException e)
            {
                state.MarkFailed(e.Message);
                throw;
            }
        }
        try
        {
            engines.Load();
        }
        catch (Exception e)
        {
            state.MarkFailed(e.Message);
            LogLoadFailed(e);
            throw;
        }
        // ApplicationStopping fires before any hosted service (the silo included) stops: drain there.
        lifetime.ApplicationStopping.Register(Drain);
        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await WaitForStartAsync(stoppingToken).ConfigureAwait(false);
        state.MarkReady();
        using var timer = new PeriodicTimer(ReportEvery);
        do
        {
            await ReportAsync(stoppingToken).ConfigureAwait(false);
        }
        while (!state.Draining && await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    private async Task WaitForStartAsync(CancellationToken stoppingToken)
    {
        var started = new TaskCompletionSource();
        using var registration = lifetime.ApplicationStarted.Register(() => started.TrySetResult());
        await started.Task.WaitAsync(stoppingToken).ConfigureAwait(false);
    }

    private string Key(string device) => new DecoderKey(silo.SiloAddress.ToParsableString(), device).ToString();

    private async Task ReportAsync(CancellationToken cancellationToken)
    {
        var registry = grains.GetGrain<IDecoderRegistryGrain>(0);
        foreach (var (device, engine) in engines.Decoders)
        {
            try
            {
                await registry.Report(DecoderReports.From(Key(device), engine.GetLoad(), state.Draining)).WaitAsync(TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogReportFailed(e, device);
            }
        }
    }

    private void Drain()
    {
        state.MarkDraining();
        if (engines.Decoders.Count == 0) return;
        var timeout = TimeSpan.FromSeconds(settings.Value.DrainTimeoutSeconds);
        LogDraining(engines.Decoders.Count, timeout.TotalSeconds);
        foreach (var engine in engines.Decoders.Values) engine.BeginDrain();
        try
        {
            ReportAsync(CancellationToken.None).Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var drained = Task.WhenAll(engines.Decoders.Values.Select(e => e.DrainAsync(timeout))).GetAwaiter().GetResult();
        // The engines are done; the gateways still have to pull the final chunks (Orleans streams IAsyncEnumerable by
        // request). Leaving the cluster before they have would break those streams at their very end.
        var left = timeout - clock.Elapsed;
        bool delivered = state.WaitForOpenStreamsAsync(left > StreamDeliveryGrace ? left : StreamDeliveryGrace).GetAwaiter().GetResult();
        if (delivered) Thread.Sleep(StreamDeliveryGrace); // the reply carrying the last chunk is on its way out
        else LogStreamsUndelivered(state.OpenStreams);
        bool complete = drained.All(d => d) && delivered;
        LogDrained(complete);
        var registry = grains.GetGrain<IDecoderRegistryGrain>(0);
        foreach (var device in engines.Decoders.Keys)
        {
            try
            {
                registry.Remove(Key(device)).Wait(TimeSpan.FromSeconds(2));
            }
            catch (AggregateException)
            {
            }
        }
    }

    [LoggerMessage(EventId = 311, Level = LogLevel.Critical, Message = "Loading the engines failed")]
    private partial void LogLoadFailed(Exception exception);

    [LoggerMessage(EventId = 312, Level = LogLevel.Warning, Message = "Could not report the load of decoder {Device}")]
    private partial void LogReportFailed(Exception exception, string device);

    [LoggerMessage(EventId = 313, Level = LogLevel.Information, Message = "Draining {Count} decoder(s): new work refused, in-flight work has {Seconds} s")]
    private partial void LogDraining(int count, double seconds);

    [LoggerMessage(EventId = 315, Level = LogLevel.Warning, Message = "Drain: {Count} stream(s) were not read to their end before the drain timeout")]
    private partial void LogStreamsUndelivered(int count);

    [LoggerMessage(EventId = 314, Level = LogLevel.Information, Message = "Drain finished (all work completed: {Complete})")]
    private partial void LogDrained(bool complete);
}
