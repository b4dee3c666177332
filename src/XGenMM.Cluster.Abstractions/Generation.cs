namespace XGenMM.Cluster.Abstractions;

/// <summary>Element type of vision token bytes (mirrors the engine's format).</summary>
#pragma warning disable CA1720 // the members name element types on purpose
public enum TokenFormat
{
    Float16 = 0,
    BFloat16 = 1,
    Float32 = 2,
}
#pragma warning restore CA1720

/// <summary>The resampled vision tokens of one image: raw elements plus shape; crosses silos once, vision to decoder.</summary>
[GenerateSerializer, Immutable, Alias("xgenmm.VisionTokensPayload")]
public sealed record VisionTokensPayload(byte[] Data, int Rows, int Dim, TokenFormat Format, string ContentKey);

/// <summary>Where an encoded image lives: the vision grain that holds its tokens, and how many positions it takes.</summary>
[GenerateSerializer, Immutable, Alias("xgenmm.ImageRef")]
public sealed record ImageRef(string VisionGrainKey, int Rows);

[GenerateSerializer, Immutable, Alias("xgenmm.SamplingParameters")]
public sealed record SamplingParameters(float Temperature = 0f, float TopP = 1f, int TopK = 0, float RepetitionPenalty = 1f, ulong? Seed = null);

/// <summary>One generation as the cluster runs it: prompt ids (chat template applied, one &lt;image&gt; per image),
/// the images by reference, limits and stop rules. <see cref="ResumeTokenIds"/> replays tokens an interrupted attempt
/// already streamed (recovery).</summary>
[GenerateSerializer, Immutable, Alias("xgenmm.GenerationRequest")]
public sealed record GenerationRequest
{
    [Id(0)] public required string RequestId { get; init; }
    [Id(1)] public required string Tenant { get; init; }
    [Id(2)] public string? ConversationId { get; init; }
    [Id(3)] public required int[] PromptIds { get; init; }
    [Id(4)] public ImageRef[] Images { get; init; } = [];
    [Id(5)] public int MaxNewTokens { get; init; } = 256;
    [Id(6)] public SamplingParameters Sampling { get; init; } = new();
    /// <summary>null = the model's defaults (&lt;|end|&gt;, &lt;|endoftext|&gt;).</summary>
    [Id(7)] public int[]? StopTokenIds { get; init; }
    [Id(8)] public string[] StopStrings { get; init; } = [];
    /// <summary>0 low, 1 normal, 2 high.</summary>
    [Id(9)] public int Priority { get; init; } = 1;
    [Id(10)] public int[] ResumeTokenIds { get; init; } = [];
    /// <summary>Log probabilities on each token: null = none; 0..20 = the sampled token's and that many alternatives.</summary>
    [Id(11)] public int? TopLogprobs { get; init; }
    /// <summary>The router refused this tenant for its share lately (it is pressing at the door): the decoder then
    /// never takes it for a light tenant to protect, however few of its requests got through.</summary>
    [Id(12)] public bool TenantPressing { get; init; }
}

/// <summary>One candidate token and its log probability (natural log, of the distribution sampled from).</summary>
[GenerateSerializer, Immutable, Alias("xgenmm.TokenLogprobReport")]
public sealed record TokenLogprobReport(int TokenId, string Text, double Logprob);

public enum FinishKind
{
    Stop = 0,
    Length = 1,
    Cancelled = 2,
}

[GenerateSerializer, Immutable, Alias("xgenmm.UsageReport")]
public sealed record UsageReport(int PromptTokens, int ImageTokens, int CompletionTokens, int CachedTokens);

[GenerateSerializer, Immutable, Alias("xgenmm.TimingReport")]
public sealed record TimingReport(double QueueSeconds, double TimeToFirstTokenSeconds, double EndToEndSeconds, double PrefillSeconds);

/// <summary>A streamed item: a token with its text delta, or (last) the finish reason with usage and timings.</summary>
[GenerateSerializer, Immutable, Alias("xgenmm.GenerationChunk")]
public sealed record GenerationChunk
{
    [Id(0)] public int TokenId { get; init; } = -1;
    [Id(1)] public string Text { get; init; } = "";
    [Id(2)] public int Index { get; init; }
    [Id(3)] public FinishKind? Finish { get; init; }
    [Id(4)] public UsageReport? Usage { get; init; }
    [Id(5)] public TimingReport? Timings { get; init; }
    /// <summary>The decoder that produced it (for affinity and diagnostics).</summary>
    [Id(6)] public string? Decoder { get; init; }
    /// <summary>When the request asked for log probabilities: the sampled token's.</summary>
    [Id(7)] public double? Logprob { get; init; }
    /// <summary>When the request asked for alternatives: the most likely tokens at this position, best first.</summary>
    [Id(8)] public TokenLogprobReport[]? TopLogprobs { get; init; }

    public bool IsFinal => Finish is not null;
}

/// <summary>Why the cluster refused or could not finish work; the gateway maps it to a status.</summary>
public enum RejectionKind
{
    Overloaded = 0,
    TooLong = 1,
    Expired = 2,
    ShuttingDown = 3,
    Invalid = 4,
    /// <summary>The image could not be decoded (corrupt, unsupported, too many pixels).</summary>
    BadImage = 5,
    /// <summary>The vision tokens of an image are gone (its silo died): encode again and retry.</summary>
    VisionTokensMissing = 6,
    /// <summary>No decoder is available in the cluster.</summary>
    NoDecoder = 7,
    /// <summary>A generation was interrupted and could not be resumed.</summary>
    Interrupted = 8,
    /// <summary>Refused at the door by admission control: every decoder's predicted time to first token is over the
    /// target; <see cref="ClusterRejectedException.RetryAfterSeconds"/> says when to come back.</summary>
    OverCapacity = 9,
    /// <summary>Refused at the door by tenant-share admission: the cluster is over its target and this tenant holds
    /// at least its weighted share of the decoder while another tenant is there; its excess is refused, never the
    /// other tenant's requests. <see cref="ClusterRejectedException.RetryAfterSeconds"/> says when to come back.</summary>
    TenantOverShare = 10,
    /// <summary>No active silo has the vision role (the only one died): the images cannot be encoded now.</summary>
    NoVisionSilo = 11,
    /// <summary>A call on the request path missed its deadline, or the membership store is unreachable: the cluster
    /// cannot serve the request now.</summary>
    Unavailable = 12,
}

/// <summary>A typed failure that crosses the cluster boundary intact.</summary>
[GenerateSerializer, Alias("xgenmm.ClusterRejectedException")]
public sealed class ClusterRejectedException : Exception
{
    public ClusterRejectedException() { }
    public ClusterRejectedException(string message) : base(message) { }
    public ClusterRejectedException(string message, Exception inner) : base(message, inner) { }
    public ClusterRejectedException(RejectionKind kind, string message) : base(message) => Kind = kind;

    [Id(0)] public RejectionKind Kind { get; init; }
    /// <summary>Completion text already streamed when an interrupted generation gave up.</summary>
    [Id(1)] public string? ProducedText { get; init; }
    [Id(2)] public int ProducedTokens { get; init; }
    /// <summary>When the caller may try again (0 = no advice).</summary>
    [Id(3)] public double RetryAfterSeconds { get; init; }
}
