using Orleans.Runtime;
using Orleans.Runtime.MembershipService.SiloMetadata;

namespace XGenMM.Cluster.Placement;

/// <summary>Silo roles, published as silo metadata so placement on any silo knows what each silo is for.</summary>
public static class SiloRoles
{
    public const string Vision = "vision";
    public const string Decoder = "decoder";
    public const string MetadataKey = "xgenmm.roles";

    public static IReadOnlySet<string> Parse(string? roles) =>
        (roles ?? "").Split([',', ' ', ';'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(r => r.ToLowerInvariant()).ToHashSet(StringComparer.Ordinal);

    internal static bool Has(ISiloMetadataCache metadata, SiloAddress silo, string role) =>
        metadata.GetSiloMetadata(silo).Metadata.TryGetValue(MetadataKey, out var roles) && Parse(roles).Contains(role);
}
