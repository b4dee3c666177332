using XGenMM.LoadTest.Cli;
using XGenMM.LoadTest.Clients;
using XGenMM.LoadTest.Load;
using XGenMM.LoadTest.Metrics;

namespace XGenMM.LoadTest.Tests;

public sealed class SummaryTests
{
    [Fact]
    public void Percentiles_interpolate_linearly_as_numpy_does()
    {
        double[] x = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        Assert.Equal(5.5, Distribution.Percentile(x, 50), 9);
        Assert.Equal(9.1, Distribution.Percentile(x, 90), 9);
        Assert.Equal(9.91, Distribution.Percentile(x, 99), 9);
        var d = Distribution.OfSeconds([0.002, 0.001, 0.003]);
        Assert.Equal((3, 2.0, 1.0, 3.0), (d.Count, d.P50, d.Min, d.Max));
        Assert.True(double.IsNaN(Distribution.OfSeconds([]).P50));
    }

    private static RequestRecord Record(string tenant, double start, double ttft, double end, int tokens, bool ok = true, string? error = null)
    {
        var r = new RequestRecord { Tenant = tenant, Start = start, Scheduled = start, End = end, Ttft = ttft, OutputTokens = tokens, Success = ok };
        if (!ok) r.Fail(401, error ?? "401 invalid_api_key", null);
        return r;
    }

    [Fact]
    public void Tpot_throughput_goodput_errors_and_concurrency_follow_the_definitions()
    {
        TenantSpec a = new("a", "ka", 1) { ServerId = "alpha" }, b = new("b", "kb", 1);
        var records = new[]
        {
            Record("a", 0.0, 0.1, 1.1, 11),  // TPOT (1.1 - 0.1) / 10 = 100 ms
            Record("a", 0.0, 0.3, 2.3, 21),  // TPOT 100 ms, TTFT too slow for the SLO
            Record("a", 1.1, 0.1, 2.0, 10),  // TPOT 100 ms
            Record("b", 2.0, 0, 2.0, 0, ok: false),
        };
        var p = PointSummary.From("c=2", LoadMode.Closed, 2, 2, null, null, records, [a, b], new Slo(TtftMs: 200, TpotMs: null, E2eMs: null), null);
        Assert.Equal((4, 3, 1), (p.Requests, p.Succeeded, p.Failed));
        Assert.Equal(2.3, p.DurationSeconds, 9);
        Assert.Equal(42 / 2.3, p.OutputTokensPerSecond, 9);
        Assert.Equal(3 / 2.3, p.RequestsPerSecond, 9);
        Assert.Equal(100, p.Tpot.P50, 6);
        Assert.Equal(2 / 2.3, p.Goodput!.Value, 9);
        Assert.Equal(0.5, p.SloAttainment);
        Assert.Equal(new Dictionary<string, int> { ["401 invalid_api_key"] = 1 }, p.Errors);
        // In flight: 2 over [0, 1.1], 2 over [1.1, 2.0]: mean 2 between the first and the last start; peak 2 (ends before starts).
        Assert.Equal(2, p.PeakConcurrency);
        Assert.Equal(2, p.MeanConcurrency, 9);
        Assert.Equal(3 / 2.0, p.AchievedArrivalRate, 9);
        Assert.Equal(["a", "b"], p.Tenants.Select(t => t.Tenant));
        Assert.Equal((3, 42L, "alpha"), (p.Tenants[0].Succeeded, p.Tenants[0].OutputTokens, p.Tenants[0].ServerId));
    }

    private static PointSummary Point(double x, double tokS, double? attainment = null) =>
        new() { Label = x.ToString(System.Globalization.CultureInfo.InvariantCulture), X = x, OutputTokensPerSecond = tokS, SloAttainment = attainment };

    [Fact]
    public void The_knee_is_the_last_point_before_throughput_stops_rising_or_the_slo_is_missed()
    {
        var s = new ExperimentSettings { SweepMinGain = 0.1 };
        var k = Knee.Find([Point(1, 100), Point(2, 190), Point(4, 350), Point(8, 370), Point(16, 360)], s);
        Assert.Equal(4, k.X);
        Assert.Contains("rose 6%", k.Reason, StringComparison.Ordinal);

        s.Slo = new Slo(TtftMs: 500, null, null);
        k = Knee.Find([Point(1, 100, 1), Point(2, 190, 0.95), Point(4, 350, 0.5)], s);
        Assert.Equal(2, k.X);
        Assert.Contains("SLO attainment 50%", k.Reason, StringComparison.Ordinal);

        // An open loop whose server serves well below the offered rate is saturated, however the tokens/s moved.
        var served = new[] { Point(2, 100, 1) with { ServedFraction = 0.98 }, Point(4, 200, 1) with { ServedFraction = 0.95 }, Point(8, 300, 1) with { ServedFraction = 0.7, ServedRate = 5.6, ScheduledArrivalRate = 8 } };
        k = Knee.Find(served, s);
        Assert.Equal(4, k.X);
        Assert.Contains("served 5.6 of 8.0 req/s offered (70% < 85%)", k.Reason, StringComparison.Ordinal);

        k = Knee.Find([Point(1, 100, 1), Point(2, 200, 1)], s);
        Assert.Null(k.Label);
        Assert.Contains("still rising", k.Reason, StringComparison.Ordinal);
    }
}
