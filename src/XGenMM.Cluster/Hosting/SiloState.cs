using XGenMM.ServiceDefaults;

namespace XGenMM.Cluster.Hosting;

/// <summary>Readiness of this silo: engines loaded, not draining.</summary>
public sealed class SiloState : IHostReadiness
{
    private volatile bool _ready, _draining;

    public bool Ready => _ready && !_draining;
    public bool Draining => _draining;
    public string? FailedReason { get; private set; }

    public HostReadinessState Readiness => Ready
        ? new HostReadinessState(true, "ready")
        : new HostReadinessState(false, Draining ? "draining" : FailedReason is null ? "starting" : "failed", FailedReason);

    internal void MarkReady() => _ready = true;
    internal void MarkDraining() => _draining = true;
    internal void MarkFailed(string reason) => FailedReason = reason;
}
