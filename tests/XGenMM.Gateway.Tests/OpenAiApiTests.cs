using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using XGenMM.Model;
using XGenMM.Model.Generation;
using XGenMM.Model.Tokenization;

namespace XGenMM.Gateway.Tests;

[Collection(GatewayTests.Name)]
public sealed class OpenAiApiTests(GatewayFixture gateway)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private JsonObject Body(string question, byte[]? image = null, int maxTokens = 12, bool stream = false)
    {
        var content = new JsonArray();
        if (image is not null) content.Add(new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = TestImages.DataUrl(image, "image/jpeg") } });
        content.Add(new JsonObject { ["type"] = "text", ["text"] = question });
        return new JsonObject
        {
            ["model"] = gateway.ModelId,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = content }),
            ["max_tokens"] = maxTokens,
            ["temperature"] = 0,
            ["stream"] = stream,
        };
    }

    [Fact(Timeout = 120_000)]
    public async Task A_chat_completion_with_an_image_equals_the_in_process_pipeline()
    {
        using var http = gateway.Client(GatewayFixture.AlphaKey);
        using var response = await http.PostAsJsonAsync("/v1/chat/completions", Body("What is in the picture?", TestImages.Photo), Ct);
        var json = JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("chat.completion", (string?)json["object"]);
        Assert.StartsWith("chatcmpl-", (string?)json["id"], StringComparison.Ordinal);
        Assert.Equal(gateway.ModelId, (string?)json["model"]);
        var choice = json["choices"]![0]!;
        Assert.Equal("assistant", (string?)choice["message"]!["role"]);
        string content = (string)choice["message"]!["content"]!;

        // The same question through the model in this process, greedy: token for token the same answer.
        using var pipeline = XGenMMPipeline.Load(Fixtures.GoldenTinyAnyRes);
        var conversation = new List<ChatMessage> { new("user", "<image>\nWhat is in the picture?") };
        var deltas = pipeline.Chat(conversation, [TestImages.Photo], new GenerationOptions { MaxNewTokens = 12 }, Ct).ToList();
        Assert.Equal(string.Concat(deltas.Select(d => d.Text)), content);
        Assert.Equal(deltas[^1].Finish == FinishReason.Length ? "length" : "stop", (string?)choice["finish_reason"]);

        var usage = json["usage"]!;
        int textTokens = pipeline.Tokenizer.Encode(ChatTemplate.Render(conversation, true, true)).Count - 1; // less the <image> placeholder
        int imageTokens = (int)usage["prompt_tokens_details"]!["image_tokens"]!;
        Assert.True(imageTokens > 0);
        Assert.Equal(textTokens + imageTokens, (int)usage["prompt_tokens"]!);
        Assert.Equal(deltas.Count, (int)usage["completion_tokens"]!);
        Assert.Equal((int)usage["prompt_tokens"]! + (int)usage["completion_tokens"]!, (int)usage["total_tokens"]!);
    }

    [Fact(Timeout = 120_000)]
    public async Task A_streamed_completion_sends_openai_chunks_usage_and_done()
    {
        using var http = gateway.Client(GatewayFixture.AlphaKey);
        var body = Body("Describe the image.", TestImages.Photo, 10, stream: true);
        body["stream_options"] = new JsonObject { ["include_usage"] = true };
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(body) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        string raw = await response.Content.ReadAsStringAsync(Ct);
        var events = raw.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e, StringComparison.Ordinal));
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", (string?)c["object"]));
        Assert.Single(chunks.Select(c => (string?)c["id"]).Distinct());
        Assert.Equal("assistant", (string?)chunks[0]["choices"]![0]!["delta"]!["role"]);
        var finish = chunks.Where(c => c["choices"]!.AsArray().Count > 0 && c["choices"]![0]!["finish_reason"] is not null).ToList();
        Assert.Single(finish);
        var usageChunk = chunks[^1];
        Assert.Empty(usageChunk["choices"]!.AsArray());
        Assert.True((int)usageChunk["usage"]!["completion_tokens"]! > 0);
        Assert.All(chunks[..^1], c => Assert.Null(c["usage"]));
        string streamed = string.Concat(chunks.Where(c => c["choices"]!.AsArray().Count > 0).Select(c => (string?)c["choices"]![0]!["delta"]!["content"] ?? ""));

        using var plain = await http.PostAsJsonAsync("/v1/chat/completions", Body("Describe the image.", TestImages.Photo, 10), Ct);
        var json = JsonNode.Parse(await plain.Content.ReadAsStringAsync(Ct))!;
        Assert.Equal((string?)json["choices"]![0]!["message"]!["content"], streamed);
        Assert.Equal((int)json["usage"]!["completion_tokens"]!, (int)usageChunk["usage"]!["completion_tokens"]!);
    }

    [Fact(Timeout = 120_000)]
    public async Task A_repeated_image_counts_as_a_multimodal_cache_hit()
    {
        var image = TestImages.Png(97, 61, new SkiaSharp.SKColor(12, 200, 77));   // no other test sends this one
        double queries = await gateway.MetricAsync("xgenmm_mm_cache_queries_total"), hits = await gateway.MetricAsync("xgenmm_mm_cache_hits_total");
        using var http = gateway.Client(GatewayFixture.AlphaKey);
        for (int i = 0; i < 2; i++)
        {
            using var response = await http.PostAsJsonAsync("/v1/chat/completions", Body("What is this?", image, maxTokens: 1), Ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        // Exactly: each gateway exports its own registry, so the other collection's gateway in this process cannot add
        // to these (with prometheus-net's process-wide registry it once hid them behind its larger totals).
        Assert.Equal(queries + 2, await gateway.MetricAsync("xgenmm_mm_cache_queries_total"));
        Assert.Equal(hits + 1, await gateway.MetricAsync("xgenmm_mm_cache_hits_total"));
    }

    [Fact(Timeout = 60_000)]
    public async Task Models_lists_the_served_model_and_an_unknown_one_is_404()
    {
        using var http = gateway.Client(GatewayFixture.AlphaKey);
        var list = JsonNode.Parse(await http.GetStringAsync("/v1/models", Ct))!;
        Assert.Equal("list", (string?)list["object"]);
        Assert.Equal(gateway.ModelId, (string?)list["data"]![0]!["id"]);
        using var missing = await http.GetAsync("/v1/models/gpt-9", Ct);
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal("model_not_found", (string?)JsonNode.Parse(await missing.Content.ReadAsStringAsync(Ct))!["error"]!["code"]);
    }

    [Fact(Timeout = 120_000)]
    public async Task Usage_ledger_counts_a_tenants_own_requests_only()
    {
        using var beta = gateway.Client(GatewayFixture.BetaKey);
        var before = JsonNode.Parse(await beta.GetStringAsync("/v1/usage?days=1", Ct))!;
        long requestsBefore = before["data"]!.AsArray().Sum(d => (long)d!["requests"]!);
        long completionBefore = before["data"]!.AsArray().Sum(d => (long)d!["completion_tokens"]!);
        using var response = await beta.PostAsJsonAsync("/v1/chat/completions", Body("Hello there", null, 5), Ct);
        var json = JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!;
        var after = JsonNode.Parse(await beta.GetStringAsync("/v1/usage?days=1", Ct))!;
        Assert.Equal("beta", (string?)after["tenant"]);
        Assert.Equal(requestsBefore + 1, after["data"]!.AsArray().Sum(d => (long)d!["requests"]!));
        Assert.Equal(completionBefore + (int)json["usage"]!["completion_tokens"]!, after["data"]!.AsArray().Sum(d => (long)d!["completion_tokens"]!));
    }

    [Fact(Timeout = 120_000)]
    public async Task A_stop_sequence_ends_the_answer_before_it()
    {
        using var http = gateway.Client(GatewayFixture.AlphaKey);
        using var full = await http.PostAsJsonAsync("/v1/chat/completions", Body("Tell me a story.", null, 24), Ct);
        string text = (string)JsonNode.Parse(await full.Content.ReadAsStringAsync(Ct))!["choices"]![0]!["message"]!["content"]!;
        Assert.True(text.Length >= 6, $"the unconstrained answer is long enough to cut: '{text}'");
        string stop = text.Substring(text.Length / 2, 2);
        var body = Body("Tell me a story.", null, 24);
        body["stop"] = new JsonArray(stop);
        using var cut = await http.PostAsJsonAsync("/v1/chat/completions", body, Ct);
        var json = JsonNode.Parse(await cut.Content.ReadAsStringAsync(Ct))!;
        string cutText = (string)json["choices"]![0]!["message"]!["content"]!;
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)], cutText);
        Assert.Equal("stop", (string?)json["choices"]![0]!["finish_reason"]);
    }
}
