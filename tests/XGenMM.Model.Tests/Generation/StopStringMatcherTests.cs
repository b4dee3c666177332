using XGenMM.Model.Generation;

namespace XGenMM.Model.Tests.Generation;

public sealed class StopStringMatcherTests
{
    [Fact]
    public void A_stop_string_split_across_deltas_is_never_emitted()
    {
        var m = new StopStringMatcher(["END"]);
        Assert.Equal("abc ", m.Push("abc E"));
        Assert.Equal("", m.Push("N"));
        Assert.Equal("", m.Push("D and more"));
        Assert.True(m.Stopped);
        Assert.Equal("", m.Flush());
    }

    [Fact]
    public void Held_back_text_is_released_when_it_is_not_a_stop()
    {
        var m = new StopStringMatcher(["END"]);
        Assert.Equal("x", m.Push("xEN"));
        Assert.Equal("ENx", m.Push("x"));
        Assert.Equal("", m.Push("E"));
        Assert.Equal("E", m.Flush());
        Assert.False(m.Stopped);
    }

    [Fact]
    public void The_earliest_of_several_stops_wins()
    {
        var m = new StopStringMatcher(["bb", "a"]);
        Assert.Equal("xx", m.Push("xxabb"));
        Assert.True(m.Stopped);
    }

    [Fact]
    public void Without_stops_text_passes_through() => Assert.Equal("hello", new StopStringMatcher([]).Push("hello"));
}
