using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.DependencyInjection;
using XGenMM.Gateway.Hubs;

namespace XGenMM.Gateway.Tests;

/// <summary>The SignalR hub through the official .NET client over real WebSockets: streaming, cancellation, limits, auth.</summary>
[Collection(GatewayTests.Name)]
public sealed class ChatHubTests(GatewayFixture gateway)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private async Task<HubConnection> ConnectAsync(string key = GatewayFixture.AlphaKey, bool messagePack = false)
    {
        var builder = new HubConnectionBuilder().WithUrl(new Uri(gateway.BaseAddress, "/hubs/chat"), o =>
        {
            o.AccessTokenProvider = () => Task.FromResult<string?>(key);
            o.Transports = HttpTransportType.WebSockets;
        });
        if (messagePack) builder.AddMessagePackProtocol();
        var connection = builder.Build();
        await connection.StartAsync(Ct);
        return connection;
    }

    private static HubTurn Turn(string question, byte[]? image = null, int maxTokens = 12, bool ignoreEos = false) => new()
    {
        ConversationId = Guid.NewGuid().ToString("N"),
        Messages = [new HubMessage { Role = "user", Content = question, Images = image is null ? null : [image] }],
        MaxTokens = maxTokens,
        Temperature = 0,
        IgnoreEos = ignoreEos,
    };

    [Fact(Timeout = 120_000)]
    public async Task Every_refusal_is_counted_once_by_reason_whether_auth_parser_or_hub_refused_it()
    {
        async Task<double> Rejected(string reason) => await gateway.MetricAsync("xgenmm_requests_rejected_total", $"{{reason=\"{reason}\"}}");
        double badKey = await Rejected("invalid_api_key"), noKey = await Rejected("missing_api_key"), badJson = await Rejected("invalid_json"),
            tooMany = await Rejected("too_many_messages"), invalid = await Rejected("invalid_request_error");

        using (var wrongKey = gateway.Client("sk-not-a-key"))
        using (var refused = await wrongKey.PostAsync("/v1/chat/completions", new StringContent("{}", System.Text.Encoding.UTF8, "application/json"), Ct))
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        using (var anonymous = new HttpClient { BaseAddress = gateway.BaseAddress })
        using (var refused = await anonymous.PostAsync("/v1/chat/completions", new StringContent("{}", System.Text.Encoding.UTF8, "application/json"), Ct))
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        using (var http = gateway.Client(GatewayFixture.AlphaKey))
        using (var refused = await http.PostAsync("/v1/chat/completions", new StringContent("{not json", System.Text.Encoding.UTF8, "application/json"), Ct))
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        await using (var connection = await ConnectAsync())
        {
            var turn = Turn("hi");
            turn.Messages = Enumerable.Range(0, 1000).Select(_ => new HubMessage { Role = "user", Content = "x" }).ToArray();
            await Assert.ThrowsAsync<HubException>(async () => { await foreach (var _ in connection.StreamAsync<HubDelta>("Chat", turn, Ct)) { } });
            await Assert.ThrowsAsync<HubException>(async () => { await foreach (var _ in connection.StreamAsync<HubDelta>("Chat", Turn("hi", maxTokens: 0), Ct)) { } });
        }

        Assert.Equal(badKey + 1, await Rejected("invalid_api_key"));
        Assert.Equal(noKey + 1, await Rejected("missing_api_key"));
        Assert.Equal(badJson + 1, await Rejected("invalid_json"));
        Assert.Equal(tooMany + 1, await Rejected("too_many_messages"));
        Assert.Equal(invalid + 1, await Rejected("invalid_request_error"));
    }

    [Theory(Timeout = 120_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_hub_streams_the_same_answer_as_the_http_api(bool messagePack)
    {
        await using var connection = await ConnectAsync(messagePack: messagePack);
        var deltas = new List<HubDelta>();
        await foreach (var delta in connection.StreamAsync<HubDelta>("Chat", Turn("What is in the picture?", TestImages.Photo), Ct))
            deltas.Add(delta);
        Assert.True(deltas.Count >= 2, "tokens arrive one by one, then the final delta");
        var last = deltas[^1];
        Assert.NotNull(last.FinishReason);
        Assert.NotNull(last.Usage);
        Assert.True(last.Usage!.ImageTokens > 0);
        Assert.True(last.Timings!.TimeToFirstTokenSeconds > 0);
        Assert.All(deltas[..^1], d => Assert.Null(d.FinishReason));
        Assert.Equal(await gateway.HttpAnswerAsync("What is in the picture?", TestImages.Photo, "image/jpeg", 12), string.Concat(deltas.Select(d => d.Text)));
    }

    [Fact(Timeout = 60_000)]
    public async Task A_wrong_key_cannot_connect()
    {
        var e = await Assert.ThrowsAnyAsync<HttpRequestException>(() => ConnectAsync("not-a-key"));
        Assert.Equal(HttpStatusCode.Unauthorized, e.StatusCode);
    }

    [Fact(Timeout = 60_000)]
    public async Task Invalid_settings_are_a_hub_error_with_the_status()
    {
        await using var connection = await ConnectAsync();
        var turn = Turn("Hi");
        turn.Temperature = 5;
        var e = await Assert.ThrowsAsync<HubException>(async () =>
        {
            await foreach (var _ in connection.StreamAsync<HubDelta>("Chat", turn, Ct)) { }
        });
        Assert.Contains("400", e.Message, StringComparison.Ordinal);
        Assert.Contains("temperature", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("Retry-After", e.Message, StringComparison.Ordinal);
        // The connection survives its own bad request.
        await foreach (var _ in connection.StreamAsync<HubDelta>("Chat", Turn("Hi", maxTokens: 2), Ct)) { }
    }

    [Fact(Timeout = 120_000)]
    public async Task Cancelling_the_stream_frees_the_decode_slot()
    {
        await using var connection = await ConnectAsync();
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        int received = 0;
        try
        {
            await foreach (var _ in connection.StreamAsync<HubDelta>("Chat", Turn("Tell me everything.", maxTokens: 256, ignoreEos: true), cancel.Token))
            {
                if (++received == 3)
                {
                    Assert.Equal(1, await gateway.MetricAsync("xgenmm_num_requests_running", "{device=\"cpu\"}"));
                    await cancel.CancelAsync();
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        Assert.True(received < 256, "the stream stopped early");
        await WaitForIdleAsync();
        // The connection goes on serving.
        await foreach (var _ in connection.StreamAsync<HubDelta>("Chat", Turn("Hi", maxTokens: 2), Ct)) { }
    }

    [Fact(Timeout = 120_000)]
    public async Task Disconnecting_mid_stream_frees_the_decode_slot()
    {
        var connection = await ConnectAsync();
        double abortsBefore = await gateway.MetricAsync("xgenmm_request_success_total", $"{{tenant=\"alpha\",finished_reason=\"abort\",model_name=\"{gateway.ModelId}\"}}");
        int received = 0;
        await foreach (var _ in connection.StreamAsync<HubDelta>("Chat", Turn("Tell me everything.", maxTokens: 256, ignoreEos: true), Ct))
            if (++received == 3) break; // leave the stream open...
        await connection.DisposeAsync();   // ...and vanish
        await WaitForIdleAsync();
        Assert.True(await gateway.MetricAsync("xgenmm_request_success_total", $"{{tenant=\"alpha\",finished_reason=\"abort\",model_name=\"{gateway.ModelId}\"}}") > abortsBefore);
    }

    [Fact(Timeout = 120_000)]
    public async Task An_http_client_that_goes_away_mid_stream_frees_the_decode_slot()
    {
        using var http = gateway.Client(GatewayFixture.AlphaKey);
        var body = new JsonObject
        {
            ["model"] = gateway.ModelId,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Go on and on." }),
            ["max_tokens"] = 256,
            ["ignore_eos"] = true,
            ["stream"] = true,
        };
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(body) };
        using (var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct))
        {
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(Ct));
            for (int lines = 0; lines < 6; lines++) await reader.ReadLineAsync(Ct);
            Assert.Equal(1, await gateway.MetricAsync("xgenmm_num_requests_running", "{device=\"cpu\"}"));
        }
        http.CancelPendingRequests();
        http.Dispose();
        await WaitForIdleAsync();
    }

    [Fact(Timeout = 120_000)]
    public async Task A_connection_gets_at_most_its_stream_limit()
    {
        await using var connection = await ConnectAsync();
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var open = new List<IAsyncEnumerator<HubDelta>>();
        for (int i = 0; i < 2; i++)
        {
            var stream = connection.StreamAsync<HubDelta>("Chat", Turn("Long story " + i, maxTokens: 256, ignoreEos: true), cancel.Token).GetAsyncEnumerator(cancel.Token);
            Assert.True(await stream.MoveNextAsync());
            open.Add(stream);
        }
        var e = await Assert.ThrowsAsync<HubException>(async () =>
        {
            await foreach (var _ in connection.StreamAsync<HubDelta>("Chat", Turn("One more"), Ct)) { }
        });
        Assert.Contains("429 too_many_streams", e.Message, StringComparison.Ordinal);
        // As the HTTP API's Retry-After header: a last line the client reads.
        Assert.EndsWith("\nRetry-After: 1", e.Message, StringComparison.Ordinal);
        await cancel.CancelAsync();
        foreach (var stream in open)
        {
            try { await stream.DisposeAsync(); } catch (OperationCanceledException) { }
        }
        await WaitForIdleAsync();
    }

    /// <summary>Waits until the decoder reports no running request (the slot of an abandoned stream is freed).</summary>
    private async Task WaitForIdleAsync()
    {
        for (int i = 0; i < 100; i++)
        {
            if (await gateway.MetricAsync("xgenmm_num_requests_running", "{device=\"cpu\"}") == 0
                && await gateway.MetricAsync("xgenmm_gateway_active_streams", "{protocol=\"signalr\"}") == 0
                && await gateway.MetricAsync("xgenmm_gateway_active_streams", "{protocol=\"http\"}") == 0)
                return;
            await Task.Delay(100, Ct);
        }
        Assert.Fail("The decode slot was not freed within 10 s: xgenmm_num_requests_running stays above 0.");
    }
}
