using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using SkiaSharp;
using XGenMM.Gateway.Hubs;

namespace XGenMM.Gateway.Tests;

/// <summary>
/// Requests that are malformed, oversized, unauthorised or hostile: each gets its documented status and an OpenAI error
/// body, and the gateway keeps serving everyone else while they arrive.
/// </summary>
[Collection(GatewayTests.Name)]
public sealed class HostileInputTests(GatewayFixture gateway)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>One hostile request: what is sent, the status it must get and the error code or type in its body.</summary>
    public sealed record HostileCase(string Name, Func<string, HttpRequestMessage> Request, HttpStatusCode Status, string Code)
    {
        public override string ToString() => Name;
    }

    private static readonly string Png = TestImages.DataUrl(TestImages.Png(64, 48, SKColors.Red));

    private static HttpRequestMessage Post(string json, string? key = GatewayFixture.AlphaKey, string path = "/v1/chat/completions") =>
        Raw(Encoding.UTF8.GetBytes(json), key, path);

    private static HttpRequestMessage Raw(byte[] body, string? key = GatewayFixture.AlphaKey, string path = "/v1/chat/completions")
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return request;
    }

    /// <summary>A valid body with the model filled in and <paramref name="patch"/> applied to it.</summary>
    private static Func<string, HttpRequestMessage> Body(Action<JsonObject> patch, string? key = GatewayFixture.AlphaKey) => model =>
    {
        var body = new JsonObject
        {
            ["model"] = model,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "What is this?" }),
            ["max_tokens"] = 4,
        };
        patch(body);
        return Post(body.ToJsonString(), key);
    };

    private static JsonObject UserParts(params JsonNode[] parts) => new() { ["role"] = "user", ["content"] = new JsonArray(parts) };
    private static JsonObject ImagePart(string url) => new() { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = url } };
    private static JsonObject TextPart(string text) => new() { ["type"] = "text", ["text"] = text };
    private static Action<JsonObject> Messages(params JsonNode[] messages) => b => b["messages"] = new JsonArray(messages);
    private static Action<JsonObject> Set(string name, JsonNode? value) => b => b[name] = value;

    private static string HugePromptBody(string model) => new JsonObject
    {
        ["model"] = model,
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = string.Join(' ', Enumerable.Repeat("banana", 150_000)) }),
    }.ToJsonString();

    private static byte[] PngBytes(int w, int h) => TestImages.Png(w, h, SKColors.Blue);

    private static HttpRequestMessage Get(string path) =>
        new(HttpMethod.Get, path) { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", GatewayFixture.AlphaKey) } };

    public static TheoryData<HostileCase> Cases()
    {
        const HttpStatusCode Bad = HttpStatusCode.BadRequest;
        var truncated = TestImages.Png(300, 300, SKColors.Green);
        truncated = truncated[..(truncated.Length / 2)];
        var random = new byte[4096];
        new Random(7).NextBytes(random);
        var oversized = new byte[(2 << 20) + 10];
        new Random(8).NextBytes(oversized);
        Array.Copy(PngBytes(4, 4), oversized, 40);
        var invalidUtf8 = Encoding.UTF8.GetBytes("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\u0001X\"}]}");
        invalidUtf8[Array.IndexOf(invalidUtf8, (byte)1)] = 0xC3; // a lead byte followed by 'X': not UTF-8
        string deep = new string('[', 100) + new string(']', 100);
        string longPrompt = string.Join(' ', Enumerable.Repeat("banana", 2200));

        HostileCase C(string name, Func<string, HttpRequestMessage> request, HttpStatusCode status, string code) => new(name, request, status, code);
        return new TheoryData<HostileCase>(
        [
            // Malformed bodies
            C("truncated JSON", _ => Post("{\"model\":"), Bad, "invalid_json"),
            C("JSON array body", _ => Post("[1,2,3]"), Bad, "invalid_json"),
            C("empty body", _ => Raw([]), Bad, "invalid_json"),
            C("invalid UTF-8", _ => Raw(invalidUtf8), Bad, "invalid_json"),
            C("nesting 100 deep", _ => Post("{\"model\":\"m\",\"x\":" + deep + "}"), Bad, "invalid_json"),
            C("trailing garbage", m => Post("{\"model\":\"" + m + "\",\"messages\":[]} xyz"), Bad, "invalid_json"),
            // Wrong shapes and types
            C("messages missing", Body(b => b.Remove("messages")), Bad, "invalid_request_error"),
            C("messages is a string", Body(Set("messages", "hello")), Bad, "invalid_type"),
            C("messages empty", Body(Set("messages", new JsonArray())), Bad, "invalid_request_error"),
            C("message is a number", Body(Set("messages", new JsonArray(42))), Bad, "invalid_type"),
            C("unknown role", Body(Messages(new JsonObject { ["role"] = "wizard", ["content"] = "hi" })), Bad, "invalid_request_error"),
            C("role is a number", Body(Messages(new JsonObject { ["role"] = 1, ["content"] = "hi" })), Bad, "invalid_type"),
            C("content is a number", Body(Messages(new JsonObject { ["role"] = "user", ["content"] = 3.5 })), Bad, "invalid_type"),
            C("unknown content part", Body(Messages(UserParts(new JsonObject { ["type"] = "audio_url", ["audio_url"] = "x" }))), Bad, "invalid_request_error"),
            C("text part without text", Body(Messages(UserParts(new JsonObject { ["type"] = "text" }))), Bad, "invalid_request_error"),
            C("image_url is a number", Body(Messages(UserParts(new JsonObject { ["type"] = "image_url", ["image_url"] = 5 }))), Bad, "invalid_type"),
            C("model missing", Body(b => b.Remove("model")), Bad, "invalid_request_error"),
            C("unknown model", Body(Set("model", "gpt-4o")), HttpStatusCode.NotFound, "model_not_found"),
            C("literal <image> in text", Body(Messages(new JsonObject { ["role"] = "user", ["content"] = "look <image> here" })), Bad, "invalid_request_error"),
            C("image in an assistant message", Body(Messages(new JsonObject { ["role"] = "assistant", ["content"] = new JsonArray(ImagePart(Png)) },
                new JsonObject { ["role"] = "user", ["content"] = "and?" })), Bad, "invalid_request_error"),
            // Parameters out of range
            C("max_tokens 0", Body(Set("max_tokens", 0)), Bad, "invalid_request_error"),
            C("max_tokens absurd", Body(Set("max_tokens", 1_000_000_000_000L)), Bad, "invalid_request_error"),
            C("max_tokens negative", Body(Set("max_completion_tokens", -5)), Bad, "invalid_request_error"),
            C("max_tokens is a string", Body(Set("max_tokens", "10")), Bad, "invalid_type"),
            C("max_tokens is fractional", Body(Set("max_tokens", 1.5)), Bad, "invalid_type"),
            C("temperature negative", Body(Set("temperature", -1)), Bad, "invalid_request_error"),
            C("temperature 3", Body(Set("temperature", 3.0)), Bad, "invalid_request_error"),
            C("temperature is a string", Body(Set("temperature", "hot")), Bad, "invalid_type"),
            C("top_p 0", Body(Set("top_p", 0)), Bad, "invalid_request_error"),
            C("top_p 1.5", Body(Set("top_p", 1.5)), Bad, "invalid_request_error"),
            C("n = 5 (limit 4)", Body(Set("n", 5)), Bad, "too_many_choices"),
            C("n = 0", Body(Set("n", 0)), Bad, "invalid_request_error"),
            C("seed is a string", Body(Set("seed", "abc")), Bad, "invalid_type"),
            C("seed beyond int64", m => Post("{\"model\":\"" + m + "\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"seed\":1e30}"), Bad, "invalid_type"),
            C("five stop sequences", Body(Set("stop", new JsonArray("a", "b", "c", "d", "e"))), Bad, "invalid_request_error"),
            C("stop is a number", Body(Set("stop", 7)), Bad, "invalid_type"),
            C("empty stop sequence", Body(Set("stop", "")), Bad, "invalid_request_error"),
            C("stream_options without stream", Body(Set("stream_options", new JsonObject { ["include_usage"] = true })), Bad, "invalid_request_error"),
            C("tools", Body(Set("tools", new JsonArray(new JsonObject { ["type"] = "function" }))), Bad, "unsupported_parameter"),
            C("top_logprobs 21", Body(b => { b["logprobs"] = true; b["top_logprobs"] = 21; }), Bad, "invalid_request_error"),
            C("top_logprobs without logprobs", Body(Set("top_logprobs", 2)), Bad, "invalid_request_error"),
            C("response_format json", Body(Set("response_format", new JsonObject { ["type"] = "json_object" })), Bad, "unsupported_parameter"),
            C("prompt beyond the limit", Body(Messages(new JsonObject { ["role"] = "user", ["content"] = longPrompt })), Bad, "context_length_exceeded"),
            C("65 messages", Body(b => b["messages"] = new JsonArray(Enumerable.Range(0, 65).Select(_ => (JsonNode)new JsonObject { ["role"] = "user", ["content"] = "x" }).ToArray())), Bad, "too_many_messages"),
            // Images
            C("image URL with ftp scheme", Body(Messages(UserParts(ImagePart("ftp://example.com/a.png")))), Bad, "invalid_image_url"),
            C("data URL without base64", Body(Messages(UserParts(ImagePart("data:image/png,abcd")))), Bad, "invalid_image_url"),
            C("data URL with broken base64", Body(Messages(UserParts(ImagePart("data:image/png;base64,@@@@")))), Bad, "invalid_image_url"),
            C("data URL of text/plain", Body(Messages(UserParts(ImagePart("data:text/plain;base64,aGVsbG8=")))), Bad, "invalid_image_url"),
            C("random bytes as image", Body(Messages(UserParts(ImagePart(TestImages.DataUrl(random)), TextPart("what?")))), Bad, "invalid_image"),
            C("truncated PNG", Body(Messages(UserParts(ImagePart(TestImages.DataUrl(truncated)), TextPart("what?")))), Bad, "invalid_image"),
            C("image over the byte limit", Body(Messages(UserParts(ImagePart(TestImages.DataUrl(oversized)), TextPart("what?")))), HttpStatusCode.RequestEntityTooLarge, "image_too_large"),
            C("decompression bomb 2100x2100", Body(Messages(UserParts(ImagePart(TestImages.DataUrl(PngBytes(2100, 2100))), TextPart("what?")))), HttpStatusCode.RequestEntityTooLarge, "image_too_large"),
            C("image 9000 pixels wide", Body(Messages(UserParts(ImagePart(TestImages.DataUrl(PngBytes(9000, 4))), TextPart("what?")))), HttpStatusCode.RequestEntityTooLarge, "image_too_large"),
            C("four images (limit 3)", Body(Messages(UserParts(ImagePart(Png), ImagePart(Png), ImagePart(Png), ImagePart(Png), TextPart("what?")))), Bad, "too_many_images"),
            C("two images for a one-image tenant", Body(Messages(UserParts(ImagePart(Png), ImagePart(Png), TextPart("what?"))), GatewayFixture.SoloKey), Bad, "too_many_images"),
            // Remote images: the address guard
            C("SSRF loopback", Body(Messages(UserParts(ImagePart("http://127.0.0.1:1/a.png"), TextPart("x")))), HttpStatusCode.Forbidden, "image_url_forbidden"),
            C("SSRF localhost name", Body(Messages(UserParts(ImagePart("http://localhost/a.png"), TextPart("x")))), HttpStatusCode.Forbidden, "image_url_forbidden"),
            C("SSRF cloud metadata", Body(Messages(UserParts(ImagePart("http://169.254.169.254/latest/meta-data/"), TextPart("x")))), HttpStatusCode.Forbidden, "image_url_forbidden"),
            C("SSRF private 10/8", Body(Messages(UserParts(ImagePart("http://10.1.2.3/a.png"), TextPart("x")))), HttpStatusCode.Forbidden, "image_url_forbidden"),
            C("SSRF IPv6 loopback", Body(Messages(UserParts(ImagePart("http://[::1]/a.png"), TextPart("x")))), HttpStatusCode.Forbidden, "image_url_forbidden"),
            C("SSRF IPv4-mapped IPv6", Body(Messages(UserParts(ImagePart("http://[::ffff:127.0.0.1]/a.png"), TextPart("x")))), HttpStatusCode.Forbidden, "image_url_forbidden"),
            C("SSRF unspecified 0.0.0.0", Body(Messages(UserParts(ImagePart("http://0.0.0.0/a.png"), TextPart("x")))), HttpStatusCode.Forbidden, "image_url_forbidden"),
            C("credentials in image URL", Body(Messages(UserParts(ImagePart("http://user:pw@example.com/a.png"), TextPart("x")))), Bad, "invalid_image_url"),
            // Sizes
            C("body over the limit (Content-Length)", _ =>
            {
                // As careful clients send big bodies: the 413 comes before the body is sent.
                var request = Raw(new byte[(4 << 20) + 100]);
                request.Headers.ExpectContinue = true;
                return request;
            }, HttpStatusCode.RequestEntityTooLarge, "request_too_large"),
            C("body over the limit (chunked)", _ =>
            {
                var request = Raw([]);
                request.Content = new StreamContent(new MemoryStream(new byte[(4 << 20) + 100]));
                request.Headers.TransferEncodingChunked = true;
                return request;
            }, HttpStatusCode.RequestEntityTooLarge, "request_too_large"),
            // Legal sizes far past the body buffer's first 16 KB: read whole (as the buffer grows) and parsed, so the
            // answer is about the prompt, not the JSON.
            C("1 MB prompt (Content-Length)", m => Post(HugePromptBody(m)), Bad, "context_length_exceeded"),
            C("1 MB prompt (chunked)", m =>
            {
                var request = Raw([]);
                request.Content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(HugePromptBody(m))));
                request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
                request.Headers.TransferEncodingChunked = true;
                return request;
            }, Bad, "context_length_exceeded"),
            // Keys
            C("no API key", Body(_ => { }, key: null), HttpStatusCode.Unauthorized, "missing_api_key"),
            C("wrong API key", Body(_ => { }, key: "sk-not-a-key"), HttpStatusCode.Unauthorized, "invalid_api_key"),
            C("empty bearer", _ => { var r = Post("{}", null); r.Headers.TryAddWithoutValidation("Authorization", "Bearer "); return r; }, HttpStatusCode.Unauthorized, "invalid_api_key"),
            C("4 KB key", Body(_ => { }, key: new string('k', 4096)), HttpStatusCode.Unauthorized, "invalid_api_key"),
            C("models without a key", _ => new HttpRequestMessage(HttpMethod.Get, "/v1/models"), HttpStatusCode.Unauthorized, "missing_api_key"),
            // Routes and query values
            C("unknown endpoint", _ => new HttpRequestMessage(HttpMethod.Get, "/v1/embeddings") { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", GatewayFixture.AlphaKey) } },
                HttpStatusCode.NotFound, "unknown_url"),
            C("usage for 0 days", _ => new HttpRequestMessage(HttpMethod.Get, "/v1/usage?days=0") { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", GatewayFixture.AlphaKey) } },
                Bad, "invalid_request_error"),
            C("usage for 367 days", _ => Get("/v1/usage?days=367"), Bad, "invalid_request_error"),
            C("usage for -1 days", _ => Get("/v1/usage?days=-1"), Bad, "invalid_request_error"),
            C("usage days not a number", _ => Get("/v1/usage?days=abc"), Bad, "invalid_request_error"),
            C("usage days beyond int", _ => Get("/v1/usage?days=99999999999999999999"), Bad, "invalid_request_error"),
            C("unknown model id", _ => Get("/v1/models/gpt-4o"), HttpStatusCode.NotFound, "model_not_found"),
            C("4 KB model id", _ => Get("/v1/models/" + new string('m', 4096)), HttpStatusCode.NotFound, "model_not_found"),
            C("4 KB unknown path", _ => Get("/v1/" + new string('p', 4096)), HttpStatusCode.NotFound, "unknown_url"),
            C("encoded dot-dot slash path", _ => Get("/v1/%2e%2e%2fmetrics"), HttpStatusCode.NotFound, "unknown_url"),
            C("GET on chat completions", _ => Get("/v1/chat/completions"), HttpStatusCode.NotFound, "unknown_url"),
            C("DELETE on models", _ => new HttpRequestMessage(HttpMethod.Delete, "/v1/models") { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", GatewayFixture.AlphaKey) } },
                HttpStatusCode.NotFound, "unknown_url"),
            // Header injection and odd credentials in every header the gateway reads
            C("Basic credentials", _ => { var r = Post("{}", null); r.Headers.TryAddWithoutValidation("Authorization", "Basic YWxwaGE6a2V5"); return r; }, HttpStatusCode.Unauthorized, "invalid_api_key"),
            C("bearer with trailing junk", _ => { var r = Post("{}", null); r.Headers.TryAddWithoutValidation("Authorization", "Bearer " + GatewayFixture.AlphaKey + " extra"); return r; }, HttpStatusCode.Unauthorized, "invalid_api_key"),
            C("two Authorization headers", _ => { var r = Post("{}", null); r.Headers.TryAddWithoutValidation("Authorization", ["Bearer sk-nope", "Bearer " + GatewayFixture.AlphaKey]); return r; }, HttpStatusCode.Unauthorized, "invalid_api_key"),
            C("64 KB Authorization header", _ => { var r = Post("{}", null); r.Headers.TryAddWithoutValidation("Authorization", "Bearer " + new string('k', 16 * 1024)); return r; }, HttpStatusCode.Unauthorized, "invalid_api_key"),
            C("key as access_token on /v1", _ => new HttpRequestMessage(HttpMethod.Get, "/v1/models?access_token=" + GatewayFixture.AlphaKey), HttpStatusCode.Unauthorized, "invalid_api_key"),
            C("hub negotiate without a key", _ => new HttpRequestMessage(HttpMethod.Post, "/hubs/chat/negotiate?negotiateVersion=1"), HttpStatusCode.Unauthorized, "missing_api_key"),
            C("hub negotiate with a wrong access_token", _ => new HttpRequestMessage(HttpMethod.Post, "/hubs/chat/negotiate?negotiateVersion=1&access_token=sk-nope"), HttpStatusCode.Unauthorized, "invalid_api_key"),
            C("hub negotiate with two access_tokens", _ => new HttpRequestMessage(HttpMethod.Post, "/hubs/chat/negotiate?access_token=sk-nope&access_token=" + GatewayFixture.AlphaKey),
                HttpStatusCode.Unauthorized, "invalid_api_key"),
            C("X-Conversation-Id of 64 KB with a bad body", _ => { var r = Post("{\"model\":1}"); r.Headers.TryAddWithoutValidation("X-Conversation-Id", new string('c', 16 * 1024)); return r; }, Bad, "invalid_type"),
            C("Content-Type text/plain with a bad body", _ => { var r = Post("{\"model\":1}"); r.Content!.Headers.ContentType = new MediaTypeHeaderValue("text/plain"); return r; }, Bad, "invalid_type"),
            // Bodies of every JSON kind but an object, and JSON extensions
            C("body is a string", _ => Post("\"hello\""), Bad, "invalid_json"),
            C("body is null", _ => Post("null"), Bad, "invalid_json"),
            C("body is a number", _ => Post("42"), Bad, "invalid_json"),
            C("comment in JSON", m => Post("{/* hi */\"model\":\"" + m + "\"}"), Bad, "invalid_json"),
            C("trailing comma", m => Post("{\"model\":\"" + m + "\",}"), Bad, "invalid_json"),
            C("single quotes", _ => Post("{'model':'m'}"), Bad, "invalid_json"),
            C("NaN literal", m => Post("{\"model\":\"" + m + "\",\"temperature\":NaN}"), Bad, "invalid_json"),
            C("UTF-16 body", m => Raw(Encoding.Unicode.GetBytes("{\"model\":\"" + m + "\"}")), Bad, "invalid_json"),
            C("nesting 33 deep in an unknown field", m => Post("{\"model\":\"" + m + "\",\"x\":" + new string('[', 33) + new string(']', 33) + "}"), Bad, "invalid_json"),
            C("lone surrogate in content", m => Post("{\"model\":\"" + m + "\",\"messages\":[{\"role\":\"user\",\"content\":\"\\ud800 x\"}]}"), Bad, "invalid_string"),
            C("reversed surrogates in role", m => Post("{\"model\":\"" + m + "\",\"messages\":[{\"role\":\"\\udc00\\ud800\",\"content\":\"x\"}]}"), Bad, "invalid_string"),
            C("lone surrogate in model", _ => Post("{\"model\":\"\\udfff\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}"), Bad, "invalid_string"),
            C("lone surrogate in a property name", m => Post("{\"model\":\"" + m + "\",\"\\ud800\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}"), Bad, "invalid_json"),
            // Wrong shapes, second round
            C("messages of nulls", Body(Set("messages", new JsonArray(null, null))), Bad, "invalid_type"),
            C("message without role", Body(Messages(new JsonObject { ["content"] = "hi" })), Bad, "invalid_request_error"),
            C("user content null", Body(Messages(new JsonObject { ["role"] = "user", ["content"] = null })), Bad, "invalid_type"),
            C("content part is a string", Body(Messages(new JsonObject { ["role"] = "user", ["content"] = new JsonArray("hi") })), Bad, "invalid_type"),
            C("image_url without url", Body(Messages(UserParts(new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject() }))), Bad, "invalid_request_error"),
            C("image_url url is a number", Body(Messages(UserParts(new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = 7 } }))), Bad, "invalid_type"),
            C("empty data URL", Body(Messages(UserParts(ImagePart("data:image/png;base64,"), TextPart("what?")))), Bad, "invalid_image"),
            C("stream is a string", Body(Set("stream", "yes")), Bad, "invalid_type"),
            C("include_usage is a string", Body(b => { b["stream"] = true; b["stream_options"] = new JsonObject { ["include_usage"] = "yes" }; }), Bad, "invalid_type"),
            C("stream_options is a string", Body(b => { b["stream"] = true; b["stream_options"] = "yes"; }), Bad, "invalid_type"),
            C("temperature 1e400", m => Post("{\"model\":\"" + m + "\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":1e400}"), Bad, "invalid_type"),
            C("presence_penalty 3", Body(Set("presence_penalty", 3)), Bad, "invalid_request_error"),
            C("frequency_penalty is a string", Body(Set("frequency_penalty", "high")), Bad, "invalid_type"),
            C("max_tokens one over the limit", Body(Set("max_tokens", 257)), Bad, "invalid_request_error"),
            C("stop sequence of 65 characters", Body(Set("stop", new string('s', 65))), Bad, "invalid_request_error"),
            C("stop array with a number", Body(Set("stop", new JsonArray("a", 1))), Bad, "invalid_type"),
            C("user is a number", Body(Set("user", 5)), Bad, "invalid_type"),
            C("functions", Body(Set("functions", new JsonArray(new JsonObject { ["name"] = "f" }))), Bad, "unsupported_parameter"),
            C("tool_choice", Body(Set("tool_choice", "auto")), Bad, "unsupported_parameter"),
            C("function_call", Body(Set("function_call", "auto")), Bad, "unsupported_parameter"),
            C("audio", Body(Set("audio", new JsonObject { ["voice"] = "x" })), Bad, "unsupported_parameter"),
            C("response_format is a string", Body(Set("response_format", "json")), Bad, "invalid_type"),
            C("response_format without type", Body(Set("response_format", new JsonObject())), Bad, "invalid_request_error"),
            // Huge but legal bodies (under the 4 MB limit)
            C("3.9 MB of whitespace around a body without a model", _ => Post(new string(' ', 3_900_000) + "{\"messages\":[]}"), Bad, "invalid_request_error"),
            C("3.9 MB prompt", Body(Messages(new JsonObject { ["role"] = "user", ["content"] = new string('a', 3_900_000) })), Bad, "context_length_exceeded"),
            C("3.9 MB model name", Body(Set("model", new string('m', 3_900_000))), HttpStatusCode.NotFound, "model_not_found"),
            C("3.9 MB role", Body(Messages(new JsonObject { ["role"] = new string('r', 3_900_000), ["content"] = "x" })), Bad, "invalid_request_error"),
            C("3.9 MB part type", Body(Messages(UserParts(new JsonObject { ["type"] = new string('t', 3_900_000) }))), Bad, "invalid_request_error"),
            C("5000 content parts", Body(Messages(new JsonObject { ["role"] = "user", ["content"] = new JsonArray(Enumerable.Range(0, 5000).Select(_ => (JsonNode)TextPart("xy z")).ToArray()) })),
                Bad, "context_length_exceeded"),
            C("64 messages of 60 KB", Body(b => b["messages"] = new JsonArray(Enumerable.Range(0, 64).Select(_ => (JsonNode)new JsonObject { ["role"] = "user", ["content"] = new string('q', 60_000) }).ToArray())),
                Bad, "context_length_exceeded"),
        ]);
    }

    [Theory(Timeout = 60_000)]
    [MemberData(nameof(Cases))]
    public async Task A_hostile_request_gets_its_status_and_an_openai_error(HostileCase hostile)
    {
        using var http = gateway.Client();
        using var request = hostile.Request(gateway.ModelId);
        using var response = await http.SendAsync(request, Ct);
        string text = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(hostile.Status == response.StatusCode, $"{hostile.Name}: expected {(int)hostile.Status}, got {(int)response.StatusCode} {text}");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var error = JsonNode.Parse(text)!["error"]!;
        Assert.False(string.IsNullOrWhiteSpace((string?)error["message"]));
        Assert.Contains(hostile.Code, new[] { (string?)error["code"], (string?)error["type"] });
        using var health = await http.GetAsync("/healthz", Ct);
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    [Fact]
    public void The_suite_has_at_least_a_hundred_cases() => Assert.True(Cases().Count + HubCases().Count >= 100, $"{Cases().Count} HTTP and {HubCases().Count} hub cases");

    /// <summary>One hostile hub turn: the hub error must carry its status and code.</summary>
    public sealed record HubCase(string Name, Func<HubTurn?> Turn, string Expected)
    {
        public override string ToString() => Name;
    }

    private static HubTurn HubAsk(Action<HubTurn> patch)
    {
        var turn = new HubTurn { Messages = [new HubMessage { Role = "user", Content = "What is this?" }], MaxTokens = 4, Temperature = 0 };
        patch(turn);
        return turn;
    }

    public static TheoryData<HubCase> HubCases()
    {
        var random = new byte[4096];
        new Random(9).NextBytes(random);
        var png = TestImages.Png(64, 48, SKColors.Red);
        HubCase H(string name, Func<HubTurn?> turn, string expected) => new(name, turn, expected);
        return new TheoryData<HubCase>(
        [
            H("null turn", () => null, "400 invalid_request_error"),
            H("messages null", () => HubAsk(t => t.Messages = null), "400 invalid_request_error"),
            H("messages empty", () => HubAsk(t => t.Messages = []), "400 invalid_request_error"),
            H("65 messages", () => HubAsk(t => t.Messages = [.. Enumerable.Range(0, 65).Select(_ => new HubMessage { Role = "user", Content = "x" })]), "400 too_many_messages"),
            H("null message", () => HubAsk(t => t.Messages = [null!]), "400 invalid_request_error"),
            H("unknown role", () => HubAsk(t => t.Messages![0].Role = "wizard"), "400 invalid_request_error"),
            H("role null", () => HubAsk(t => t.Messages![0].Role = null), "400 invalid_request_error"),
            H("role developer", () => HubAsk(t => t.Messages![0].Role = "developer"), "400 invalid_request_error"),
            H("maxTokens 0", () => HubAsk(t => t.MaxTokens = 0), "400 invalid_request_error"),
            H("maxTokens over the limit", () => HubAsk(t => t.MaxTokens = 100_000), "400 invalid_request_error"),
            H("temperature negative", () => HubAsk(t => t.Temperature = -1), "400 invalid_request_error"),
            H("temperature 3", () => HubAsk(t => t.Temperature = 3), "400 invalid_request_error"),
            H("topP 0", () => HubAsk(t => t.TopP = 0), "400 invalid_request_error"),
            H("topP 2", () => HubAsk(t => t.TopP = 2), "400 invalid_request_error"),
            H("five stop sequences", () => HubAsk(t => t.Stop = ["a", "b", "c", "d", "e"]), "400 invalid_request_error"),
            H("empty stop sequence", () => HubAsk(t => t.Stop = [""]), "400 invalid_request_error"),
            H("null stop sequence", () => HubAsk(t => t.Stop = [null!]), "400 invalid_request_error"),
            H("stop sequence of 65 characters", () => HubAsk(t => t.Stop = [new string('s', 65)]), "400 invalid_request_error"),
            H("conversationId of 129 characters", () => HubAsk(t => t.ConversationId = new string('c', 129)), "400 invalid_request_error"),
            H("literal <image> in content", () => HubAsk(t => t.Messages![0].Content = "look <image> here"), "400 invalid_request_error"),
            H("four images (limit 3)", () => HubAsk(t => t.Messages![0].Images = [png, png, png, png]), "400 too_many_images"),
            H("null image", () => HubAsk(t => t.Messages![0].Images = [null!]), "400 invalid_request_error"),
            H("random bytes as image", () => HubAsk(t => t.Messages![0].Images = [random]), "400 invalid_image"),
            H("empty image", () => HubAsk(t => t.Messages![0].Images = [[]]), "400 invalid_image"),
            H("image in an assistant message", () => HubAsk(t => t.Messages = [new HubMessage { Role = "assistant", Content = "x", Images = [png] }, new HubMessage { Role = "user", Content = "and?" }]),
                "400 invalid_request_error"),
            H("3.9 MB prompt", () => HubAsk(t => t.Messages![0].Content = new string('a', 3_900_000)), "400 context_length_exceeded"),
            H("64 messages of 60 KB", () => HubAsk(t => t.Messages = [.. Enumerable.Range(0, 64).Select(_ => new HubMessage { Role = "user", Content = new string('q', 60_000) })]), "400 context_length_exceeded"),
        ]);
    }

    [Theory(Timeout = 60_000)]
    [MemberData(nameof(HubCases))]
    public async Task A_hostile_hub_turn_gets_its_status_and_the_connection_keeps_serving(HubCase hostile)
    {
        await using var connection = new HubConnectionBuilder().WithUrl(new Uri(gateway.BaseAddress, "/hubs/chat"), o =>
        {
            o.AccessTokenProvider = () => Task.FromResult<string?>(GatewayFixture.AlphaKey);
            o.Transports = HttpTransportType.WebSockets;
        }).Build();
        await connection.StartAsync(Ct);
        var error = await Assert.ThrowsAsync<HubException>(async () => { await foreach (var _ in connection.StreamAsync<HubDelta>("Chat", hostile.Turn(), Ct)) { } });
        // The client wraps the hub's "STATUS code: message" in its own sentence.
        Assert.True(error.Message.Contains("HubException: " + hostile.Expected + ":", StringComparison.Ordinal), $"{hostile.Name}: {error.Message}");
        // The same connection serves a normal turn afterwards, and the process is healthy.
        var deltas = new List<HubDelta>();
        await foreach (var d in connection.StreamAsync<HubDelta>("Chat", HubAsk(t => t.MaxTokens = 1), Ct)) deltas.Add(d);
        Assert.NotNull(deltas[^1].FinishReason);
        using var http = gateway.Client();
        using var health = await http.GetAsync("/healthz", Ct);
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    [Fact(Timeout = 180_000)]
    public async Task A_storm_of_hostile_requests_does_not_disturb_another_tenants_stream()
    {
        using var beta = gateway.Client(GatewayFixture.BetaKey);
        var question = new JsonObject
        {
            ["model"] = gateway.ModelId,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = new JsonArray(ImagePart(TestImages.DataUrl(TestImages.Photo, "image/jpeg")), TextPart("Describe it.")) }),
            ["max_tokens"] = 48,
            ["temperature"] = 0,
            ["ignore_eos"] = true,
        };
        using var quiet = await beta.PostAsJsonAsync("/v1/chat/completions", question, Ct);
        string expected = (string)JsonNode.Parse(await quiet.Content.ReadAsStringAsync(Ct))!["choices"]![0]!["message"]!["content"]!;

        var during = beta.PostAsJsonAsync("/v1/chat/completions", question, Ct);
        using var http = gateway.Client();
        var storm = Cases().Select(c => c.Data).Select(async c =>
        {
            using var request = c.Request(gateway.ModelId);
            using var response = await http.SendAsync(request, Ct);
            return (c, response.StatusCode);
        }).ToList();
        var results = await Task.WhenAll(storm);
        Assert.All(results, r => Assert.Equal(r.c.Status, r.StatusCode));
        using var answer = await during;
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        var json = JsonNode.Parse(await answer.Content.ReadAsStringAsync(Ct))!;
        Assert.Equal(expected, (string?)json["choices"]![0]!["message"]!["content"]);
        Assert.Equal(48, (int)json["usage"]!["completion_tokens"]!);
    }
}
