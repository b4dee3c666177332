using XGenMM.ServiceDefaults;

namespace XGenMM.Cluster.Hosting;

/// <summary>Readiness of this silo (engines loaded, not draining) and the generation streams it is still serving.</summary>
public sealed class SiloState : IHostReadiness
{
    private volatile bool _ready, _draining;
    private int _openStreams;

    public bool Ready => _ready && !_draining;
    public bool Draining => _draining;
    public string? FailedReason { get; private set; }

    public HostReadinessState Readiness => Ready
        ? new HostReadinessState(true, "ready")
        : new HostReadinessState(false, Draining ? "draining" : FailedReason is null ? "starting" : "failed", FailedReason);

    internal void MarkReady() => _ready = true;
    internal void MarkDraining() => _draining = true;
    internal void MarkFailed(string reason) => FailedReason = reason;

    /// <summary>Generation streams whose caller has not yet read the last event.</summary>
    public int OpenStreams => Volatile.Read(ref _openStreams);

    /// <summary>Counts one generation stream until the returned handle is disposed (when the caller has read its end
    /// or gone away).</summary>
    internal IDisposable OpenStream()
    {
        Interlocked.Increment(ref _openStreams);
        return new StreamHandle(this);
    }

    /// <summary>Waits until every open stream has been read to its end, or <paramref name="timeout"/>; true when none is
    /// left. A drained engine has produced its last token, but the caller may not have pulled it yet: the silo must
    /// not leave the cluster before it has.</summary>
    internal async Task<bool> WaitForOpenStreamsAsync(TimeSpan timeout)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (OpenStreams > 0)
        {
            if (clock.Elapsed >= timeout) return false;
            await Task.Delay(20).ConfigureAwait(false);
        }
        return true;
    }

    private sealed class StreamHandle(SiloState owner) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0) Interlocked.Decrement(ref owner._openStreams);
        }
    }
}
