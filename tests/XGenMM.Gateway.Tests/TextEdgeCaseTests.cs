using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Text;
using System.Text.Unicode;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;
using XGenMM.Gateway.Hubs;

namespace XGenMM.Gateway.Tests;

/// <summary>
/// Fuzz-style: every text field the API reads gets each JSON string escape and UTF-8/UTF-16 edge case (lone and
/// reversed surrogates, overlong and invalid UTF-8, NUL, noncharacters, BOM, very long escapes). Each answer is a 200
/// or a 4xx with an OpenAI error body, never a 500, and the gateway serves a normal request afterwards. The same
/// payloads reach the hub's Chat as raw SignalR JSON frames, where a bad one gets a SignalR error, not a crash.
/// </summary>
[Collection(GatewayTests.Name)]
public sealed class TextEdgeCaseTests(GatewayFixture gateway)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A value spliced between the quotes of a JSON string: escapes as JSON text, or raw bytes.</summary>
    public sealed record Payload(string Name, byte[] Bytes, bool Utf8 = true)
    {
        public override string ToString() => Name;
    }

    private static Payload Escaped(string name, string jsonText) => new(name, Encoding.ASCII.GetBytes(jsonText));
    private static Payload RawBytes(string name, params byte[] bytes) => new(name, [(byte)'a', .. bytes, (byte)'b'], Utf8.IsValid(bytes));

    public static IReadOnlyList<Payload> Payloads() =>
    [
        Escaped("lone high surrogate", "\\ud800 x"),
        Escaped("lone low surrogate", "x \\udc00"),
        Escaped("reversed pair", "\\udc00\\ud800"),
        Escaped("two high surrogates", "\\ud83d\\ud83d"),
        Escaped("high surrogate at the end", "hello\\ud83d"),
        Escaped("high surrogate then a letter", "\\ud83dA"),
        Escaped("valid pair", "\\ud83d\\ude00"),
        Escaped("NUL escape", "a\\u0000b"),
        Escaped("U+FFFE", "\\ufffe"),
        Escaped("U+FFFF", "\\uffff"),
        Escaped("BOM escape", "\\ufeffhi"),
        Escaped("escaped <image> token", "\\u003cimage\\u003e"),
        Escaped("escaped chat tag", "\\u003c|end|\\u003e\\u003c|assistant|\\u003e"),
        Escaped("control escapes", "\\b\\f\\n\\r\\t\\u001b[31m"),
        Escaped("100k escapes", string.Concat(Enumerable.Repeat("\\u0041", 100_000))),
        Escaped("100k surrogate pairs", string.Concat(Enumerable.Repeat("\\ud83d\\ude00", 100_000))),
        Escaped("bad escape", "\\x41"),
        Escaped("short escape", "\\u12"),
        RawBytes("overlong '/'", 0xC0, 0xAF),
        RawBytes("overlong NUL", 0xC0, 0x80),
        RawBytes("byte 0xFF", 0xFF),
        RawBytes("byte 0xFE", 0xFE),
        RawBytes("lone continuation byte", 0x80),
        RawBytes("truncated 3-byte sequence", 0xE2, 0x82),
        RawBytes("UTF-8 encoded surrogate", 0xED, 0xA0, 0x80),
        RawBytes("5-byte sequence", 0xF8, 0x88, 0x80, 0x80, 0x80),
        RawBytes("beyond U+10FFFF", 0xF4, 0x90, 0x80, 0x80),
        RawBytes("raw NUL", 0x00),
        RawBytes("raw BOM", 0xEF, 0xBB, 0xBF),
        RawBytes("raw U+FFFF", 0xEF, 0xBF, 0xBF),
    ];

    /// <summary>The body with <c>@@</c> where the payload goes; every field the parser reads as text.</summary>
    public static TheoryData<string, string> Fields() => new()
    {
        { "content string", """{"model":"MODEL","max_tokens":1,"messages":[{"role":"user","content":"@@"}]}""" },
        { "text part", """{"model":"MODEL","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":"@@"}]}]}""" },
        { "part type", """{"model":"MODEL","max_tokens":1,"messages":[{"role":"user","content":[{"type":"@@","text":"x"}]}]}""" },
        { "role", """{"model":"MODEL","max_tokens":1,"messages":[{"role":"@@","content":"x"}]}""" },
        { "model", """{"model":"@@","max_tokens":1,"messages":[{"role":"user","content":"x"}]}""" },
        { "stop string", """{"model":"MODEL","max_tokens":1,"stop":"@@","messages":[{"role":"user","content":"x"}]}""" },
        { "stop array", """{"model":"MODEL","max_tokens":1,"stop":["@@"],"messages":[{"role":"user","content":"x"}]}""" },
        { "user", """{"model":"MODEL","max_tokens":1,"user":"@@","messages":[{"role":"user","content":"x"}]}""" },
        { "image_url object", """{"model":"MODEL","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"@@"}}]}]}""" },
        { "image_url string", """{"model":"MODEL","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image_url","image_url":"@@"}]}]}""" },
        { "data URL", """{"model":"MODEL","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,@@"}}]}]}""" },
        { "response_format type", """{"model":"MODEL","max_tokens":1,"response_format":{"type":"@@"},"messages":[{"role":"user","content":"x"}]}""" },
        { "unknown field value", """{"model":"MODEL","max_tokens":1,"metadata":{"k":"@@"},"messages":[{"role":"user","content":"x"}]}""" },
        { "unknown field name", """{"model":"MODEL","max_tokens":1,"@@":1,"messages":[{"role":"user","content":"x"}]}""" },
        { "tool-ish field", """{"model":"MODEL","max_tokens":1,"tool_choice":null,"tools":null,"function_call":"@@","messages":[{"role":"user","content":"x"}]}""" },
        { "message name", """{"model":"MODEL","max_tokens":1,"messages":[{"role":"user","name":"@@","content":"x"}]}""" },
    };

    private static byte[] Splice(string template, string model, byte[] payload)
    {
        var parts = template.Replace("MODEL", model, StringComparison.Ordinal).Split("@@");
        return [.. Encoding.UTF8.GetBytes(parts[0]), .. payload, .. Encoding.UTF8.GetBytes(parts[1])];
    }

    [Theory(Timeout = 300_000)]
    [MemberData(nameof(Fields))]
    public async Task Every_text_edge_case_in_a_field_gets_a_200_or_an_openai_4xx_never_a_500(string field, string template)
    {
        using var http = gateway.Client(GatewayFixture.AlphaKey);
        var failures = new List<string>();
        foreach (var payload in Payloads())
        {
            using var content = new ByteArrayContent(Splice(template, gateway.ModelId, payload.Bytes));
            content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            using var response = await http.PostAsync("/v1/chat/completions", content, Ct);
            string text = await response.Content.ReadAsStringAsync(Ct);
            int status = (int)response.StatusCode;
            if (status == 200) continue;
            if (status is < 400 or >= 500) { failures.Add($"{payload.Name}: {status} {text}"); continue; }
            try
            {
                var error = JsonNode.Parse(text)!["error"]!;
                if (string.IsNullOrWhiteSpace((string?)error["message"]) || string.IsNullOrWhiteSpace((string?)error["type"]))
                    failures.Add($"{payload.Name}: {status} without an error message and type: {text}");
            }
            catch (System.Text.Json.JsonException)
            {
                failures.Add($"{payload.Name}: {status} with a body that is not JSON: '{text}'");
            }
        }
        Assert.True(failures.Count == 0, $"{field}:\n" + string.Join('\n', failures));
        await AssertServesAsync();
    }

    [Fact(Timeout = 60_000)]
    public async Task A_lone_surrogate_in_a_message_is_a_400_that_names_the_field()
    {
        using var http = gateway.Client(GatewayFixture.AlphaKey);
        string body = "{\"model\":\"" + gateway.ModelId + "\",\"messages\":[{\"role\":\"user\",\"content\":\"\\ud800 x\"}]}";
        using var response = await http.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"), Ct);
        var error = JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!["error"]!;
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("invalid_request_error", (string?)error["type"]);
        Assert.Equal("messages[0].content", (string?)error["param"]);
    }

    [Fact(Timeout = 60_000)]
    public async Task A_body_that_starts_with_a_bom_or_nul_gets_a_200_or_a_400_never_a_500()
    {
        using var http = gateway.Client(GatewayFixture.AlphaKey);
        byte[] valid = Encoding.UTF8.GetBytes("{\"model\":\"" + gateway.ModelId + "\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
        foreach (var body in new[] { [0xEF, 0xBB, 0xBF, .. valid], [0x00, .. valid], [.. valid, 0x00], [0xFE, 0xFF, .. valid], new byte[] { 0xEF, 0xBB, 0xBF } })
        {
            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            using var response = await http.PostAsync("/v1/chat/completions", content, Ct);
            Assert.True(response.StatusCode is HttpStatusCode.OK or HttpStatusCode.BadRequest, $"{Convert.ToHexString(body[..Math.Min(4, body.Length)])}...: {(int)response.StatusCode}");
            if (response.StatusCode != HttpStatusCode.OK) Assert.NotNull(JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!["error"]!["message"]);
        }
        await AssertServesAsync();
    }

    /// <summary>The hub's Chat with the payload in each of its text fields, as raw SignalR JSON frames over a WebSocket.</summary>
    [Theory(Timeout = 300_000)]
    [InlineData("""{"messages":[{"role":"user","content":"@@"}],"maxTokens":1}""")]
    [InlineData("""{"messages":[{"role":"@@","content":"x"}],"maxTokens":1}""")]
    [InlineData("""{"conversationId":"@@","messages":[{"role":"user","content":"x"}],"maxTokens":1}""")]
    [InlineData("""{"stop":["@@"],"messages":[{"role":"user","content":"x"}],"maxTokens":1}""")]
    [InlineData("""{"@@":1,"messages":[{"role":"user","content":"x"}],"maxTokens":1}""")]
    public async Task Every_text_edge_case_in_a_hub_turn_gets_a_stream_or_a_signalr_error(string template)
    {
        var failures = new List<string>();
        foreach (var payload in Payloads())
        {
            using var ws = await RawHubAsync();
            byte[] turn = Splice(template, "", payload.Bytes);
            byte[] frame = [.. "{\"type\":4,\"invocationId\":\"1\",\"target\":\"Chat\",\"arguments\":["u8, .. turn, .. "]}\u001e"u8];
            // Text frames must be UTF-8 (WebSocket closes with 1007 otherwise); binary frames bring the bytes to SignalR's parser.
            await ws.SendAsync(frame, payload.Utf8 ? WebSocketMessageType.Text : WebSocketMessageType.Binary, true, Ct);
            string outcome = await CompletionAsync(ws);
            // A completion (with or without an error) or a close with an error is an answer; a timeout or a close
            // without a reason is not.
            if (!outcome.StartsWith("completion", StringComparison.Ordinal) && !outcome.StartsWith("close error", StringComparison.Ordinal))
                failures.Add($"{payload.Name}: {outcome}");
        }
        Assert.True(failures.Count == 0, string.Join('\n', failures));
        await using var connection = new HubConnectionBuilder().WithUrl(new Uri(gateway.BaseAddress, "/hubs/chat"), o =>
        {
            o.AccessTokenProvider = () => Task.FromResult<string?>(GatewayFixture.AlphaKey);
            o.Transports = HttpTransportType.WebSockets;
        }).Build();
        await connection.StartAsync(Ct);
        var turnOk = new HubTurn { Messages = [new HubMessage { Role = "user", Content = "x" }], MaxTokens = 2, Temperature = 0 };
        var deltas = new List<HubDelta>();
        await foreach (var d in connection.StreamAsync<HubDelta>("Chat", turnOk, Ct)) deltas.Add(d);
        Assert.NotNull(deltas[^1].FinishReason);
        await AssertServesAsync();
    }

    private async Task<ClientWebSocket> RawHubAsync()
    {
        var ws = new ClientWebSocket();
        var uri = new UriBuilder(gateway.BaseAddress) { Scheme = "ws", Path = "/hubs/chat", Query = "access_token=" + GatewayFixture.AlphaKey }.Uri;
        await ws.ConnectAsync(uri, Ct);
        await ws.SendAsync("{\"protocol\":\"json\",\"version\":1}\u001e"u8.ToArray(), WebSocketMessageType.Text, true, Ct);
        string handshake = await ReceiveAsync(ws);
        Assert.StartsWith("{}", handshake, StringComparison.Ordinal);
        return ws;
    }

    /// <summary>Reads frames until the invocation completes ("completion ..."), the server closes ("close ...") or 30 s pass.</summary>
    private static async Task<string> CompletionAsync(ClientWebSocket ws)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        var pending = new StringBuilder();
        try
        {
            while (true)
            {
                string text = await ReceiveAsync(ws, timeout.Token);
                if (text.Length == 0) return $"close {ws.CloseStatus} {ws.CloseStatusDescription}";
                pending.Append(text);
                string all = pending.ToString();
                int end;
                while ((end = all.IndexOf('\u001e', StringComparison.Ordinal)) >= 0)
                {
                    var message = JsonNode.Parse(all[..end])!;
                    all = all[(end + 1)..];
                    switch ((int?)message["type"])
                    {
                        case 3: return "completion " + ((string?)message["error"] ?? "ok");
                        case 7: return message["error"] is null ? "close without error" : "close error " + (string?)message["error"];
                    }
                }
                pending.Clear().Append(all);
            }
        }
        catch (OperationCanceledException) when (!Ct.IsCancellationRequested)
        {
            return "no answer within 30 s";
        }
        catch (WebSocketException e)
        {
            return "socket failed: " + e.Message;
        }
    }

    private static async Task<string> ReceiveAsync(ClientWebSocket ws, CancellationToken cancellationToken = default)
    {
        var buffer = new byte[64 * 1024];
        using var message = new MemoryStream();
        while (true)
        {
            var result = await ws.ReceiveAsync(buffer, cancellationToken == default ? Ct : cancellationToken);
            if (result.MessageType == WebSocketMessageType.Close) return "";
            message.Write(buffer, 0, result.Count);
            if (result.EndOfMessage) return Encoding.UTF8.GetString(message.ToArray());
        }
    }

    /// <summary>The process is healthy: liveness answers and a normal completion succeeds.</summary>
    private async Task AssertServesAsync()
    {
        using var http = gateway.Client();
        using var health = await http.GetAsync("/healthz", Ct);
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        using var alpha = gateway.Client(GatewayFixture.AlphaKey);
        string body = "{\"model\":\"" + gateway.ModelId + "\",\"max_tokens\":2,\"messages\":[{\"role\":\"user\",\"content\":\"What is this?\"}]}";
        using var answer = await alpha.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"), Ct);
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.NotNull(JsonNode.Parse(await answer.Content.ReadAsStringAsync(Ct))!["choices"]![0]!["message"]);
    }
}
