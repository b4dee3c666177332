using XGenMM.Cluster.Abstractions;
using XGenMM.Engine.Decoding;

namespace XGenMM.Cluster.Grains;

internal static class ClusterErrors
{
    public static RejectionKind Map(RejectionReason reason) => reason switch
    {
        RejectionReason.Overloaded => RejectionKind.Overloaded,
        RejectionReason.TooLong => RejectionKind.TooLong,
        RejectionReason.Expired => RejectionKind.Expired,
        RejectionReason.ShuttingDown => RejectionKind.ShuttingDown,
        _ => RejectionKind.Invalid,
    };
}
