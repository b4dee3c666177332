using XGenMM.Gateway.Chat;

namespace XGenMM.Gateway.OpenAi;

/// <summary>An image_url content part before its bytes are fetched: a data: URL's bytes, or a remote URL.</summary>
public sealed record ImageSource(byte[]? Data, Uri? Remote, string Param);

/// <summary>A <c>POST /v1/chat/completions</c> body after type and range checks.</summary>
public sealed record ChatCompletionRequest
{
    public required string Model { get; init; }
    public required IReadOnlyList<TurnMessage> Messages { get; init; }
    public required IReadOnlyList<ImageSource> Images { get; init; }
    public bool Stream { get; init; }
    public bool IncludeUsage { get; init; }
    public int? MaxTokens { get; init; }
    public float Temperature { get; init; } = 1f;
    public float TopP { get; init; } = 1f;
    public ulong? Seed { get; init; }
    /// <summary>OpenAI's <c>n</c>: how many choices to generate for the prompt.</summary>
    public int Choices { get; init; } = 1;
    /// <summary>null unless <c>logprobs</c> is true; then <c>top_logprobs</c> (0..20, default 0).</summary>
    public int? TopLogprobs { get; init; }
    public IReadOnlyList<string> Stop { get; init; } = [];
    public string? User { get; init; }
    public bool IgnoreEos { get; init; }
}
