using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using XGenMM.Gateway.Chat;
using XGenMM.Gateway.Hosting;
using XGenMM.Gateway.OpenAi;
using XGenMM.Gateway.Telemetry;
using XGenMM.Model.Tokenization;

namespace XGenMM.Gateway.Tests;

/// <summary>The gateway renders prompts with the checkpoint's own chat_template, compiled when the model is loaded.</summary>
[Collection(GatewayTests.Name)]
public sealed class ChatTemplateLoadingTests(GatewayFixture gateway)
{
    /// <summary>A copy of the fixture checkpoint's tokenizer and configuration files with another chat_template.</summary>
    private static string CheckpointWith(string chatTemplate)
    {
        string dir = Directory.CreateTempSubdirectory("xgenmm-served-").FullName;
        foreach (var file in new[] { "config.json", "tokenizer.json" })
            File.Copy(Path.Combine(Fixtures.GoldenTinyAnyRes, file), Path.Combine(dir, file));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.GoldenTinyAnyRes, "tokenizer_config.json")))!;
        config["chat_template"] = chatTemplate;
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), config.ToJsonString());
        return dir;
    }

    [Fact]
    public void The_served_model_uses_the_checkpoints_template()
    {
        var served = gateway.App.Services.GetRequiredService<ServedModel>();
        Assert.True(served.ChatTemplate.FromCheckpoint);
        Assert.Contains("add_generation_prompt", served.ChatTemplate.Source, StringComparison.Ordinal);
    }

    [Fact]
    public void A_template_the_server_cannot_render_stops_the_model_from_loading()
    {
        string dir = CheckpointWith("{% for m in messages %}{{ m | tojson }}{% endfor %}");
        try
        {
            var e = Assert.Throws<ChatTemplateException>(() => new ServedModel(dir, ""));
            Assert.Contains("tojson", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void A_prompt_is_rendered_by_the_checkpoints_template_and_its_refusals_are_400()
    {
        string dir = CheckpointWith(
            "{% for m in messages %}{% if m.role == 'assistant' and loop.index0 == 1 %}{{ raise_exception('The assistant must not speak first.') }}{% endif %}" +
            "{{ '<|' + m.role + '|>\\n' + m.content | trim + '<|end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}");
        try
        {
            var model = new ServedModel(dir, "custom");
            var service = new ChatService(null!, null!, model, Options.Create(new RequestLimits()),
                Options.Create(new XGenMM.Cluster.Client.ClusterChatOptions()), new MembershipStoreHealth(), new GatewayMetrics(Prometheus.Metrics.NewCustomRegistry()), NullLogger<ChatService>.Instance);
            ChatTurn Turn(string role) => new()
            {
                Tenant = "t",
                Messages = [new TurnMessage("system", [TurnPart.OfText("Be brief.")]), new TurnMessage(role, [TurnPart.OfText("  Hi  ")])],
                MaxTokens = 4,
            };
            Assert.Equal(model.Tokenizer.Encode("<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n"), service.BuildPrompt(Turn("user")));

            var refused = Assert.Throws<OpenAiException>(() => service.BuildPrompt(Turn("assistant")));
            Assert.Equal(400, refused.Status);
            Assert.Equal("invalid_request", refused.Code);
            Assert.Contains("The assistant must not speak first.", refused.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
