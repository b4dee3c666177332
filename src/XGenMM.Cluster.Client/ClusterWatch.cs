using Microsoft.Extensions.Logging;
using XGenMM.Cluster.Abstractions;

namespace XGenMM.Cluster.Client;

/// <summary>
/// The cluster's active silos as a client sees them, polled from <see cref="IClusterViewGrain"/> every
/// <see cref="CallDeadlines.ViewPoll"/>. A client has no membership service, and a call to a grain whose silo died is
/// answered by nobody until its response timeout (minutes); so each call on a request's path takes a token from here
/// that is cancelled when the silo it depends on leaves the view, and the caller moves the work or fails it, typed,
/// within one poll of the cluster declaring the silo dead.
/// </summary>
public sealed partial class ClusterWatch : IDisposable
{
    private const string VisionRole = "vision";
    private readonly IGrainFactory _grains;
    private readonly CallDeadlines _deadlines;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, CancellationTokenSource> _silos = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private CancellationTokenSource _visionLoss = new();
    private ClusterView? _view;
    private DateTimeOffset _viewAt = DateTimeOffset.MinValue;
    private Task? _poll;

    public ClusterWatch(IGrainFactory grains, CallDeadlines deadlines, ILogger logger)
    {
        _grains = grains;
        _deadlines = deadlines;
        _logger = logger;
    }

    /// <summary>Polling starts with the first request, not with the host: a gateway co-hosting its silo (Local mode)
    /// would otherwise call the view grain before the silo is active, and Orleans logs each failed placement.</summary>
    private void EnsurePolling()
    {
        if (Volatile.Read(ref _poll) is not null) return;
        lock (_gate)
        {
            if (_poll is not null || _stop.IsCancellationRequested) return;
            _poll = Task.Run(PollAsync);
        }
    }

    /// <summary>The last view read, or null before the first one.</summary>
    public ClusterView? View
    {
        get
        {
            EnsurePolling();
            lock (_gate) return _view;
        }
    }

    /// <summary>True when the last view is recent and has no silo of the vision role.</summary>
    public bool KnowsNoVisionSilo
    {
        get
        {
            EnsurePolling();
            lock (_gate) return _view is not null && DateTimeOffset.UtcNow - _viewAt < _deadlines.ViewPoll * 3 && !_view.Silos.Any(s => s.Roles.Contains(VisionRole));
        }
    }

    /// <summary>Cancelled when a vision silo that is active now leaves the view (any image call in flight may have been
    /// on it: the caller cannot know where a grain lives).</summary>
    public CancellationToken VisionLoss
    {
        get
        {
            EnsurePolling();
            lock (_gate) return _visionLoss.Token;
        }
    }

    /// <summary>Cancelled when <paramref name="silo"/> (a parsable silo address) leaves the view; already cancelled
    /// when the view is known and lacks it.</summary>
    public CancellationToken SiloLost(string silo)
    {
        EnsurePolling();
        lock (_gate)
        {
            if (_view is not null && !_view.Silos.Any(s => s.Address == silo)) return new CancellationToken(canceled: true);
            if (!_silos.TryGetValue(silo, out var source)) _silos[silo] = source = new CancellationTokenSource();
            return source.Token;
        }
    }

    /// <summary>Whether <paramref name="silo"/> is active as far as this client knows (true before the first view).</summary>
    public bool IsActive(string silo)
    {
        EnsurePolling();
        lock (_gate) return _view is null || _view.Silos.Any(s => s.Address == silo);
    }

    /// <summary>Reads the view now (a caller that saw a failure wants to know whether a silo left).</summary>
    public async Task RefreshAsync(CancellationToken cancellationToken)
    {
        EnsurePolling();
        using var call = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stop.Token);
        call.CancelAfter(_deadlines.View);
        try
        {
            Apply(await _grains.GetGrain<IClusterViewGrain>(0).Read(call.Token).ConfigureAwait(false));
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            // The silo that took the call may be the one that died, or the client is reconnecting: the next poll reads again.
            LogViewFailed(e);
        }
    }

    private async Task PollAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            await RefreshAsync(_stop.Token).ConfigureAwait(false);
            try
            {
                await Task.Delay(_deadlines.ViewPoll, _stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    internal void Apply(ClusterView view)
    {
        var lost = new List<CancellationTokenSource>();
        lock (_gate)
        {
            // Views come from whichever silo took the call; an older one (a silo that has not heard of a change yet) is
            // ignored unless ours is old enough that the cluster may have been restarted.
            if (_view is not null && view.Version < _view.Version && DateTimeOffset.UtcNow - _viewAt < _deadlines.ViewPoll * 5) return;
            var active = view.Silos.Select(s => s.Address).ToHashSet(StringComparer.Ordinal);
            foreach (var (silo, source) in _silos.Where(s => !active.Contains(s.Key)).ToList())
            {
                _silos.Remove(silo);
                lost.Add(source);
                LogSiloLeft(silo);
            }
            if (_view is not null && _view.Silos.Any(s => s.Roles.Contains(VisionRole) && !active.Contains(s.Address)))
            {
                lost.Add(_visionLoss);
                _visionLoss = new CancellationTokenSource();
            }
            _view = view;
            _viewAt = DateTimeOffset.UtcNow;
        }
        // Outside the lock: cancellation runs the callers' continuations.
        foreach (var source in lost)
        {
            source.Cancel();
            source.Dispose();
        }
    }

    public void Dispose()
    {
        Task? poll;
        lock (_gate)
        {
            _stop.Cancel();
            poll = _poll;
        }
        try
        {
            poll?.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
            // The loop ends with the cancellation; nothing else to report at disposal.
        }
        _stop.Dispose();
        lock (_gate)
        {
            foreach (var source in _silos.Values) source.Dispose();
            _silos.Clear();
            _visionLoss.Dispose();
        }
    }

    [LoggerMessage(EventId = 210, Level = LogLevel.Warning, Message = "Silo {Silo} left the cluster: calls that depend on it are ended and moved")]
    private partial void LogSiloLeft(string silo);

    [LoggerMessage(EventId = 211, Level = LogLevel.Debug, Message = "The cluster view could not be read")]
    private partial void LogViewFailed(Exception exception);
}
