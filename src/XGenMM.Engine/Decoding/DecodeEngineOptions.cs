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
    /// <summary>How a step runs its prefill chunks and decode rows (see <see cref="StepPolicy"/>).</summary>
    public StepPolicy StepPolicy { get; set; } = StepPolicy.Mixed;
    /// <summary>With <see cref="StepPolicy.Mixed"/>: tokens of one forward pass, decode rows and prompt positions
    /// together (vLLM's max_num_batched_tokens). A step's time grows with its tokens, and every running stream waits
    /// for the whole step, so this bounds the inter-token latency a new prompt adds. Decode rows are planned first;
    /// prompts get what is left, at least a quarter of it, so admission never stalls behind many running streams.</summary>
    public int MaxTokensPerStep { get; set; } = 64;
    /// <summary>With <see cref="StepPolicy.Mixed"/>: a step that carries prompt positions beside decode rows may take
    /// at most (1 + this) times the decode-only pass at those rows, by the fitted pass costs (Sarathi-Serve's
    /// time-bounded chunk); a quarter of <see cref="MaxTokensPerStep"/> is prefilled regardless. Bounds the
    /// inter-token latency a new prompt adds to running streams whatever the device's cost of a row and of a
    /// position; on a device where positions are cheap next to a pass, MaxTokensPerStep is the bound. 0 turns it off.</summary>
    public double MixedStepSlowdown { get; set; } = 0.8;
    /// <summary>With <see cref="StepPolicy.Mixed"/> and a decoder packed for the CPU kernels (Model:WeightFormat other
    /// than torch): run each step in <see cref="XGenMM.Model.Language.CpuDecoderStep"/> (norms, RoPE, attention and
    /// gating in C# between the packed products, padding rows skipped) instead of through libtorch's operators.
    /// Off only to compare the two.</summary>
    public bool CpuStep { get; set; } = true;
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
    /// <summary>Isolation of a light tenant from a heavy one on a shared decoder: every running row lengthens each
    /// decode step for all tenants, so while a tenant that wants less than its weighted share of the slots is active
    /// beside one that wants more, the tenants over their share may lengthen the light tenants' steps by this fraction
    /// on average. Two parts: they start new rows only while the fitted pass time at the rows then running stays
    /// within (1 + this) of the pass at the light tenants' rows alone (their requests wait in the queue meanwhile; the
    /// router refuses them once that wait is over its TTFT target); and a time credit, earned in each step by this
    /// fraction of the light tenants' part of it and spent by what the heavy tenants add, holds their rows and prompts
    /// for the step while it is spent (both by the fitted pass costs). Light tenants are never held back by it. The
    /// light tenant's throughput beside a burst is then about 1 / (1 + this) of its own, less what the heavy tenant's
    /// traffic costs outside the engine. It trades the heavy tenant's throughput for the light one's: where a light
    /// tenant keeps the engine busy alone (2 streams did on the 2-core CPU), the heavy tenant runs only in its gaps and
    /// in this fraction of its steps. The default 0.01 kept a 2-stream tenant within 20% of its throughput alone beside
    /// a 4x burst on the 2-core CPU (0.1 did not: the fitted line prices a row there at about half its cost, and the
    /// burst's HTTP traffic slows the engine's threads too); where rows are cheap (a GPU) raise it to let the heavy
    /// tenant batch beside the light one. 0 turns it off.</summary>
    public double SharedStepSlowdown { get; set; } = 0.01;
    /// <summary>How long a tenant counts as active after its last request here, with the most rows it wanted in that
    /// time (see <see cref="SharedStepSlowdown"/>): a closed loop's next request follows the last one's end by a
    /// round trip, and the heavy tenant must not take the slots in that gap.</summary>
    public TimeSpan ShareLinger { get; set; } = TimeSpan.FromSeconds(1);
    /// <summary>Name used in logs and metrics (e.g. cpu, cuda:0).</summary>
    public string Name { get; set; } = "decoder";

    /// <summary>A copy for one engine of several (one per device) that share these settings: every setting, the
    /// tenant weights in a dictionary of its own.</summary>
    public DecodeEngineOptions Copy()
    {
        var copy = (DecodeEngineOptions)MemberwiseClone();
        copy.TenantWeights = new Dictionary<string, double>(TenantWeights, TenantWeights.Comparer);
        return copy;
    }

    public void Validate()
    {
        if (KvCacheBytes <= 0) throw new ArgumentOutOfRangeException(nameof(KvCacheBytes), KvCacheBytes, "must be positive.");
        if (MaxSlots < 1) throw new ArgumentOutOfRangeException(nameof(MaxSlots), MaxSlots, "must be at least 1.");
        if (MaxSequenceLength < 0) throw new ArgumentOutOfRangeException(nameof(MaxSequenceLength), MaxSequenceLength, "must be 0 (model context) or positive.");
        if (PrefillChunkTokens < 1) throw new ArgumentOutOfRangeException(nameof(PrefillChunkTokens), PrefillChunkTokens, "must be at least 1.");
        if (MaxTokensPerStep < 4) throw new ArgumentOutOfRangeException(nameof(MaxTokensPerStep), MaxTokensPerStep, "must be at least 4.");
        if (!Enum.IsDefined(StepPolicy)) throw new ArgumentOutOfRangeException(nameof(StepPolicy), StepPolicy, "must be Mixed or Separate.");
        if (MaxWaitingRequests < 0) throw new ArgumentOutOfRangeException(nameof(MaxWaitingRequests), MaxWaitingRequests, "must not be negative.");
        if (MaxWaitingTokens < 0) throw new ArgumentOutOfRangeException(nameof(MaxWaitingTokens), MaxWaitingTokens, "must not be negative.");
        if (QueueTimeToLive <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(QueueTimeToLive), QueueTimeToLive, "must be positive.");
        if (!(MixedStepSlowdown >= 0)) throw new ArgumentOutOfRangeException(nameof(MixedStepSlowdown), MixedStepSlowdown, "must not be negative.");
        if (!(SharedStepSlowdown >= 0)) throw new ArgumentOutOfRangeException(nameof(SharedStepSlowdown), SharedStepSlowdown, "must not be negative.");
        if (ShareLinger < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(ShareLinger), ShareLinger, "must not be negative.");
        foreach (var (tenant, weight) in TenantWeights)
            if (!(weight > 0)) throw new ArgumentOutOfRangeException(nameof(TenantWeights), weight, $"weight of tenant '{tenant}' must be positive.");
    }
}

/// <summary>How an engine step carries out its prefill chunks and decode rows.</summary>
public enum StepPolicy
{
    /// <summary>One forward pass per step over the decode rows of the running sequences and the prompt chunks of new
    /// ones, within <see cref="DecodeEngineOptions.MaxTokensPerStep"/> (chunked prefill as vLLM does it): a new prompt
    /// costs running streams one somewhat longer step, not a pause for whole prompts.</summary>
    Mixed,
    /// <summary>Each prefill chunk in a forward pass of its own, then one decode pass (the policy before mixed steps;
    /// kept as the benchmark's baseline). Running streams wait for up to <see cref="DecodeEngineOptions.PrefillChunkTokens"/>
    /// prompt positions between two tokens.</summary>
    Separate,
}
