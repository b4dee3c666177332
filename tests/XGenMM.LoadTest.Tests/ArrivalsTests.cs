using XGenMM.LoadTest.Load;

namespace XGenMM.LoadTest.Tests;

public sealed class ArrivalsTests
{
    [Theory]
    [InlineData(1.0)]
    [InlineData(0.25)]
    [InlineData(4.0)]
    public void Gaps_average_one_over_the_rate_and_the_burstiness_sets_their_spread(double burstiness)
    {
        // Gamma(shape k, scale 1/(rate k)): mean 1/rate, squared coefficient of variation 1/k (vLLM's --burstiness).
        const double rate = 5;
        var t = Arrivals.Schedule(40_001, rate, burstiness, new Random(7));
        var gaps = t.Zip(t.Skip(1), (a, b) => b - a).ToArray();
        double mean = gaps.Average();
        double cv2 = gaps.Select(g => (g - mean) * (g - mean)).Average() / (mean * mean);
        Assert.Equal(0, t[0]);
        Assert.All(gaps, g => Assert.True(g >= 0));
        Assert.InRange(mean, 0.97 / rate, 1.03 / rate);
        Assert.InRange(cv2, 0.9 / burstiness, 1.1 / burstiness);
    }

    [Fact]
    public void The_same_seed_draws_the_same_schedule()
    {
        Assert.Equal(Arrivals.Schedule(50, 3, 0.5, new Random(11)), Arrivals.Schedule(50, 3, 0.5, new Random(11)));
        Assert.NotEqual(Arrivals.Schedule(50, 3, 0.5, new Random(11)), Arrivals.Schedule(50, 3, 0.5, new Random(12)));
    }
}
