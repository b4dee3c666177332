using Microsoft.Extensions.Options;
using StackExchange.Redis;
using XGenMM.ServiceDefaults;

namespace XGenMM.Gateway.Hosting;

/// <summary>Whether the cluster's membership store (Redis) answers, as <see cref="MembershipStoreProbe"/> last saw it.</summary>
public sealed class MembershipStoreHealth
{
    private volatile string? _unreachable;

    /// <summary>Why the store is unreachable, or null while it answers (and in Local mode, which has none).</summary>
    public string? Unreachable => _unreachable;

    internal void Set(string? reason) => _unreachable = reason;
}

/// <summary>The membership store probe of a Cluster-mode gateway. Bound from <c>Cluster:MembershipProbe</c>.</summary>
public sealed class MembershipProbeOptions
{
    /// <summary>How often the store is pinged.</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(1);
    /// <summary>How long one ping may take.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(1);
    /// <summary>Failed pings in a row before new requests are refused with 503 <c>membership_unavailable</c>; one
    /// answered ping serves them again.</summary>
    public int FailuresBeforeUnreachable { get; set; } = 2;
}

/// <summary>
/// Pings the membership store of a Cluster-mode gateway. While it is down, running streams go on (silos keep their last
/// view) but no tenant can be admitted (its ledger is written there) and no silo's death can be declared; without this
/// probe a new request would wait for the tenant call's deadline to learn it. One connection, failing fast while
/// disconnected (no command backlog), reconnecting by itself, so the gateway recovers without a restart.
/// </summary>
internal sealed partial class MembershipStoreProbe(MembershipStoreHealth health, IOptions<MembershipProbeOptions> options, IConfiguration configuration,
    ILogger<MembershipStoreProbe> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = OrleansSettings.From(configuration);
        if (!settings.UsesRedis) return;
        var probe = options.Value;
        var redis = settings.RedisProbeOptions(probe.Timeout, "xgenmm-gateway-probe");
        ConnectionMultiplexer? connection = null;
        int failures = 0;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    connection ??= await ConnectionMultiplexer.ConnectAsync(redis).ConfigureAwait(false);
                    await connection.GetDatabase().PingAsync().WaitAsync(probe.Timeout, stoppingToken).ConfigureAwait(false);
                    failures = 0;
                    if (health.Unreachable is not null)
                    {
                        health.Set(null);
                        LogReachable();
                    }
                }
                catch (Exception e) when (e is RedisException or TimeoutException or System.Net.Sockets.SocketException && !stoppingToken.IsCancellationRequested)
                {
                    if (++failures >= probe.FailuresBeforeUnreachable && health.Unreachable is null)
                    {
                        health.Set(e is TimeoutException ? $"no answer within {probe.Timeout.TotalSeconds:0.#} s" : e.GetType().Name);
                        LogUnreachable(failures, e.Message);
                    }
                }
                await Task.Delay(probe.Interval, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Host stopping.
        }
        finally
        {
            if (connection is not null) await connection.DisposeAsync().ConfigureAwait(false);
        }
    }

    [LoggerMessage(EventId = 720, Level = LogLevel.Error, Message = "The membership store did not answer {Failures} ping(s) ({Reason}): new requests are refused with 503 until it does")]
    private partial void LogUnreachable(int failures, string reason);

    [LoggerMessage(EventId = 721, Level = LogLevel.Warning, Message = "The membership store answers again: new requests are served")]
    private partial void LogReachable();
}
