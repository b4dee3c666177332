namespace XGenMM.Gateway.Contracts;

// The hub's wire contract. Property names are the protocol: camelCase in JSON, and the keys of MessagePack's
// contractless maps. Settable properties, so that every SignalR protocol can read them back.

/// <summary>A message of a hub turn. Images are bytes: base64 strings in the JSON protocol, binary in MessagePack.</summary>
public sealed class HubMessage
{
    public string? Role { get; set; }
    public string? Content { get; set; }
    public byte[][]? Images { get; set; }
}

/// <summary>What a client sends to the hub's <c>Chat</c> stream: the conversation so far and the sampling settings.</summary>
public sealed class HubTurn
{
    public string? ConversationId { get; set; }
    public HubMessage[]? Messages { get; set; }
    public int? MaxTokens { get; set; }
    public float? Temperature { get; set; }
    public float? TopP { get; set; }
    public long? Seed { get; set; }
    public string[]? Stop { get; set; }
    /// <summary>Generate exactly maxTokens (benchmarks).</summary>
    public bool IgnoreEos { get; set; }
}

/// <summary>Usage of a finished turn, in OpenAI's terms: prompt tokens include the image tokens.</summary>
public sealed class HubUsage
{
    public int PromptTokens { get; set; }
    public int ImageTokens { get; set; }
    public int CompletionTokens { get; set; }
    public int CachedTokens { get; set; }
    public int TotalTokens { get; set; }
}

/// <summary>Seconds from the gateway's point of view, plus the decoder's queue time.</summary>
public sealed class HubTimings
{
    public double QueueSeconds { get; set; }
    public double TimeToFirstTokenSeconds { get; set; }
    public double EndToEndSeconds { get; set; }
}

/// <summary>One server-to-client stream item: text to append; the last one has the finish reason, usage and timings.</summary>
public sealed class HubDelta
{
    public string Text { get; set; } = "";
    public string? FinishReason { get; set; }
    public HubUsage? Usage { get; set; }
    public HubTimings? Timings { get; set; }
}
