using XGenMM.Cluster.Abstractions;

namespace XGenMM.Gateway.Chat;

/// <summary>A piece of a message: text, or the index of an image in <see cref="ChatTurn.Images"/>.</summary>
public sealed record TurnPart(string? Text, int? Image)
{
    public static TurnPart OfText(string text) => new(text, null);
    public static TurnPart OfImage(int index) => new(null, index);
}

public sealed record TurnMessage(string Role, IReadOnlyList<TurnPart> Parts);

/// <summary>
/// One chat turn as both front doors (OpenAI HTTP and the SignalR hub) hand it to <see cref="ChatService"/>: the whole
/// conversation so far, the images' bytes, and the sampling settings, already checked for type and range.
/// </summary>
public sealed record ChatTurn
{
    public required string Tenant { get; init; }
    public string? ConversationId { get; init; }
    public required IReadOnlyList<TurnMessage> Messages { get; init; }
    public IReadOnlyList<byte[]> Images { get; init; } = [];
    public required int MaxTokens { get; init; }
    public float Temperature { get; init; } = 1f;
    public float TopP { get; init; } = 1f;
    public ulong? Seed { get; init; }
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>Generate exactly max_tokens, not stopping at the end-of-turn token (vLLM's ignore_eos, for benchmarks).</summary>
    public bool IgnoreEos { get; init; }
    /// <summary>OpenAI's logprobs/top_logprobs: null = none; 0..20 = the sampled token's log probability and that many
    /// alternatives on every delta.</summary>
    public int? TopLogprobs { get; init; }
    /// <summary>Where the request came in: "http" or "signalr" (metrics label).</summary>
    public string Protocol { get; init; } = "http";
}

/// <summary>One step of a streamed answer: text to append, and on the last delta the finish reason, the usage (the wire's
/// <see cref="UsageReport"/>: text prompt and image tokens apart; <see cref="UsageFigures"/> gives OpenAI's sums) and
/// the timings (time to first token and end to end as the gateway saw them, queue and prefill as the decoder did).</summary>
public sealed record ChatDelta(string Text, string? FinishReason = null, UsageReport? Usage = null, TimingReport? Timings = null)
{
    /// <summary>When the turn asked for log probabilities: the sampled token's (token, logprob) and its alternatives.</summary>
    public TokenLogprobs? Logprobs { get; init; }
}

/// <summary>One generated token's log probability (natural log) and the most likely alternatives at its position.</summary>
public sealed record TokenLogprobs(string Token, double Logprob, IReadOnlyList<(string Token, double Logprob)> Top);
