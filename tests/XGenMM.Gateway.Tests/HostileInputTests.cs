using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using SkiaSharp;

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

    private static byte[] PngBytes(int w, int h) => TestImages.Png(w, h, SKColors.Blue);

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
            C("logprobs", Body(Set("logprobs", true)), Bad, "unsupported_parameter"),
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
    public void The_suite_has_at_least_forty_cases() => Assert.True(Cases().Count >= 40, $"{Cases().Count} cases");

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
