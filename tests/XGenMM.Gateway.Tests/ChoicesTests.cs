using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace XGenMM.Gateway.Tests;

/// <summary>
/// OpenAI's <c>n</c>: several choices for one prompt, each its own generation (with a seed, choice i samples with
/// seed + i), streamed or not, bounded by Gateway:Limits:MaxChoices and charged to the tenant as that many requests' tokens.
/// </summary>
[Collection(GatewayTests.Name)]
public sealed class ChoicesTests(GatewayFixture gateway)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private const int Tokens = 6;

    private JsonObject Body(int n, ulong seed, bool stream = false)
    {
        var body = new JsonObject
        {
            ["model"] = gateway.ModelId,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Tell me a story about a red square." }),
            ["max_tokens"] = Tokens,
            ["ignore_eos"] = true,
            ["temperature"] = 1.0,
            ["seed"] = seed,
            ["n"] = n,
        };
        if (stream)
        {
            body["stream"] = true;
            body["stream_options"] = new JsonObject { ["include_usage"] = true };
        }
        return body;
    }

    private static async Task<JsonNode> PostAsync(HttpClient http, JsonObject body)
    {
        using var response = await http.PostAsJsonAsync("/v1/chat/completions", body, Ct);
        string text = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        return JsonNode.Parse(text)!;
    }

    [Fact(Timeout = 120_000)]
    public async Task N_choices_are_n_seeded_generations_with_their_index_and_summed_completion_usage()
    {
        using var http = gateway.Client(GatewayFixture.AlphaKey);
        var json = await PostAsync(http, Body(3, seed: 42));
        var choices = json["choices"]!.AsArray();
        Assert.Equal([0, 1, 2], choices.Select(c => (int)c!["index"]!));
        Assert.All(choices, c => Assert.Equal("length", (string?)c!["finish_reason"]));
        var texts = choices.Select(c => (string)c!["message"]!["content"]!).ToList();
        Assert.True(texts.Distinct().Count() > 1, $"sampled choices differ: {string.Join(" | ", texts)}");

        // Choice i is what a single request with seed 42 + i answers: the choices repeat, one by one.
        for (int i = 0; i < 3; i++)
        {
            var single = await PostAsync(http, Body(1, seed: 42 + (ulong)i));
            Assert.Equal(texts[i], (string?)single["choices"]![0]!["message"]!["content"]);
            if (i == 0)
                Assert.Equal((int)single["usage"]!["prompt_tokens"]!, (int)json["usage"]!["prompt_tokens"]!); // the prompt counts once
        }
        var usage = json["usage"]!;
        Assert.Equal(3 * Tokens, (int)usage["completion_tokens"]!);
        Assert.Equal((int)usage["prompt_tokens"]! + 3 * Tokens, (int)usage["total_tokens"]!);
        Assert.Equal(texts, (await PostAsync(http, Body(3, seed: 42)))["choices"]!.AsArray().Select(c => (string)c!["message"]!["content"]!));
    }

    [Fact(Timeout = 120_000)]
    public async Task Streamed_choices_arrive_by_index_each_with_its_role_and_finish_then_one_usage_chunk()
    {
        using var http = gateway.Client(GatewayFixture.AlphaKey);
        var plain = await PostAsync(http, Body(3, seed: 7));
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(Body(3, seed: 7, stream: true)) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = (await response.Content.ReadAsStringAsync(Ct)).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        Assert.Single(chunks.Select(c => (string?)c["id"]).Distinct());
        var withChoices = chunks.Where(c => c["choices"]!.AsArray().Count > 0).Select(c => c["choices"]![0]!).ToList();
        for (int i = 0; i < 3; i++)
        {
            var mine = withChoices.Where(c => (int)c["index"]! == i).ToList();
            Assert.Equal("assistant", (string?)mine[0]["delta"]!["role"]);
            Assert.Equal("length", (string?)Assert.Single(mine, c => c["finish_reason"] is not null)["finish_reason"]);
            Assert.Equal((string?)plain["choices"]![i]!["message"]!["content"], string.Concat(mine.Select(c => (string?)c["delta"]!["content"] ?? "")));
        }
        var usage = chunks[^1];
        Assert.Empty(usage["choices"]!.AsArray());
        Assert.Equal(3 * Tokens, (int)usage["usage"]!["completion_tokens"]!);
        Assert.Equal((int)plain["usage"]!["prompt_tokens"]!, (int)usage["usage"]!["prompt_tokens"]!);
    }

    [Fact(Timeout = 120_000)]
    public async Task The_tenant_is_charged_one_request_with_every_choices_tokens()
    {
        using var beta = gateway.Client(GatewayFixture.BetaKey);
        static (long Requests, long Prompt, long Completion) Sum(JsonNode ledger) => (
            ledger["data"]!.AsArray().Sum(d => (long)d!["requests"]!),
            ledger["data"]!.AsArray().Sum(d => (long)d!["prompt_tokens"]!),
            ledger["data"]!.AsArray().Sum(d => (long)d!["completion_tokens"]!));
        var before = Sum(JsonNode.Parse(await beta.GetStringAsync("/v1/usage?days=1", Ct))!);
        var json = await PostAsync(beta, Body(3, seed: 5));
        var after = Sum(JsonNode.Parse(await beta.GetStringAsync("/v1/usage?days=1", Ct))!);
        Assert.Equal(before.Requests + 1, after.Requests);
        Assert.Equal(before.Prompt + 3 * (int)json["usage"]!["prompt_tokens"]!, after.Prompt);
        Assert.Equal(before.Completion + 3 * Tokens, after.Completion);
    }

    [Theory(Timeout = 60_000)]
    [InlineData(5, "too_many_choices")]
    [InlineData(0, null)]
    public async Task N_outside_one_to_the_limit_is_a_400(int n, string? code)
    {
        using var http = gateway.Client(GatewayFixture.AlphaKey);
        using var response = await http.PostAsJsonAsync("/v1/chat/completions", Body(n, seed: 1), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!["error"]!;
        Assert.Equal("invalid_request_error", (string?)error["type"]);
        Assert.Equal("n", (string?)error["param"]);
        Assert.Equal(code, (string?)error["code"]);
    }
}
