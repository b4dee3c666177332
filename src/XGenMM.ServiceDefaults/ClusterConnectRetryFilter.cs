using Microsoft.Extensions.Logging;

namespace XGenMM.ServiceDefaults;

/// <summary>
/// Keeps an Orleans client (the gateway) trying to join its cluster at start for up to
/// <see cref="OrleansSettings.ConnectTimeout"/>, whatever the reason it cannot yet: the membership store not listening
/// (a Redis connection error), no silo registered (Orleans' SiloUnavailableException), a gateway that refused the
/// connection. Orleans' own default retries only some of these, a limited number of times, so a gateway started before
/// Redis exited at once with an unhandled exception.
/// </summary>
public sealed partial class ClusterConnectRetryFilter(TimeSpan limit, ILogger<ClusterConnectRetryFilter> logger, TimeProvider time)
    : IClientConnectionRetryFilter
{
    /// <summary>The longest pause between two attempts: a cluster that comes up is joined within this.</summary>
    public static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(2);

    /// <summary>The shortest pause between two attempts (the first one's).</summary>
    public static readonly TimeSpan MinDelay = TimeSpan.FromMilliseconds(250);

    /// <summary>The pause after failed attempt <paramref name="attempt"/> (1, 2, ...): growing by the shortest pause
    /// each time up to the longest. The silo's wait for its membership store pauses alike.</summary>
    public static TimeSpan PauseBefore(int attempt) =>
        TimeSpan.FromMilliseconds(Math.Min(MaxDelay.TotalMilliseconds, MinDelay.TotalMilliseconds * attempt));

    private long _firstFailure = -1;
    private int _attempts;

    public async Task<bool> ShouldRetryConnectionAttempt(Exception exception, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested || exception is OperationCanceledException) return false;
        long now = time.GetTimestamp();
        if (_firstFailure < 0) _firstFailure = now;
        var waited = time.GetElapsedTime(_firstFailure, now);
        // Less than a short pause left is none: a timer that fires a hair early left 0.3 ms, and the pause cut to what
        // was left made a burst of ~1000 attempts in that last millisecond.
        if (limit - waited < MinDelay)
        {
            LogGivingUp(exception, waited.TotalSeconds);
            return false;
        }
        int attempt = ++_attempts;
        var delay = PauseBefore(attempt);
        if (delay > limit - waited) delay = limit - waited;
        LogWaiting(attempt, exception.GetType().Name, exception.Message, waited.TotalSeconds, limit.TotalSeconds);
        await Task.Delay(delay, time, cancellationToken).ConfigureAwait(false);
        return true;
    }

    [LoggerMessage(EventId = 401, Level = LogLevel.Warning, Message = "The cluster cannot be reached yet (attempt {Attempt}, {Reason}: {Detail}); trying again (waited {Waited:0.#} s of {Limit:0.#} s)")]
    private partial void LogWaiting(int attempt, string reason, string detail, double waited, double limit);

    [LoggerMessage(EventId = 402, Level = LogLevel.Critical, Message = "The cluster could not be reached in {Waited:0.#} s (Cluster:ConnectTimeout); giving up")]
    private partial void LogGivingUp(Exception exception, double waited);
}
