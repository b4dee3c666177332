using XGenMM.Cluster.Abstractions;
using XGenMM.Engine.Decoding;
using XGenMM.Engine.Vision;

namespace XGenMM.Cluster.Grains;

/// <summary>
/// The two vocabularies meet here: engine enums (XGenMM.Engine) and wire enums (XGenMM.Cluster.Abstractions). Every
/// member is mapped by name, never cast by number, so a member added on one side fails the exhaustiveness test
/// (tests/XGenMM.Cluster.Tests/WireMapsTests) instead of arriving as the wrong value on the other.
/// </summary>
internal static class WireMaps
{
    public static RejectionKind ToWire(RejectionReason reason) => reason switch
    {
        RejectionReason.Overloaded => RejectionKind.Overloaded,
        RejectionReason.TooLong => RejectionKind.TooLong,
        RejectionReason.Expired => RejectionKind.Expired,
        RejectionReason.ShuttingDown => RejectionKind.ShuttingDown,
        RejectionReason.Invalid => RejectionKind.Invalid,
        _ => throw Unmapped(reason),
    };

    public static FinishKind ToWire(DecodeFinishReason finish) => finish switch
    {
        DecodeFinishReason.Stop => FinishKind.Stop,
        DecodeFinishReason.Length => FinishKind.Length,
        DecodeFinishReason.Cancelled => FinishKind.Cancelled,
        _ => throw Unmapped(finish),
    };

    public static TokenFormat ToWire(VisionTokenFormat format) => format switch
    {
        VisionTokenFormat.Float16 => TokenFormat.Float16,
        VisionTokenFormat.BFloat16 => TokenFormat.BFloat16,
        VisionTokenFormat.Float32 => TokenFormat.Float32,
        _ => throw Unmapped(format),
    };

    public static VisionTokenFormat ToEngine(TokenFormat format) => format switch
    {
        TokenFormat.Float16 => VisionTokenFormat.Float16,
        TokenFormat.BFloat16 => VisionTokenFormat.BFloat16,
        TokenFormat.Float32 => VisionTokenFormat.Float32,
        _ => throw new ClusterRejectedException(RejectionKind.Invalid, $"Vision token format {(int)format} is not known to this silo."),
    };

    /// <summary>The wire's priority (0 low, 1 normal, 2 high; anything else is clamped into that range).</summary>
    public static RequestPriority ToEngine(int priority) => priority switch
    {
        <= 0 => RequestPriority.Low,
        1 => RequestPriority.Normal,
        _ => RequestPriority.High,
    };

    private static InvalidOperationException Unmapped<T>(T value) where T : Enum =>
        new($"{typeof(T).Name}.{value} has no wire counterpart: add it to WireMaps.");
}
