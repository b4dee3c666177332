using System.Text;

namespace XGenMM.Model.Tokenization;

/// <summary>One chat message: role is system, user or assistant.</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>The Phi-3 chat template of xGen-MM's tokenizer_config.json.</summary>
public static class ChatTemplate
{
    public const string DefaultSystemPrompt =
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

    /// <summary>
    /// Renders <c>&lt;|role|&gt;\n{content}&lt;|end|&gt;\n</c> per message, then <c>&lt;|assistant|&gt;\n</c> when a
    /// generation prompt is asked for, else the eos token. No BOS.
    /// </summary>
    public static string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, bool addDefaultSystemPrompt = false)
    {
        var sb = new StringBuilder();
        if (addDefaultSystemPrompt && (messages.Count == 0 || messages[0].Role != "system"))
            sb.Append("<|system|>\n").Append(DefaultSystemPrompt).Append("<|end|>\n");
        foreach (var m in messages)
        {
            string tag = m.Role switch
            {
                "system" => "<|system|>",
                "user" => "<|user|>",
                "assistant" => "<|assistant|>",
                _ => throw new ArgumentException($"Unknown chat role '{m.Role}' (expected system, user or assistant).", nameof(messages)),
            };
            sb.Append(tag).Append('\n').Append(m.Content).Append("<|end|>\n");
        }
        sb.Append(addGenerationPrompt ? "<|assistant|>\n" : "<|endoftext|>");
        return sb.ToString();
    }
}
