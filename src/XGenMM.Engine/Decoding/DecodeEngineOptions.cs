namespace XGenMM.Engine.Decoding;

/// <summary>Limits and scheduling knobs of one decode engine (one device). Bound from <c>Engine:Decode</c>.</summary>
public sealed class DecodeEngineOptions
{
    /// <summary>Bytes of KV cache to preallocate; the slot count is this divided by one slot's size.</summary>
    public long KvCacheBytes { get; set; } = 512L * 1024 * 1024;
    /// <summary>Upper bound on concurrent sequences regardless of memory.</summary>
    public int MaxSlots { get; set; } = 64;
    /// <summary>Positions per slot (prompt + generated); 0 = the model's context length.</summary>
    public int MaxSequenceLength { get; set; }
    /// <summary>Prompt positions processed per engine step, i.e. at most this many between two decode steps of the
    /// running sequences (chunked prefill keeps decoding streams moving while long prompts come in).</summary>
    public int PrefillChunkTokens { get; set; } = 512;
    /// <summary>Waiting requests beyond which new ones are rejected as overloaded.</summary>
    public int MaxWaitingRequests { get; set; } = 256;
    /// <summary>Waiting prompt positions beyond which new requests are rejected as overloaded.</summary>
    public long MaxWaitingTokens { get; set; } = 1_000_000;
    /// <summary>A request not admitted within this time is rejected as expired.</summary>
    public TimeSpan QueueTimeToLive { get; set; } = TimeSpan.FromSeconds(60);
    /// <summary>Finished sequences whose KV stays parked for prefix reuse (evicted LRU when a slot is needed).</summary>
    public bool PrefixReuse { get; set; } = true;
    /// <summary>Shortest common prefix worth reusing.</summary>
    public int MinPrefixReuseTokens { get; set; } = 16;
    /// <summary>Weights of tenants (default 1) in fair admission order and in each tenant's share of the slots, which
    /// bounds what it holds while another tenant waits.</summary>
    public Dictionary<string, double> TenantWeights { get; set; } = [];
    /// <summary>Name used in logs and metrics (e.g. cpu, cuda:0).</summary>
    public string Name { get; set; } = "decoder";

    public void Validate()
    {
        if (KvCacheBytes <= 0) throw new ArgumentOutOfRangeException(nameof(KvCacheBytes), KvCacheBytes, "must be positive.");
        if (MaxSlots < 1) throw new ArgumentOutOfRangeException(nameof(MaxSlots), MaxSlots, "must be at least 1.");
        if (MaxSequenceLength < 0) throw new ArgumentOutOfRangeException(nameof(MaxSequenceLength), MaxSequenceLength, "must be 0 (model context) or positive.");
        if (PrefillChunkTokens < 1) throw new ArgumentOutOfRangeException(nameof(PrefillChunkTokens), PrefillChunkTokens, "must be at least 1.");
        if (MaxWaitingRequests < 0) throw new ArgumentOutOfRangeException(nameof(MaxWaitingRequests), MaxWaitingRequests, "must not be negative.");
        if (MaxWaitingTokens < 0) throw new ArgumentOutOfRangeException(nameof(MaxWaitingTokens), MaxWaitingTokens, "must not be negative.");
        if (QueueTimeToLive <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(QueueTimeToLive), QueueTimeToLive, "must be positive.");
        foreach (var (tenant, weight) in TenantWeights)
            if (!(weight > 0)) throw new ArgumentOutOfRangeException(nameof(TenantWeights), weight, $"weight of tenant '{tenant}' must be positive.");
    }
}
