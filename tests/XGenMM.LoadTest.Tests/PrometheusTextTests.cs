using XGenMM.LoadTest.Metrics;

namespace XGenMM.LoadTest.Tests;

public sealed class PrometheusTextTests
{
    private const string Before = """
        # HELP xgenmm_request_success_total Requests that ended.
        # TYPE xgenmm_request_success_total counter
        xgenmm_request_success_total{tenant="alpha",finished_reason="length"} 3
        xgenmm_request_success_total{tenant="beta",finished_reason="stop"} 1
        xgenmm_generation_tokens_total{tenant="alpha"} 30
        xgenmm_requests_rejected_total{reason="invalid_api_key"} 0
        # TYPE xgenmm_time_to_first_token_seconds histogram
        xgenmm_time_to_first_token_seconds_sum{protocol="http"} 0.4
        xgenmm_time_to_first_token_seconds_count{protocol="http"} 4
        xgenmm_time_to_first_token_seconds_bucket{protocol="http",le="0.1"} 4
        xgenmm_time_to_first_token_seconds_bucket{protocol="http",le="0.5"} 4
        xgenmm_time_to_first_token_seconds_bucket{protocol="http",le="1"} 4
        xgenmm_time_to_first_token_seconds_bucket{protocol="http",le="+Inf"} 4
        """;

    private const string After = """
        xgenmm_request_success_total{tenant="alpha",finished_reason="length"} 13
        xgenmm_request_success_total{tenant="beta",finished_reason="stop"} 1
        xgenmm_request_success_total{tenant="we\"ird\\name",finished_reason="abort"} 2
        xgenmm_generation_tokens_total{tenant="alpha"} 130
        xgenmm_time_to_first_token_seconds_sum{protocol="http"} 1.9
        xgenmm_time_to_first_token_seconds_count{protocol="http"} 10
        xgenmm_time_to_first_token_seconds_bucket{protocol="http",le="0.1"} 5
        xgenmm_time_to_first_token_seconds_bucket{protocol="http",le="0.5"} 12
        xgenmm_time_to_first_token_seconds_bucket{protocol="http",le="1"} 14
        xgenmm_time_to_first_token_seconds_bucket{protocol="http",le="+Inf"} 14
        xgenmm_time_to_first_token_seconds_sum{protocol="signalr"} 0.2
        xgenmm_time_to_first_token_seconds_count{protocol="signalr"} 2
        xgenmm_time_to_first_token_seconds_bucket{protocol="signalr",le="0.1"} 0
        xgenmm_time_to_first_token_seconds_bucket{protocol="signalr",le="0.5"} 2
        xgenmm_time_to_first_token_seconds_bucket{protocol="signalr",le="1"} 2
        xgenmm_time_to_first_token_seconds_bucket{protocol="signalr",le="+Inf"} 2
        xgenmm_mm_cache_queries_total 1.5e1 1700000000000
        """;

    [Fact]
    public void Samples_keep_their_labels_escapes_and_values()
    {
        var samples = PrometheusText.Parse(After);
        var weird = samples.Single(s => s.Label("finished_reason") == "abort");
        Assert.Equal("we\"ird\\name", weird.Label("tenant"));
        Assert.Equal(2, weird.Value);
        Assert.Equal(double.PositiveInfinity, PrometheusText.ParseValue(samples.First(s => s.Label("le") == "+Inf").Label("le")));
        Assert.Equal(15, samples.Single(s => s.Name == "xgenmm_mm_cache_queries_total").Value);
    }

    [Fact]
    public void The_delta_between_two_scrapes_is_per_tenant_and_per_reason()
    {
        var d = ServerDelta.Between(MetricsSnapshot.Parse(Before), MetricsSnapshot.Parse(After));
        Assert.Equal(12, d.RequestsSucceeded);
        Assert.Equal(new Dictionary<string, double> { ["alpha"] = 10, ["we\"ird\\name"] = 2 }, d.RequestsByTenant);
        Assert.Equal(new Dictionary<string, double> { ["length"] = 10, ["abort"] = 2 }, d.RequestsByFinishReason);
        Assert.Equal(100, d.GenerationTokens);
        Assert.Equal(15, d.MmCacheQueries);
        Assert.Empty(d.RejectedByReason);
        // Histograms merge their label sets, then subtract: 6 http + 2 signalr new samples.
        Assert.Equal(8, d.Ttft!.Count);
        Assert.Equal(1700.0 / 8, d.Ttft.MeanMs, 6);
    }

    [Fact]
    public void Histogram_quantiles_interpolate_inside_the_bucket_as_prometheus_does()
    {
        var h = new HistogramData([(0.1, 10), (0.5, 30), (1, 40), (double.PositiveInfinity, 40)], 12, 40);
        Assert.Equal(0.1 * 8 / 10, h.Quantile(0.2), 9); // rank 8 in the first bucket, from 0
        Assert.Equal(0.3, h.Quantile(0.5), 9); // rank 20: halfway through (0.1, 0.5]
        Assert.Equal(1, h.Quantile(1), 9);
        var tail = new HistogramData([(0.1, 1), (double.PositiveInfinity, 5)], 9, 5);
        Assert.Equal(0.1, tail.Quantile(0.99), 9); // the +Inf bucket answers the highest finite bound
        Assert.True(double.IsNaN(new HistogramData([], 0, 0).Quantile(0.5)));
    }
}
