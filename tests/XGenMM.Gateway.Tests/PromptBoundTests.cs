using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.DependencyInjection;
using XGenMM.Gateway.Chat;
using XGenMM.Gateway.Hubs;
using XGenMM.Model.Tokenization;

namespace XGenMM.Gateway.Tests;

/// <summary>The gateway with the default 24 MB body limit, so that a 20 MB prompt reaches the prompt check.</summary>
public sealed class LargeBodyGatewayFixture : GatewayFixture
{
    protected override void Configure(Dictionary<string, string?> settings) =>
        settings["Gateway:Limits:MaxBodyBytes"] = (24L << 20).ToString(System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>
/// The prompt bound computed before tokenising: never above the real tokenizer's count (on text built to make BPE
/// merge as much as it can), and a 20 MB prompt is refused with context_length_exceeded without the tokenizer running.
/// </summary>
public sealed class PromptBoundTests(LargeBodyGatewayFixture gateway) : IClassFixture<LargeBodyGatewayFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static TheoryData<string> Tokenizers() => new() { NanoGatewayFixture.ResolveModel(), Fixtures.GoldenTinyAnyRes };

    /// <summary>Texts that pack the most bytes into the fewest tokens this vocabulary allows.</summary>
    private static IEnumerable<(string Name, string Text)> Adversarial(XGenMMTokenizer tokenizer)
    {
        var vocab = Enumerable.Range(0, tokenizer.VocabSize).Select(tokenizer.IdToToken).OfType<string>().ToList();
        var longest = vocab.OrderByDescending(t => Encoding.UTF8.GetByteCount(t)).Take(50).ToList();
        foreach (char c in "a ▁\n\t.-=*0#")
            yield return ($"4000 x '{c}'", new string(c, 4000));
        yield return ("longest tokens, each repeated", string.Concat(longest.SelectMany(t => Enumerable.Repeat(t.Replace('▁', ' '), 20))));
        yield return ("longest tokens, raw ▁", string.Concat(longest.SelectMany(t => Enumerable.Repeat(t, 20))));
        yield return ("added tokens back to back", string.Concat(Enumerable.Repeat("<|placeholder1|><|end|></s><|endoftext|><|assistant|>", 200)));
        yield return ("added tokens eating whitespace", string.Concat(Enumerable.Repeat("<|end|>" + new string(' ', 300) + "\n\n\t", 40)));
        yield return ("whitespace before a tag", string.Concat(Enumerable.Repeat(new string(' ', 300) + "<|user|>", 40)));
        yield return ("words", string.Concat(Enumerable.Repeat("the administration of the universities ", 300)));
        yield return ("Cyrillic", string.Concat(Enumerable.Repeat("административ университета ", 300)));
        yield return ("CJK and emoji", string.Concat(Enumerable.Repeat("漢字かな😀👍🏽", 500)));
        yield return ("NUL and noncharacters", string.Concat(Enumerable.Repeat("\0\uFFFE\uFFFF\uFEFF", 500)));
        var random = new Random(18);
        yield return ("random vocabulary", string.Concat(Enumerable.Range(0, 3000).Select(_ => vocab[random.Next(vocab.Count)].Replace('▁', ' '))));
    }

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void The_bound_never_exceeds_the_real_token_count_on_adversarial_text(string checkpoint)
    {
        var tokenizer = XGenMMTokenizer.FromDirectory(checkpoint);
        var bound = new PromptBound(tokenizer);
        // Useful as well as safe: a 20 MB text is bounded far above any prompt limit.
        Assert.InRange(bound.MaxBytesPerToken, 16, 64);
        foreach (var (name, text) in Adversarial(tokenizer))
        {
            long atLeast = bound.MinTokens(text);
            int actual = tokenizer.Encode(text).Count;
            Assert.True(atLeast <= actual, $"{name}: bound {atLeast} > {actual} tokens");
            // As the gateway applies it: the text inside the rendered chat template.
            string rendered = ChatTemplate.Render([new ChatMessage("user", text)], addGenerationPrompt: true, addDefaultSystemPrompt: true);
            Assert.True(atLeast <= tokenizer.Encode(rendered).Count, $"{name} in the template: bound {atLeast} > the prompt's tokens");
        }
    }

    private static string Huge() => new('a', 20_000_000);

    [Fact(Timeout = 120_000)]
    public async Task A_20_MB_prompt_is_refused_with_context_length_exceeded_before_the_tokenizer_runs()
    {
        var chat = gateway.App.Services.GetRequiredService<ChatService>();
        long before = chat.TokenizerCalls;
        using var http = gateway.Client(GatewayFixture.AlphaKey);
        var body = new JsonObject
        {
            ["model"] = gateway.ModelId,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = Huge() }),
        };
        using var response = await http.PostAsync("/v1/chat/completions", new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"), Ct);
        string text = await response.Content.ReadAsStringAsync(Ct);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("context_length_exceeded", (string?)JsonNode.Parse(text)!["error"]!["code"]);
        Assert.Equal(before, chat.TokenizerCalls);

        // Spread over many messages and parts, the bound still adds up.
        var parts = new JsonArray(Enumerable.Range(0, 50).Select(_ => (JsonNode)new JsonObject { ["type"] = "text", ["text"] = new string('b', 200_000) }).ToArray());
        body["messages"] = new JsonArray(Enumerable.Range(0, 20).Select(i => (JsonNode)new JsonObject { ["role"] = i % 2 == 0 ? "user" : "assistant", ["content"] = i == 0 ? parts : new string('c', 100_000) }).ToArray());
        using var spread = await http.PostAsync("/v1/chat/completions", new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, spread.StatusCode);
        Assert.Equal("context_length_exceeded", (string?)JsonNode.Parse(await spread.Content.ReadAsStringAsync(Ct))!["error"]!["code"]);
        Assert.Equal(before, chat.TokenizerCalls);

        // A prompt under the bound is still tokenised and counted exactly.
        using var small = await http.PostAsync("/v1/chat/completions", new StringContent(
            "{\"model\":\"" + gateway.ModelId + "\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", Encoding.UTF8, "application/json"), Ct);
        Assert.Equal(HttpStatusCode.OK, small.StatusCode);
        Assert.Equal(before + 1, chat.TokenizerCalls);
    }

