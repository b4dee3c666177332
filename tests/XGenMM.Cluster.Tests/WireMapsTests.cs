using XGenMM.Cluster.Abstractions;
using XGenMM.Cluster.Grains;
using XGenMM.Engine.Decoding;
using XGenMM.Engine.Vision;

namespace XGenMM.Cluster.Tests;

/// <summary>Every engine enum member has its wire counterpart by name, and the formats round-trip.</summary>
public sealed class WireMapsTests
{
    [Fact]
    public void Every_rejection_reason_maps_to_the_wire_kind_of_the_same_name()
    {
        foreach (var reason in Enum.GetValues<RejectionReason>())
            Assert.Equal(reason.ToString(), WireMaps.ToWire(reason).ToString());
    }

    [Fact]
    public void Every_finish_reason_maps_to_the_wire_kind_of_the_same_name()
    {
        foreach (var finish in Enum.GetValues<DecodeFinishReason>())
            Assert.Equal(finish.ToString(), WireMaps.ToWire(finish).ToString());
        Assert.Equal(Enum.GetValues<DecodeFinishReason>().Length, Enum.GetValues<FinishKind>().Length);
    }

    [Fact]
    public void Token_formats_round_trip_and_an_unknown_wire_format_is_refused()
    {
        foreach (var format in Enum.GetValues<VisionTokenFormat>())
        {
            Assert.Equal(format.ToString(), WireMaps.ToWire(format).ToString());
            Assert.Equal(format, WireMaps.ToEngine(WireMaps.ToWire(format)));
        }
        Assert.Equal(Enum.GetValues<VisionTokenFormat>().Length, Enum.GetValues<TokenFormat>().Length);
        var e = Assert.Throws<ClusterRejectedException>(() => WireMaps.ToEngine((TokenFormat)7));
        Assert.Equal(RejectionKind.Invalid, e.Kind);
    }

    [Theory]
    [InlineData(-5, RequestPriority.Low)]
    [InlineData(0, RequestPriority.Low)]
    [InlineData(1, RequestPriority.Normal)]
    [InlineData(2, RequestPriority.High)]
    [InlineData(99, RequestPriority.High)]
    public void Wire_priorities_map_to_engine_priorities(int wire, RequestPriority engine) => Assert.Equal(engine, WireMaps.ToEngine(wire));
}
