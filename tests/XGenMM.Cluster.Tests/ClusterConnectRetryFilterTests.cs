using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using StackExchange.Redis;
using XGenMM.ServiceDefaults;

namespace XGenMM.Cluster.Tests;

/// <summary>The gateway's Orleans client keeps trying to join its cluster at start, whatever stands in the way, until
/// <see cref="OrleansSettings.ConnectTimeout"/>.</summary>
public sealed class ClusterConnectRetryFilterTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static ClusterConnectRetryFilter Filter(TimeSpan limit) =>
        new(limit, NullLogger<ClusterConnectRetryFilter>.Instance, TimeProvider.System);

    [Fact]
    public async Task It_retries_a_store_that_does_not_answer_and_a_cluster_without_silos_alike()
    {
        var filter = Filter(TimeSpan.FromSeconds(30));
        // Orleans' own default gives up on the first of these (the store not up yet): the gateway exited with 134.
        Assert.True(await filter.ShouldRetryConnectionAttempt(new RedisConnectionException(ConnectionFailureType.UnableToConnect, "no store"), Ct));
        Assert.True(await filter.ShouldRetryConnectionAttempt(new SiloUnavailableException("no gateway"), Ct));
        Assert.True(await filter.ShouldRetryConnectionAttempt(new TimeoutException("slow"), Ct));
    }

    [Fact]
    public async Task It_waits_longer_between_attempts_up_to_two_seconds()
    {
        var filter = Filter(TimeSpan.FromMinutes(1));
        var pauses = new List<TimeSpan>();
        for (int i = 0; i < 3; i++)
        {
            var clock = Stopwatch.StartNew();
            Assert.True(await filter.ShouldRetryConnectionAttempt(new SiloUnavailableException("no gateway"), Ct));
            pauses.Add(clock.Elapsed);
        }
        // 250, 500, 750 ms: a cluster that comes up is joined soon after, without a busy loop against it before.
        Assert.InRange(pauses[0].TotalMilliseconds, 200, 1000);
        Assert.True(pauses[2] > pauses[0], $"pauses {string.Join(", ", pauses.Select(p => p.TotalMilliseconds))} ms");
        Assert.Equal(TimeSpan.FromSeconds(2), ClusterConnectRetryFilter.MaxDelay);
    }

    [Fact]
    public async Task It_gives_up_once_the_connect_timeout_has_passed_since_the_first_failure()
    {
        var filter = Filter(TimeSpan.FromMilliseconds(600));
        var clock = Stopwatch.StartNew();
        int retries = 0;
        while (await filter.ShouldRetryConnectionAttempt(new SiloUnavailableException("no gateway"), Ct))
        {
            retries++;
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), "it never gave up");
        }
        Assert.InRange(retries, 2, 4);
        Assert.InRange(clock.Elapsed.TotalMilliseconds, 550, 3000);
    }

    [Fact]
    public async Task A_timer_that_fires_early_does_not_turn_the_last_pause_into_a_burst_of_attempts()
    {
        // Every pause ends 0.3 ms early, as a timer on a busy machine may: the pause before the limit, cut to what was
        // left, was then 0.3 ms, the next 0.3 ms again, and CI counted 966 attempts in the filter's last millisecond.
        var clock = new EarlyTimerClock(TimeSpan.FromMilliseconds(0.3));
        var filter = new ClusterConnectRetryFilter(TimeSpan.FromMilliseconds(600), NullLogger<ClusterConnectRetryFilter>.Instance, clock);
        int retries = 0;
        while (await filter.ShouldRetryConnectionAttempt(new SiloUnavailableException("no gateway"), Ct))
            Assert.True(++retries < 10, "a burst of attempts at the limit");
        // 250 ms, then the 350 ms left; then less than the shortest pause is left: give up.
        Assert.Equal(2, retries);
        // Limit 0: one try, no retry.
        Assert.False(await new ClusterConnectRetryFilter(TimeSpan.Zero, NullLogger<ClusterConnectRetryFilter>.Instance, clock)
            .ShouldRetryConnectionAttempt(new SiloUnavailableException("no gateway"), Ct));
    }

    /// <summary>A clock whose timers fire at once, advancing it by their period less <paramref name="early"/>.</summary>
    private sealed class EarlyTimerClock(TimeSpan early) : TimeProvider
    {
        private long _ticks;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public override long GetTimestamp() => Interlocked.Read(ref _ticks);

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            if (dueTime != Timeout.InfiniteTimeSpan)
            {
                Interlocked.Add(ref _ticks, Math.Max(0, (dueTime - early).Ticks));
                ThreadPool.QueueUserWorkItem(_ => callback(state));
            }
            return new NoTimer();
        }

        private sealed class NoTimer : ITimer
        {
            public bool Change(TimeSpan dueTime, TimeSpan period) => true;
            public void Dispose() { }
            public ValueTask DisposeAsync() => ValueTask.CompletedTask;
        }
    }

    [Fact]
    public async Task A_start_that_was_cancelled_is_not_retried()
    {
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        Assert.False(await Filter(TimeSpan.FromMinutes(5)).ShouldRetryConnectionAttempt(new SiloUnavailableException("no gateway"), cancelled.Token));
        Assert.False(await Filter(TimeSpan.FromMinutes(5)).ShouldRetryConnectionAttempt(new OperationCanceledException(), Ct));
    }
}