    [Fact(Timeout = 120_000)]
    public async Task A_20_MB_prompt_on_the_hub_is_refused_before_the_tokenizer_runs()
    {
        var chat = gateway.App.Services.GetRequiredService<ChatService>();
        long before = chat.TokenizerCalls;
        await using var connection = new HubConnectionBuilder().WithUrl(new Uri(gateway.BaseAddress, "/hubs/chat"), o =>
        {
            o.AccessTokenProvider = () => Task.FromResult<string?>(GatewayFixture.AlphaKey);
            o.Transports = HttpTransportType.WebSockets;
        }).Build();
        await connection.StartAsync(Ct);
        var turn = new HubTurn { Messages = [new HubMessage { Role = "user", Content = Huge() }], MaxTokens = 4 };
        var error = await Assert.ThrowsAsync<HubException>(async () => { await foreach (var _ in connection.StreamAsync<HubDelta>("Chat", turn, Ct)) { } });
        Assert.Contains("400 context_length_exceeded", error.Message, StringComparison.Ordinal);
        Assert.Equal(before, chat.TokenizerCalls);
        // The connection survives the refusal.
        var ok = new HubTurn { Messages = [new HubMessage { Role = "user", Content = "hi" }], MaxTokens = 1, Temperature = 0 };
        var deltas = new List<HubDelta>();
        await foreach (var d in connection.StreamAsync<HubDelta>("Chat", ok, Ct)) deltas.Add(d);
        Assert.NotNull(deltas[^1].FinishReason);
    }
}
