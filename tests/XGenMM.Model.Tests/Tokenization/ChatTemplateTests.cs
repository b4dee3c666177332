using System.Text.Json;
using XGenMM.Model.Tokenization;

namespace XGenMM.Model.Tests.Tokenization;

/// <summary>
/// The checkpoint's own chat_template, rendered by the Jinja subset interpreter: byte for byte the hard-coded Phi-3
/// rendering for the template xGen-MM ships, the golden renderings of the real tokenizer_config.json, the other
/// templates of the Phi-3 family, and unsupported syntax refused at load.
/// </summary>
public sealed class ChatTemplateTests
{
    private static string RealCheckpoint => Fixtures.Path("fixtures", "xgenmm-base-r-v1.5");

    public static TheoryData<string> Checkpoints() => new(
        Fixtures.Path("fixtures", "xgenmm-base-r-v1.5"),
        Fixtures.GoldenTinyAnyRes,
        Path.Combine(RepositoryRoot(), "models", "xgenmm-nano"));

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "XGenMM.Cluster.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("The repository root was not found.");
    }

    /// <summary>Conversations that exercise every branch of the shipped template and the default system prompt.</summary>
    private static IEnumerable<ChatMessage[]> Conversations() =>
    [
        [new("user", "Hi")],
        [new("system", "Be brief."), new("user", "<image>\nWhat is shown?")],
        [new("user", "Hi"), new("assistant", "Hello! How can I help?"), new("user", "Count the shapes.")],
        [new("user", "")],
        [new("user", "ünïcödé ✓ 漢字 \"quotes\" 'single' {{ not a tag }} {% neither %}"), new("assistant", "  spaced  \n\n")],
        [new("system", "a"), new("system", "b"), new("assistant", "first"), new("user", "<image>\n<image>\ntwo")],
        [],
    ];

    [Theory]
    [MemberData(nameof(Checkpoints))]
    public void The_shipped_template_renders_byte_for_byte_as_the_hard_coded_one(string checkpoint)
    {
        var template = ChatTemplate.FromDirectory(checkpoint);
        Assert.True(template.FromCheckpoint, "the checkpoint's chat_template is used");
        foreach (var conversation in Conversations())
            foreach (bool generation in new[] { true, false })
                foreach (bool system in new[] { true, false })
                    Assert.Equal(ChatTemplate.Render(conversation, generation, system), template.Apply(conversation, generation, system));
    }

    [Fact]
    public void The_golden_chat_cases_render_as_the_reference_jinja_did()
    {
        var template = ChatTemplate.FromDirectory(RealCheckpoint);
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.Path("fixtures", "tokenizer", "golden.json")));
        int cases = 0;
        foreach (var c in doc.RootElement.EnumerateArray().Where(c => c.TryGetProperty("messages", out _)))
        {
            var messages = c.GetProperty("messages").EnumerateArray()
                .Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToArray();
            bool generation = c.TryGetProperty("add_generation_prompt", out var g) && g.GetBoolean();
            Assert.Equal(c.GetProperty("text").GetString(), template.Apply(messages, generation));
            cases++;
        }
        Assert.Equal(3, cases);
    }

    [Fact]
    public void Without_a_chat_template_the_hard_coded_phi3_template_is_used()
    {
        string dir = Directory.CreateTempSubdirectory("xgenmm-template-").FullName;
        try
        {
            Assert.False(ChatTemplate.FromDirectory(dir).FromCheckpoint);
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"eos_token": "<|endoftext|>"}""");
            var template = ChatTemplate.FromDirectory(dir);
            Assert.Same(ChatTemplate.Phi3, template);
            Assert.Equal("<|user|>\nHi<|end|>\n<|assistant|>\n", template.Apply([new("user", "Hi")]));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void A_checkpoint_template_is_rendered_with_its_own_bos_and_eos_tokens()
    {
        string dir = Directory.CreateTempSubdirectory("xgenmm-template-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """
                {"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "<|end|>",
                 "chat_template": [{"name": "tool_use", "template": "unused"}, {"name": "default", "template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{{ eos_token }}"}]}
                """);
            Assert.Equal("<s>[user]Hi<|end|>", ChatTemplate.FromDirectory(dir).Apply([new("user", "Hi")], addGenerationPrompt: false));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    // Phi-3-mini-4k-instruct's earlier template: the BOS first, the generation prompt after every user turn.
    private const string Phi3Early =
        "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}";

    // Phi-3-medium / Phi-3.5 style: system allowed, eos at the end only without a generation prompt.
    private const string Phi35 =
        "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";

    // A Llama-2 style template: system folded into the first turn, strict alternation, loop.index0, slicing, trim,
    // whitespace control and newlines that trim_blocks / lstrip_blocks remove, as Hugging Face renders them.
    private const string Alternating = """
        {% if messages[0]['role'] == 'system' %}
            {% set loop_messages = messages[1:] %}
            {% set system_message = '<<SYS>>\n' ~ messages[0]['content'] | trim ~ '\n<</SYS>>\n\n' %}
        {% else %}
            {% set loop_messages = messages %}
            {% set system_message = '' %}
        {% endif %}
        {% for message in loop_messages %}
            {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
                {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
            {% endif %}
            {% if loop.first %}{% set content = system_message + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}
            {% if message['role'] == 'user' %}
                {{- bos_token + '[INST] ' + content | trim + ' [/INST]' -}}
            {% elif message['role'] == 'assistant' %}
                {{- ' ' + content.strip() + ' ' + eos_token -}}
            {% endif %}
            {% if loop.last and not add_generation_prompt %}{{ '|' }}{% endif %}
        {% endfor %}
        """;

    [Fact]
    public void The_templates_of_the_phi3_family_render_as_jinja_does()
    {
        ChatMessage[] chat = [new("system", "Be brief."), new("user", "Hi"), new("assistant", "Hello."), new("user", "Bye")];
        Assert.Equal("<s><|user|>\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n",
            ChatTemplate.FromSource(Phi3Early, "<s>", "<|endoftext|>").Apply(chat));
        Assert.Equal("<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n<|user|>\nBye<|end|>\n<|endoftext|>",
            ChatTemplate.FromSource(Phi35, "<s>", "<|endoftext|>").Apply(chat, addGenerationPrompt: false));
        Assert.Equal("<|user|>\nHi<|end|>\n<|assistant|>\n",
            ChatTemplate.FromSource(Phi35, "<s>", "<|endoftext|>").Apply([new("system", ""), new("user", "Hi")]));
    }

    [Fact]
    public void Set_slices_loop_variables_filters_and_whitespace_control_render_as_jinja_does()
    {
        var template = ChatTemplate.FromSource(Alternating, "<s>", "</s>");
        ChatMessage[] chat = [new("system", "  Be brief. "), new("user", "Hi "), new("assistant", " Hello. "), new("user", "Bye")];
        Assert.Equal("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Bye [/INST]", template.Apply(chat));
        Assert.Equal("<s>[INST] Hi [/INST]|", template.Apply([new("user", "Hi")], addGenerationPrompt: false));
    }

    [Fact]
    public void Raise_exception_refuses_the_conversation_at_render_time()
    {
        var template = ChatTemplate.FromSource(Alternating, "<s>", "</s>");
        var e = Assert.Throws<ChatTemplateException>(() => template.Apply([new("user", "Hi"), new("user", "again")]));
        Assert.Equal("Conversation roles must alternate user/assistant/user/assistant/...", e.Message);
    }

    [Theory]
    [InlineData("{% for m in messages %}{{ m.content }}", "without '{% endfor %}'")]
    [InlineData("{% if add_generation_prompt %}x", "without '{% endif %}'")]
    [InlineData("{% macro f() %}{% endmacro %}", "Unsupported tag '{% macro %}'")]
    [InlineData("{{ messages | tojson }}", "the filter 'tojson' is not supported")]
    [InlineData("{% for i in range(3) %}{% endfor %}", "the function 'range' is not supported")]
    [InlineData("{{ 'a'.format(1) }}", "the method '.format()' is not supported")]
    [InlineData("{% for k, v in x %}{% endfor %}", "unpacking")]
    [InlineData("{{ x is divisibleby 3 }}", "the test 'is divisibleby' is not supported")]
    [InlineData("{{ {'a': 1} }}", "expected a value")]
    [InlineData("{{ 'unterminated }}", "Unclosed")]
    [InlineData("{% endif %}", "no block to close")]
    public void Unsupported_syntax_is_refused_at_load_with_its_reason(string source, string reason)
    {
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.FromSource(source, "<s>", "</s>"));
        Assert.Contains(reason, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_checkpoint_with_an_unsupported_template_fails_to_load_naming_the_file()
    {
        string dir = Directory.CreateTempSubdirectory("xgenmm-template-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"chat_template": "{% for m in messages %}{{ m | tojson }}{% endfor %}"}""");
            var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.FromDirectory(dir));
            Assert.Contains("tokenizer_config.json", e.Message, StringComparison.Ordinal);
            Assert.Contains("tojson", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("{{ 7 // 2 }},{{ -7 % 3 }},{{ 2 * 3 + 1 }},{{ 'ab' * 2 }},{{ 1 / 2 }}", "3,2,7,abab,0.5")]
    [InlineData("{{ 'x' if add_generation_prompt else 'y' }}{{ 'a' in 'cat' }}{{ 'b' not in ['a'] }}", "xTrueTrue")]
    [InlineData("{{ missing is defined }}{{ missing }}{{ none is none }}{{ messages | length }}{{ messages[-1].role }}", "FalseTrue2assistant")]
    [InlineData("{{ messages[0]['content'] | upper }}{{ ('a' ~ 1) }}{{ [1, 2] | join('-') }}{{ 'x' 'y' }}", "HIa11-2xy")]
    [InlineData("{% for m in messages %}{{ loop.index }}/{{ loop.length }}{% if not loop.last %},{% endif %}{% else %}none{% endfor %}", "1/2,2/2")]
    [InlineData("{# a comment #}{%- if true -%}  kept  {%- endif -%}  ", "kept")]
    public void Expressions_evaluate_as_in_jinja(string source, string expected)
    {
        var template = ChatTemplate.FromSource(source, "<s>", "</s>");
        Assert.Equal(expected, template.Apply([new("user", "hi"), new("assistant", "yo")]));
    }
}
