using Microsoft.Extensions.Logging;
using Orleans.Runtime;
using StackExchange.Redis;

namespace XGenMM.ServiceDefaults;

/// <summary>
/// Holds a silo's start, before Orleans' membership reads its table, until the membership store (Redis) answers a ping,
/// for up to <see cref="OrleansSettings.ConnectTimeout"/>. Orleans gives the table one try (a five-second command
/// timeout) and a silo started before its Redis exited with an unhandled exception; in a cluster the store, the silos
/// and the gateway start in any order.
/// </summary>
public sealed partial class MembershipStoreWait(OrleansSettings settings, ILogger<MembershipStoreWait> logger, TimeProvider time)
    : ILifecycleParticipant<ISiloLifecycle>
{
    /// <summary>How long one connection attempt and ping may take.</summary>
    public static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(2);

    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(MembershipStoreWait), ServiceLifecycleStage.RuntimeInitialize, WaitAsync);

    /// <summary>Returns once the store answers; throws when it has not within the limit or the start was cancelled.</summary>
    public async Task WaitAsync(CancellationToken cancellationToken)
    {
        var options = settings.RedisProbeOptions(AttemptTimeout, "xgenmm-startup-wait");
        long start = time.GetTimestamp();
        for (int attempt = 1; ; attempt++)
        {
            Exception failure;
            try
            {
                await using var connection = await ConnectionMultiplexer.ConnectAsync(options).ConfigureAwait(false);
                await connection.GetDatabase().PingAsync().WaitAsync(AttemptTimeout, time, cancellationToken).ConfigureAwait(false);
                if (attempt > 1)
                {
                    double took = time.GetElapsedTime(start).TotalSeconds;
                    LogAnswered(took);
                }
                return;
            }
            catch (Exception e) when (e is RedisException or TimeoutException or System.Net.Sockets.SocketException)
            {
                failure = e;
            }
            var waited = time.GetElapsedTime(start);
            if (waited >= settings.ConnectTimeout)
                throw new InvalidOperationException(
                    $"The membership store ({string.Join(", ", options.EndPoints)}) did not answer in {waited.TotalSeconds:0} s (Cluster:ConnectTimeout).", failure);
            LogWaiting(attempt, failure.GetType().Name, waited.TotalSeconds, settings.ConnectTimeout.TotalSeconds);
            await Task.Delay(ClusterConnectRetryFilter.PauseBefore(attempt), time, cancellationToken).ConfigureAwait(false);
        }
    }

    [LoggerMessage(EventId = 403, Level = LogLevel.Warning, Message = "The membership store does not answer yet (attempt {Attempt}, {Reason}); the silo waits for it (waited {Waited:0.#} s of {Limit:0.#} s)")]
    private partial void LogWaiting(int attempt, string reason, double waited, double limit);

    [LoggerMessage(EventId = 404, Level = LogLevel.Information, Message = "The membership store answers after {Waited:0.#} s; the silo joins the cluster")]
    private partial void LogAnswered(double waited);
}
