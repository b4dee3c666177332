namespace XGenMM.Cluster.Abstractions.Telemetry;

/// <summary>
/// Prometheus metric names, vLLM-style under the xgenmm_ prefix (docs/configuration.md mirrors this list; the Helm
/// chart's autoscalers and dashboard use these names).
/// </summary>
public static class MetricNames
{
    // Decoder silos (label: device)
    public const string RequestsWaiting = "xgenmm_num_requests_waiting";
    public const string RequestsRunning = "xgenmm_num_requests_running";
    public const string TokensWaiting = "xgenmm_num_tokens_waiting";
    public const string KvCacheUsage = "xgenmm_kv_cache_usage_perc";
    public const string DecoderGeneratedTokens = "xgenmm_decoder_generation_tokens_total";
    public const string PrefixCacheHitTokens = "xgenmm_prefix_cache_hit_tokens_total";
    /// <summary>vLLM's num_preemptions, from the decode engine's load (0 while its scheduler queues instead of preempting).</summary>
    public const string NumPreemptions = "xgenmm_num_preemptions_total";
    /// <summary>The engine's forward passes and what they carried (TGI's batch forward metrics as counters): rates of
    /// these give the mean pass time, the mean batch width and how busy the engine thread is with the model.</summary>
    public const string DecoderPasses = "xgenmm_decoder_passes_total";
    public const string DecoderPassSeconds = "xgenmm_decoder_pass_seconds_total";
    public const string DecoderPassRows = "xgenmm_decoder_pass_rows_total";
    public const string DecoderPassPrefillTokens = "xgenmm_decoder_pass_prefill_tokens_total";
    /// <summary>Steps run while a light tenant was protected from a heavy one, and the row limit summed over them.</summary>
    public const string DecoderProtectedSteps = "xgenmm_decoder_protected_steps_total";
    public const string DecoderProtectedRowLimit = "xgenmm_decoder_protected_row_limit_total";
    public const string DecoderHeldRows = "xgenmm_decoder_held_rows_total";

    // Vision silos
    public const string VisionImagesPending = "xgenmm_vision_num_images_pending";
    public const string MmCacheQueries = "xgenmm_mm_cache_queries_total";
    public const string MmCacheHits = "xgenmm_mm_cache_hits_total";

    // Gateway (labels: model_name on request-level metrics, protocol on histograms, tenant where it applies)
    public const string TimeToFirstToken = "xgenmm_time_to_first_token_seconds";
    public const string InterTokenLatency = "xgenmm_inter_token_latency_seconds";
    public const string EndToEndLatency = "xgenmm_e2e_request_latency_seconds";
    public const string QueueTime = "xgenmm_request_queue_time_seconds";
    public const string PrefillTime = "xgenmm_request_prefill_time_seconds";
    public const string DecodeTime = "xgenmm_request_decode_time_seconds";
    public const string RequestPromptTokens = "xgenmm_request_prompt_tokens";
    public const string RequestGenerationTokens = "xgenmm_request_generation_tokens";
    public const string PrefixCacheQueries = "xgenmm_prefix_cache_queries_total";
    public const string PrefixCacheHits = "xgenmm_prefix_cache_hits_total";
    public const string PromptTokens = "xgenmm_prompt_tokens_total";
    public const string GenerationTokens = "xgenmm_generation_tokens_total";
    public const string ImageTokens = "xgenmm_image_tokens_total";
    public const string RequestSuccess = "xgenmm_request_success_total";
    public const string RequestsRejected = "xgenmm_requests_rejected_total";
    public const string ActiveStreams = "xgenmm_gateway_active_streams";
    public const string SignalRConnections = "xgenmm_gateway_signalr_connections";
}
