using Orleans.Placement;
using Orleans.Runtime;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.Runtime.Placement;

namespace XGenMM.Cluster.Placement;

/// <summary>Places a grain on a silo whose metadata carries the vision role (and never elsewhere).</summary>
[GenerateSerializer, Immutable, Alias("xgenmm.VisionSiloPlacement")]
public sealed class VisionSiloPlacement : PlacementStrategy;

[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class VisionSiloPlacementAttribute() : PlacementAttribute(new VisionSiloPlacement());

internal sealed class VisionSiloPlacementDirector(ISiloMetadataCache metadata) : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var candidates = context.GetCompatibleSilos(target).Where(s => SiloRoles.Has(metadata, s, SiloRoles.Vision)).ToArray();
        if (candidates.Length == 0)
            throw new OrleansException($"No active silo has the '{SiloRoles.Vision}' role; {target.GrainIdentity} cannot be placed.");
        // Prefer the calling silo when it is a vision silo (no hop for the image bytes), else spread by key.
        if (candidates.Contains(context.LocalSilo)) return Task.FromResult(context.LocalSilo);
        return Task.FromResult(candidates[(int)(target.GrainIdentity.GetUniformHashCode() % (uint)candidates.Length)]);
    }
}
