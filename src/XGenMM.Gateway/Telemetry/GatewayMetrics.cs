using Prometheus;
using XGenMM.Gateway.OpenAi;
using XGenMM.Cluster.Abstractions.Telemetry;

namespace XGenMM.Gateway.Telemetry;

/// <summary>
/// The gateway's request metrics, vLLM-style names under xgenmm_ (serving-anchors.md section 2): latency histograms
/// as the client sees them, token counters by tenant, outcomes and rejections by reason, live streams.
/// </summary>
public sealed class GatewayMetrics
{
    // Buckets follow vLLM's: fine below a second where TTFT and ITL live, coarse above.
    private static readonly double[] TtftBuckets = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
    private static readonly double[] ItlBuckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0];
    private static readonly double[] E2eBuckets = [0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0];

    private static readonly double[] PhaseBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0];
    // Tokens per request: vLLM's 1-2-5 series, up to beyond any context this model serves.
    private static readonly double[] TokenBuckets = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000];

    public GatewayMetrics(CollectorRegistry registry)
    {
        var f = Metrics.WithCustomRegistry(registry);
        string[] timed = ["model_name", "protocol"];
        TimeToFirstToken = f.CreateHistogram(MetricNames.TimeToFirstToken, "Seconds from request arrival to the first token.", timed, new HistogramConfiguration { Buckets = TtftBuckets });
        InterTokenLatency = f.CreateHistogram(MetricNames.InterTokenLatency, "Seconds between consecutive tokens of a stream.", timed, new HistogramConfiguration { Buckets = ItlBuckets });
        EndToEnd = f.CreateHistogram(MetricNames.EndToEndLatency, "Seconds from request arrival to its last token.", timed, new HistogramConfiguration { Buckets = E2eBuckets });
        QueueTime = f.CreateHistogram(MetricNames.QueueTime, "Seconds a request waited in the decoder's queue.", timed, new HistogramConfiguration { Buckets = TtftBuckets });
        PrefillTime = f.CreateHistogram(MetricNames.PrefillTime, "Seconds of a request's prefill (the decoder's, else time to first token less queue time).", timed, new HistogramConfiguration { Buckets = PhaseBuckets });
        DecodeTime = f.CreateHistogram(MetricNames.DecodeTime, "Seconds from a request's first token to its last.", timed, new HistogramConfiguration { Buckets = PhaseBuckets });
        RequestPromptTokens = f.CreateHistogram(MetricNames.RequestPromptTokens, "Prompt tokens (text and image) per finished request.", timed, new HistogramConfiguration { Buckets = TokenBuckets });
        RequestGenerationTokens = f.CreateHistogram(MetricNames.RequestGenerationTokens, "Generated tokens per finished request.", timed, new HistogramConfiguration { Buckets = TokenBuckets });
        PrefixCacheQueries = f.CreateCounter(MetricNames.PrefixCacheQueries, "Prompt tokens of finished requests looked up in the decoders' prefix cache.", ["model_name"]);
        PrefixCacheHits = f.CreateCounter(MetricNames.PrefixCacheHits, "Prompt tokens of finished requests served from the decoders' prefix cache.", ["model_name"]);
        PromptTokens = f.CreateCounter(MetricNames.PromptTokens, "Prompt text tokens of finished requests.", ["tenant", "model_name"]);
        GenerationTokens = f.CreateCounter(MetricNames.GenerationTokens, "Generated tokens of finished requests.", ["tenant", "model_name"]);
        ImageTokens = f.CreateCounter(MetricNames.ImageTokens, "Vision tokens of finished requests.", ["tenant", "model_name"]);
        Success = f.CreateCounter(MetricNames.RequestSuccess, "Requests that ended, by finish reason (stop, length, abort).", ["tenant", "finished_reason", "model_name"]);
        Rejected = f.CreateCounter(MetricNames.RequestsRejected, "Requests refused or failed, by reason.", ["reason"]);
        ActiveStreams = f.CreateGauge(MetricNames.ActiveStreams, "Generations being streamed by this gateway.", ["protocol"]);
        Connections = f.CreateGauge(MetricNames.SignalRConnections, "Open SignalR connections.");
    }

    /// <summary>Counts a refused or failed request once, wherever it is caught (parser, auth, hub, service).</summary>
    public void Reject(OpenAiException error)
    {
        if (error.Counted) return;
        error.Counted = true;
        Rejected.WithLabels(error.Code ?? error.Type).Inc();
    }

    public Histogram TimeToFirstToken { get; }
    public Histogram InterTokenLatency { get; }
    public Histogram EndToEnd { get; }
    public Histogram QueueTime { get; }
    public Histogram PrefillTime { get; }
    public Histogram DecodeTime { get; }
    public Histogram RequestPromptTokens { get; }
    public Histogram RequestGenerationTokens { get; }
    public Counter PrefixCacheQueries { get; }
    public Counter PrefixCacheHits { get; }
    public Counter PromptTokens { get; }
    public Counter GenerationTokens { get; }
    public Counter ImageTokens { get; }
    public Counter Success { get; }
    public Counter Rejected { get; }
    public Gauge ActiveStreams { get; }
    public Gauge Connections { get; }
}
