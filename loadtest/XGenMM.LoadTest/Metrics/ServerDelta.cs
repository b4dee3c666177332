namespace XGenMM.LoadTest.Metrics;

/// <summary>A histogram of the gateway over one point: count, mean and bucket-estimated percentiles, in milliseconds.</summary>
public sealed record ServerHistogram(double Count, double MeanMs, double P50Ms, double P90Ms, double P99Ms)
{
    public static ServerHistogram From(HistogramData h) =>
        new(h.Count, h.Mean * 1000, h.Quantile(0.5) * 1000, h.Quantile(0.9) * 1000, h.Quantile(0.99) * 1000);
}

/// <summary>
/// What the gateway's <c>/metrics</c> says happened between the scrape before a point (after the warm-up) and the scrape
/// after it: counters and histograms as deltas. Tenants are the server's tenant ids.
/// </summary>
public sealed record ServerDelta
{
    public double RequestsSucceeded { get; init; }
    public Dictionary<string, double> RequestsByTenant { get; init; } = [];
    public Dictionary<string, double> RequestsByFinishReason { get; init; } = [];
    public double GenerationTokens { get; init; }
    public Dictionary<string, double> GenerationTokensByTenant { get; init; } = [];
    public Dictionary<string, double> PromptTokensByTenant { get; init; } = [];
    public Dictionary<string, double> ImageTokensByTenant { get; init; } = [];
    public Dictionary<string, double> RejectedByReason { get; init; } = [];
    public double MmCacheQueries { get; init; }
    public double MmCacheHits { get; init; }
    public double? MmCacheHitRate => MmCacheQueries > 0 ? MmCacheHits / MmCacheQueries : null;
    /// <summary>
    /// Images the vision engine actually encoded. Reuse served by a still-active vision grain never reaches the engine's
    /// cache, so a repeated image shows as no query at all rather than as a hit: encodes are the figure that compares.
    /// </summary>
    public double VisionEncodes => MmCacheQueries - MmCacheHits;
    public double PrefixCacheHitTokens { get; init; }
    public ServerHistogram? Ttft { get; init; }
    public ServerHistogram? Itl { get; init; }
    public ServerHistogram? E2e { get; init; }
    public ServerHistogram? QueueTime { get; init; }

    public const string SuccessName = "xgenmm_request_success_total";
    public const string GenerationName = "xgenmm_generation_tokens_total";
    public const string PromptName = "xgenmm_prompt_tokens_total";
    public const string ImageName = "xgenmm_image_tokens_total";
    public const string RejectedName = "xgenmm_requests_rejected_total";
    public const string MmQueriesName = "xgenmm_mm_cache_queries_total";
    public const string MmHitsName = "xgenmm_mm_cache_hits_total";
    public const string PrefixHitName = "xgenmm_prefix_cache_hit_tokens_total";
    public const string TtftName = "xgenmm_time_to_first_token_seconds";
    public const string ItlName = "xgenmm_inter_token_latency_seconds";
    public const string E2eName = "xgenmm_e2e_request_latency_seconds";
    public const string QueueName = "xgenmm_request_queue_time_seconds";

    public static ServerDelta Between(MetricsSnapshot before, MetricsSnapshot after)
    {
        static Dictionary<string, double> Diff(Dictionary<string, double> a, Dictionary<string, double> b) =>
            a.Select(kv => (kv.Key, Value: kv.Value - b.GetValueOrDefault(kv.Key))).Where(kv => kv.Value != 0)
                .ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        ServerHistogram? Hist(string name)
        {
            var a = after.Histogram(name);
            if (a.Buckets.Length == 0) return null;
            var d = a.Minus(before.Histogram(name));
            return d.Count > 0 ? ServerHistogram.From(d) : null;
        }
        return new ServerDelta
        {
            RequestsSucceeded = after.Sum(SuccessName) - before.Sum(SuccessName),
            RequestsByTenant = Diff(after.By(SuccessName, "tenant"), before.By(SuccessName, "tenant")),
            RequestsByFinishReason = Diff(after.By(SuccessName, "finished_reason"), before.By(SuccessName, "finished_reason")),
            GenerationTokens = after.Sum(GenerationName) - before.Sum(GenerationName),
            GenerationTokensByTenant = Diff(after.By(GenerationName, "tenant"), before.By(GenerationName, "tenant")),
            PromptTokensByTenant = Diff(after.By(PromptName, "tenant"), before.By(PromptName, "tenant")),
            ImageTokensByTenant = Diff(after.By(ImageName, "tenant"), before.By(ImageName, "tenant")),
            RejectedByReason = Diff(after.By(RejectedName, "reason"), before.By(RejectedName, "reason")),
            MmCacheQueries = after.Sum(MmQueriesName) - before.Sum(MmQueriesName),
            MmCacheHits = after.Sum(MmHitsName) - before.Sum(MmHitsName),
            PrefixCacheHitTokens = after.Sum(PrefixHitName) - before.Sum(PrefixHitName),
            Ttft = Hist(TtftName),
            Itl = Hist(ItlName),
            E2e = Hist(E2eName),
            QueueTime = Hist(QueueName),
        };
    }
}
