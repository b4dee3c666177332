using XGenMM.Cluster.Abstractions;

namespace XGenMM.Gateway.Chat;

/// <summary>
/// OpenAI's usage figures from the wire's <see cref="UsageReport"/>, computed where a protocol writes them: the report
/// keeps text prompt tokens and image tokens apart, OpenAI counts image tokens as prompt tokens.
/// </summary>
public static class UsageFigures
{
    /// <summary>OpenAI's <c>prompt_tokens</c>: text and image positions of the prompt.</summary>
    public static int OpenAiPromptTokens(this UsageReport usage) => usage.PromptTokens + usage.ImageTokens;

    /// <summary>OpenAI's <c>total_tokens</c>.</summary>
    public static int TotalTokens(this UsageReport usage) => usage.OpenAiPromptTokens() + usage.CompletionTokens;
}
