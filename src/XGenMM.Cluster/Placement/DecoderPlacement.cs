using Orleans.Placement;
using Orleans.Runtime;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.Runtime.Placement;

namespace XGenMM.Cluster.Placement;

/// <summary>
/// Pins a decoder grain to the silo named in its key ("{silo}|{device}"): the grain wraps that silo's engine for
/// that device, so it must never activate anywhere else. If the silo is gone, placement fails and the router moves on.
/// </summary>
[GenerateSerializer, Immutable, Alias("xgenmm.DecoderPlacement")]
public sealed class DecoderPlacement : PlacementStrategy;

[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class DecoderPlacementAttribute() : PlacementAttribute(new DecoderPlacement());

internal sealed class DecoderPlacementDirector(ISiloMetadataCache metadata) : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var key = DecoderKey.Parse(target.GrainIdentity.Key.ToString());
        foreach (var silo in context.GetCompatibleSilos(target))
            if (silo.ToParsableString() == key.Silo && SiloRoles.Has(metadata, silo, SiloRoles.Decoder))
                return Task.FromResult(silo);
        throw new OrleansException($"Decoder '{key}' cannot be placed: silo {key.Silo} is not an active decoder silo.");
    }
}

/// <summary>A decoder's identity: the silo that owns the device, and the device on it.</summary>
public readonly record struct DecoderKey(string Silo, string Device)
{
    public override string ToString() => $"{Silo}|{Device}";

    public static DecoderKey Parse(string key)
    {
        int bar = key.LastIndexOf('|');
        if (bar <= 0 || bar == key.Length - 1) throw new ArgumentException($"'{key}' is not a decoder key (silo|device).", nameof(key));
        return new DecoderKey(key[..bar], key[(bar + 1)..]);
    }
}
