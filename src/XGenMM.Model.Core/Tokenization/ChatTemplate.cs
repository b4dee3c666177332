using System.Text;
using System.Text.Json;

namespace XGenMM.Model.Tokenization;

/// <summary>One chat message: role is system, user or assistant.</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>
/// A model's chat template: the checkpoint's own <c>chat_template</c> from tokenizer_config.json when it has one
/// (rendered by <see cref="JinjaTemplate"/>), else xGen-MM's Phi-3 template written out in code (<see cref="Render"/>).
/// </summary>
public sealed class ChatTemplate
{
    public const string DefaultSystemPrompt =
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

    private const string Phi3Eos = "<|endoftext|>";

    private readonly JinjaTemplate? _jinja;
    private readonly string _bos, _eos;

    private ChatTemplate(JinjaTemplate? jinja, string source, string bos, string eos)
    {
        _jinja = jinja;
        Source = source;
        _bos = bos;
        _eos = eos;
    }

    /// <summary>The hard-coded Phi-3 template of xGen-MM (for checkpoints without a chat_template).</summary>
    public static ChatTemplate Phi3 { get; } = new(null, "", "<s>", Phi3Eos);

    /// <summary>Whether the checkpoint's own template is used (false: the hard-coded Phi-3 one).</summary>
    public bool FromCheckpoint => _jinja is not null;

    /// <summary>The checkpoint's template text; empty for <see cref="Phi3"/>.</summary>
    public string Source { get; }

    /// <summary>
    /// The template of a checkpoint directory: tokenizer_config.json's <c>chat_template</c> (a string, or the entry
    /// named "default" of a list of named templates), compiled now so that unsupported syntax fails at load; the
    /// hard-coded Phi-3 template when the file or the field is absent.
    /// </summary>
    public static ChatTemplate FromDirectory(string checkpointDir)
    {
        string path = Path.Combine(checkpointDir, "tokenizer_config.json");
        if (!File.Exists(path)) return Phi3;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            string? source = null;
            if (root.TryGetProperty("chat_template", out var template))
            {
                source = template.ValueKind switch
                {
                    JsonValueKind.String => template.GetString(),
                    JsonValueKind.Array => template.EnumerateArray()
                        .Where(t => t.TryGetProperty("name", out var n) && n.GetString() == "default")
                        .Select(t => t.GetProperty("template").GetString()).FirstOrDefault(),
                    _ => null,
                };
            }
            if (string.IsNullOrEmpty(source)) return Phi3;
            return FromSource(source, Token(root, "bos_token") ?? "<s>", Token(root, "eos_token") ?? Phi3Eos);
        }
        catch (JsonException e)
        {
            throw new TokenizerException($"'{path}' is not valid JSON: {e.Message}", e);
        }
        catch (ChatTemplateException e)
        {
            throw new ChatTemplateException($"The chat_template of '{path}' cannot be used: {e.Message}");
        }
    }

    /// <summary>Compiles a Jinja chat template; throws <see cref="ChatTemplateException"/> for syntax outside the supported subset.</summary>
    public static ChatTemplate FromSource(string source, string bosToken, string eosToken) =>
        new(JinjaTemplate.Compile(source), source, bosToken, eosToken);

    /// <summary>A special token of tokenizer_config.json: a string, or an AddedToken object with its content.</summary>
    private static string? Token(JsonElement root, string name) =>
        !root.TryGetProperty(name, out var t) ? null
            : t.ValueKind == JsonValueKind.String ? t.GetString()
            : t.ValueKind == JsonValueKind.Object && t.TryGetProperty("content", out var c) ? c.GetString()
            : null;

    /// <summary>
    /// Renders the conversation with this template; with <paramref name="addDefaultSystemPrompt"/>, xGen-MM's system
    /// prompt is put first when the conversation has none (it is a message, so the template renders it).
    /// </summary>
    public string Apply(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, bool addDefaultSystemPrompt = false)
    {
        if (_jinja is null) return Render(messages, addGenerationPrompt, addDefaultSystemPrompt);
        IEnumerable<ChatMessage> all = messages;
        if (addDefaultSystemPrompt && (messages.Count == 0 || messages[0].Role != "system"))
            all = messages.Prepend(new ChatMessage("system", DefaultSystemPrompt));
        var variables = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["messages"] = all.Select(m => (object?)new Dictionary<string, object?>(StringComparer.Ordinal) { ["role"] = m.Role, ["content"] = m.Content }).ToList(),
            ["add_generation_prompt"] = addGenerationPrompt,
            ["bos_token"] = _bos,
            ["eos_token"] = _eos,
        };
        return _jinja.Render(variables);
    }

    /// <summary>
    /// The hard-coded Phi-3 template: <c>&lt;|role|&gt;\n{content}&lt;|end|&gt;\n</c> per message, then
    /// <c>&lt;|assistant|&gt;\n</c> when a generation prompt is asked for, else the eos token. No BOS.
    /// </summary>
    public static string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, bool addDefaultSystemPrompt = false)
    {
        ArgumentNullException.ThrowIfNull(messages);
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
        sb.Append(addGenerationPrompt ? "<|assistant|>\n" : Phi3Eos);
        return sb.ToString();
    }
}
