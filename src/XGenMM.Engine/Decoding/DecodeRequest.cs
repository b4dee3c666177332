using XGenMM.Engine.Vision;
using XGenMM.Model.Generation;
using XGenMM.Model.Tokenization;

namespace XGenMM.Engine.Decoding;

/// <summary>Priority class of a request within its tenant: higher classes are admitted first.</summary>
public enum RequestPriority
{
    Low = 0,
    Normal = 1,
    High = 2,
}

/// <summary>
/// One generation: the prompt's token ids (chat template already applied, one <c>&lt;image&gt;</c> id per image),
/// the vision tokens of its images in placeholder order, sampling and stop rules, and who asked.
/// </summary>
public sealed record DecodeRequest
{
    public required string RequestId { get; init; }
    public required IReadOnlyList<int> PromptIds { get; init; }
    public IReadOnlyList<VisionTokens> Images { get; init; } = [];
    public int MaxNewTokens { get; init; } = 256;
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;
    public IReadOnlyList<int> StopTokenIds { get; init; } = [SpecialTokens.End, SpecialTokens.EndOfText];
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    public string Tenant { get; init; } = "default";
    public RequestPriority Priority { get; init; } = RequestPriority.Normal;
    /// <summary>Tokens already produced by an earlier, interrupted attempt of this generation (recovery replay):
    /// they are appended to the prompt, count towards <see cref="MaxNewTokens"/>, and are not streamed again.</summary>
    public IReadOnlyList<int> ResumeTokenIds { get; init; } = [];
    /// <summary>Log probabilities on each token event: null = none; 0..<see cref="MaxTopLogprobs"/> = the sampled
    /// token's log probability and that many most likely alternatives (see <see cref="DecodeEvent.Logprob"/>).</summary>
    public int? TopLogprobs { get; init; }
    /// <summary>The router refused this tenant for its share lately: the scheduler does not take it for a light tenant
    /// (<see cref="DecodeEngineOptions.SharedStepSlowdown"/>) for <see cref="DecodeEngineOptions.ShareLinger"/> after.</summary>
    public bool TenantPressing { get; init; }

    public const int MaxTopLogprobs = 20;
}

/// <summary>Why a generation ended.</summary>
public enum DecodeFinishReason
{
    /// <summary>A stop token or stop string.</summary>
    Stop,
    /// <summary>max new tokens reached.</summary>
    Length,
    /// <summary>The consumer cancelled.</summary>
    Cancelled,
}

/// <summary>Token counts of a finished request (OpenAI usage plus what the engine reused).</summary>
public readonly record struct DecodeUsage(int PromptTokens, int ImageTokens, int CompletionTokens, int CachedTokens)
{
    /// <summary>Positions the prompt takes (text tokens other than placeholders plus vision tokens).</summary>
    public int PromptPositions => PromptTokens + ImageTokens;
}

/// <summary>Wall-clock intervals of a finished request, in seconds.</summary>
public readonly record struct DecodeTimings(double QueueSeconds, double TimeToFirstTokenSeconds, double EndToEndSeconds, double PrefillSeconds);

/// <summary>
/// An event of a request's stream: a token (with the text it completes, which can be empty while a multi-byte
/// character or a possible stop string is pending), then exactly one final event with the finish reason.
/// </summary>
public sealed record DecodeEvent
{
    /// <summary>-1 on the final event.</summary>
    public int TokenId { get; init; } = -1;
    public string Text { get; init; } = "";
    /// <summary>0-based index of the token in the completion (resumed tokens included).</summary>
    public int Index { get; init; }
    public DecodeFinishReason? Finish { get; init; }
    public DecodeUsage? Usage { get; init; }
    public DecodeTimings? Timings { get; init; }
    /// <summary>Only when the request asked (<see cref="DecodeRequest.TopLogprobs"/>): the natural log of the sampled
    /// token's probability under the distribution it was sampled from, the log-softmax of the logits after the
    /// repetition penalty and divided by the temperature (1 for greedy), before top-k and top-p cut it.</summary>
    public double? Logprob { get; init; }
    /// <summary>The most likely tokens of that same distribution, most likely first (ties: lower id first).</summary>
    public IReadOnlyList<TokenLogprob>? TopLogprobs { get; init; }

    public bool IsFinal => Finish is not null;
}
