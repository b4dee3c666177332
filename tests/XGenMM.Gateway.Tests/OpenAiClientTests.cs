using System.Text.Json.Nodes;

namespace XGenMM.Gateway.Tests;

/// <summary>
/// The official OpenAI npm client (package "openai", unmodified, pinned in node/package-lock.json) against the gateway's
/// /v1 serving xgenmm-nano, through node/openai-client.mjs: what an OpenAI user's code gets back.
/// </summary>
[Collection(NanoGatewayTests.Name)]
public sealed class OpenAiClientTests(NanoGatewayFixture gateway)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact(Timeout = 120_000)]
    public async Task The_openai_npm_client_chats_streams_stops_and_gets_typed_errors()
    {
        NodeScript.RequireInstalled();
        string image = NanoScene.WritePng();
        JsonNode result;
        try
        {
            result = await NodeScript.RunAsync("openai-client.mjs", new Dictionary<string, object?>
            {
                ["baseURL"] = new Uri(gateway.BaseAddress, "/v1").ToString(),
                ["apiKey"] = GatewayFixture.AlphaKey,
                ["model"] = gateway.ModelId,
                ["image"] = image,
                ["question"] = NanoScene.CountQuestion,
                ["describe"] = NanoScene.DescribeQuestion,
            }, TimeSpan.FromSeconds(90), Ct);
        }
        finally
        {
            File.Delete(image);
        }

        Assert.StartsWith("5.", (string?)result["clientVersion"], StringComparison.Ordinal);
        Assert.Contains(gateway.ModelId, result["modelIds"]!.AsArray().Select(m => (string?)m));

        // Non-streaming: the right answer about the picture, with usage that adds up.
        var plain = result["plain"]!;
        Assert.Equal("chat.completion", (string?)plain["object"]);
        Assert.StartsWith("chatcmpl-", (string?)plain["id"], StringComparison.Ordinal);
        Assert.Equal(gateway.ModelId, (string?)plain["model"]);
        Assert.Equal("assistant", (string?)plain["role"]);
        Assert.Equal(NanoScene.CountAnswer, NanoScene.Normalize((string)plain["content"]!));
        Assert.Equal("stop", (string?)plain["finishReason"]);
        var usage = plain["usage"]!;
        int imageTokens = (int)usage["prompt_tokens_details"]!["image_tokens"]!;
        Assert.True(imageTokens > 0, "the picture's tokens count as prompt tokens");
        Assert.True((int)usage["prompt_tokens"]! > imageTokens);
        Assert.True((int)usage["completion_tokens"]! > 0);
        Assert.Equal((int)usage["prompt_tokens"]! + (int)usage["completion_tokens"]!, (int)usage["total_tokens"]!);

        // Streaming with stream_options.include_usage: the same answer in chunks, then one usage chunk without choices.
        var streamed = result["streamed"]!;
        Assert.Equal((string?)plain["content"], (string?)streamed["content"]);
        Assert.Equal("assistant", (string?)streamed["firstRole"]);
        Assert.Single(streamed["ids"]!.AsArray());
        Assert.Equal("chat.completion.chunk", (string?)Assert.Single(streamed["objects"]!.AsArray()));
        Assert.Equal("stop", (string?)Assert.Single(streamed["finishReasons"]!.AsArray()));
        Assert.Equal(1, (int)streamed["usageChunks"]!);
        Assert.True((bool)streamed["lastHasNoChoices"]!);
        // The same counts (cached_tokens may differ: the second request reuses the first one's prefix).
        var streamedUsage = streamed["usage"]!;
        foreach (var field in new[] { "prompt_tokens", "completion_tokens", "total_tokens" })
            Assert.Equal((int)usage[field]!, (int)streamedUsage[field]!);
        Assert.Equal(imageTokens, (int)streamedUsage["prompt_tokens_details"]!["image_tokens"]!);
        Assert.InRange((int)streamedUsage["prompt_tokens_details"]!["cached_tokens"]!, 0, (int)usage["prompt_tokens"]!);
        Assert.InRange((int)streamed["contentChunks"]!, 1, (int)usage["completion_tokens"]!); // a chunk per token with text

        // Streaming without include_usage has no usage at all.
        Assert.Equal(0, (int)result["bare"]!["usageChunks"]!);
        Assert.Equal((string?)plain["content"], (string?)result["bare"]!["content"]);

        // A stop sequence ends the answer before it, streamed or not.
        var stop = result["stop"]!;
        string full = (string)stop["full"]!, cutAt = (string)stop["stop"]!;
        Assert.True(full.Length >= 4, $"the unconstrained answer is long enough to cut: '{full}'");
        string expected = full[..full.IndexOf(cutAt, StringComparison.Ordinal)];
        Assert.Equal(expected, (string?)stop["cut"]);
        Assert.Equal("stop", (string?)stop["cutFinishReason"]);
        Assert.Equal(expected, (string?)stop["cutStream"]);
        Assert.Equal("stop", (string?)stop["cutStreamFinishReason"]);

        // n = 2 with a seed: two choices by index, streamed the same as not, completion usage summed over both.
        var choices = result["choices"]!;
        Assert.Equal([0, 1], choices["indexes"]!.AsArray().Select(i => (int)i!));
        Assert.Equal(choices["contents"]!.AsArray().Select(c => (string?)c), choices["streamedContents"]!.AsArray().Select(c => (string?)c));
        Assert.Equal(2, choices["streamedFinishReasons"]!.AsArray().Count);
        Assert.Equal(1, (int)choices["streamedIds"]!);
        Assert.Equal((int)usage["prompt_tokens"]!, (int)choices["usage"]!["prompt_tokens"]!);
        Assert.Equal((int)choices["usage"]!["completion_tokens"]!, (int)choices["streamedUsage"]!["completion_tokens"]!);
        Assert.True((int)choices["usage"]!["completion_tokens"]! >= 2, "each choice has at least one token");

        // logprobs with top_logprobs = 3 (greedy): one entry per generated token, each with three alternatives best
        // first, the sampled token being the most likely one; the streamed entries are the same.
        var logprobs = result["logprobs"]!;
        var content = logprobs["content"]!.AsArray();
        Assert.NotEmpty(content);
        foreach (var entry in content)
        {
            double logprob = (double)entry!["logprob"]!;
            Assert.InRange(logprob, double.NegativeInfinity, 0);
            var top = entry["top_logprobs"]!.AsArray();
            Assert.Equal(3, top.Count);
            Assert.True((double)top[0]!["logprob"]! >= (double)top[1]!["logprob"]! && (double)top[1]!["logprob"]! >= (double)top[2]!["logprob"]!);
            Assert.Equal((double)top[0]!["logprob"]!, logprob, 5);
            Assert.Equal(System.Text.Encoding.UTF8.GetBytes((string)entry["token"]!), entry["bytes"]!.AsArray().Select(b => (byte)(int)b!));
        }
        // The streamed request reuses the first one's prompt prefix from the KV cache, and the CPU kernels sum in an order
        // that depends on the batch's rows: the same tokens, log probabilities equal to float rounding.
        var streamedLogprobs = logprobs["streamed"]!.AsArray().Select(e => (double)e!["logprob"]!).ToArray();
        Assert.Equal(content.Count, streamedLogprobs.Length);
        foreach (var (once, again) in content.Select(e => (double)e!["logprob"]!).Zip(streamedLogprobs))
            Assert.InRange(again, once - 1e-5 - Math.Abs(once) * 1e-4, once + 1e-5 + Math.Abs(once) * 1e-4);

        // Errors arrive as the client's typed exceptions with the API's status, type and code.
        var badKey = result["errors"]!["badKey"]!;
        Assert.True((bool)badKey["isAuthenticationError"]!, $"a wrong key raises AuthenticationError: {badKey}");
        Assert.Equal(401, (int)badKey["status"]!);
        Assert.Equal("invalid_api_key", (string?)badKey["code"]);
        var badStreamKey = result["errors"]!["badStreamKey"]!;
        Assert.True((bool)badStreamKey["isAuthenticationError"]!, $"a wrong key raises AuthenticationError when streaming too: {badStreamKey}");
        var tooMany = result["errors"]!["tooManyTokens"]!;
        Assert.True((bool)tooMany["isBadRequestError"]!, $"max_tokens past the limit raises BadRequestError: {tooMany}");
        Assert.Equal(400, (int)tooMany["status"]!);
        Assert.Equal("invalid_request_error", (string?)tooMany["type"]);
        Assert.Equal("max_tokens", (string?)tooMany["param"]);
        var invalidImage = result["errors"]!["invalidImage"]!;
        Assert.True((bool)invalidImage["isBadRequestError"]!, $"an undecodable image raises BadRequestError: {invalidImage}");
        Assert.Equal(400, (int)invalidImage["status"]!);
        Assert.Equal("invalid_request_error", (string?)invalidImage["type"]);
        Assert.Equal("invalid_image", (string?)invalidImage["code"]);
    }
}
