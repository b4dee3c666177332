using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace XGenMM.Gateway.Tests;

/// <summary>Tenant limits enforced by the tenant grains, seen through the API.</summary>
[Collection(GatewayTests.Name)]
public sealed class QuotaTests(GatewayFixture gateway)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private JsonObject Body(int maxTokens = 2) => new()
    {
        ["model"] = gateway.ModelId,
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Hi" }),
        ["max_tokens"] = maxTokens,
    };

    [Fact(Timeout = 120_000)]
    public async Task The_third_request_in_a_minute_of_a_two_per_minute_tenant_is_429_with_retry_after_and_others_go_on()
    {
        using var tight = gateway.Client(GatewayFixture.TightKey);
        using var other = gateway.Client(GatewayFixture.BetaKey);
        for (int i = 0; i < 2; i++)
        {
            using var ok = await tight.PostAsJsonAsync("/v1/chat/completions", Body(), Ct);
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }
        using var limited = await tight.PostAsJsonAsync("/v1/chat/completions", Body(), Ct);
        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        Assert.True(limited.Headers.RetryAfter?.Delta is { TotalSeconds: >= 1 and <= 60 }, $"Retry-After: {limited.Headers.RetryAfter}");
        var error = JsonNode.Parse(await limited.Content.ReadAsStringAsync(Ct))!["error"]!;
        Assert.Equal("rate_limit_error", (string?)error["type"]);
        Assert.Equal("rate_limit_requests", (string?)error["code"]);
        Assert.True(await gateway.MetricAsync("xgenmm_requests_rejected_total", "{reason=\"rate_limit_requests\"}") >= 1);

        using var unaffected = await other.PostAsJsonAsync("/v1/chat/completions", Body(), Ct);
        Assert.Equal(HttpStatusCode.OK, unaffected.StatusCode);
    }
}
