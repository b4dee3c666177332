using Orleans.Concurrency;
using Orleans.Runtime;
using Orleans.Runtime.MembershipService.SiloMetadata;
using XGenMM.Cluster.Abstractions;
using XGenMM.Cluster.Placement;

namespace XGenMM.Cluster.Grains;

/// <summary>
/// Answers with the membership of the silo that takes the call: active silos, their names and roles. A stateless
/// worker, so the call is served where the client's gateway connection lands and never waits on one other silo.
/// </summary>
[StatelessWorker(1)]
internal sealed class ClusterViewGrain(IClusterMembershipService membership, ISiloMetadataCache metadata) : Grain, IClusterViewGrain
{
    public Task<ClusterView> Read(CancellationToken cancellationToken = default)
    {
        var snapshot = membership.CurrentSnapshot;
        var silos = snapshot.Members.Values
            // A draining silo (SIGTERM: shutting down, stopping) still finishes the streams it holds: only a silo that
            // left the membership (dead) is lost to its callers.
            .Where(m => m.Status is SiloStatus.Active or SiloStatus.ShuttingDown or SiloStatus.Stopping)
            .Select(m => new SiloView(m.SiloAddress.ToParsableString(), m.Name,
                metadata.GetSiloMetadata(m.SiloAddress).Metadata.TryGetValue(SiloRoles.MetadataKey, out var roles) ? [.. SiloRoles.Parse(roles)] : []))
            .OrderBy(s => s.Address, StringComparer.Ordinal)
            .ToArray();
        return Task.FromResult(new ClusterView(snapshot.Version.Value, silos));
    }
}
