using System.Buffers;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace XGenMM.LoadTest.Clients;

/// <summary>
/// <c>POST /v1/chat/completions</c> with <c>stream: true</c> and <c>stream_options.include_usage</c>, read as
/// server-sent events the way vLLM's benchmark client reads them: TTFT at the first chunk with non-empty content,
/// one ITL sample per later non-empty chunk, token counts from the final usage chunk.
/// </summary>
public sealed class OpenAiStreamClient : ITurnClient
{
    private readonly HttpClient _http;
    private readonly string _model;

    public OpenAiStreamClient(Uri baseAddress, string model)
    {
        var handler = new SocketsHttpHandler
        {
            MaxConnectionsPerServer = int.MaxValue,
            PooledConnectionLifetime = TimeSpan.FromMinutes(10),
            AutomaticDecompression = DecompressionMethods.None,
        };
        // The driver times requests out (the whole stream, not just the headers as HttpClient.Timeout would).
        _http = new HttpClient(handler) { BaseAddress = baseAddress, Timeout = Timeout.InfiniteTimeSpan };
        _model = model;
    }

    public string Protocol => "http";

    public Task PrepareAsync(IReadOnlyList<TenantSpec> tenants, int concurrency, CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task SendAsync(TurnRequest request, RequestRecord record, RunClock clock, CancellationToken cancellationToken)
    {
        byte[] body = Body(request, _model);
        using var message = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new ByteArrayContent(body) };
        message.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        message.Headers.Authorization = new AuthenticationHeaderValue("Bearer", request.Tenant.ApiKey);
        message.Headers.TryAddWithoutValidation("X-Conversation-Id", request.ConversationId);
        try
        {
            using var response = await _http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                string text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
                var (code, msg) = ErrorBody(text);
                int status = (int)response.StatusCode;
                record.Fail(status, $"{status} {code ?? "http_error"}", msg);
                record.RetryAfterSeconds = response.Headers.RetryAfter switch
                {
                    { Delta: { } delta } => delta.TotalSeconds,
                    { Date: { } date } => Math.Max(0, (date - DateTimeOffset.UtcNow).TotalSeconds),
                    _ => null,
                };
                return;
            }
            await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
            using var reader = new StreamReader(stream, Encoding.UTF8);
            var answer = new StringBuilder();
            double last = 0;
            bool done = false;
            while (await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false) is { } line)
            {
                if (!line.StartsWith("data:", StringComparison.Ordinal)) continue;
                var payload = line.AsSpan(5).Trim();
                if (payload.SequenceEqual("[DONE]")) { done = true; break; }
                double now = clock.Now;
                using var json = JsonDocument.Parse(payload.ToString());
                var root = json.RootElement;
                if (root.TryGetProperty("error", out var error))
                {
                    string code = Str(error, "code") ?? Str(error, "type") ?? "error";
                    record.Fail(null, "stream " + code, Str(error, "message"));
                    record.End = clock.Now;
                    return;
                }
                if (root.TryGetProperty("choices", out var choices) && choices.ValueKind == JsonValueKind.Array && choices.GetArrayLength() > 0)
                {
                    var choice = choices[0];
                    if (choice.TryGetProperty("delta", out var delta) && Str(delta, "content") is { Length: > 0 } content)
                    {
                        if (record.Ttft is null) record.Ttft = now - record.Start;
                        else record.Itl.Add(now - last);
                        last = now;
                        record.Chunks++;
                        answer.Append(content);
                    }
                    if (Str(choice, "finish_reason") is { } finish) record.FinishReason = finish;
                }
                if (root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
                {
                    record.PromptTokens = Int(usage, "prompt_tokens");
                    record.OutputTokens = Int(usage, "completion_tokens");
                    if (usage.TryGetProperty("prompt_tokens_details", out var details) && details.ValueKind == JsonValueKind.Object)
                    {
                        record.ImageTokens = Int(details, "image_tokens");
                        record.CachedTokens = Int(details, "cached_tokens");
                    }
                }
            }
            record.End = clock.Now;
            record.Answer = answer.ToString();
            if (!done) { record.Fail(null, "stream truncated", "The event stream ended without [DONE]."); return; }
            if (record.OutputTokens == 0) record.OutputTokens = record.Chunks;
            record.Success = true;
        }
        catch (Exception e) when (e is HttpRequestException or IOException or JsonException)
        {
            record.Fail(null, "transport " + e.GetType().Name, e.Message);
        }
    }

    /// <summary>The request body in OpenAI's chat format; images travel as PNG data URLs before the text.</summary>
    internal static byte[] Body(TurnRequest request, string model)
    {
        var buffer = new ArrayBufferWriter<byte>(4096);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("model", model);
            json.WriteStartArray("messages");
            foreach (var m in request.Messages)
            {
                json.WriteStartObject();
                json.WriteString("role", m.Role);
                if (m.Images.Count == 0) json.WriteString("content", m.Text);
                else
                {
                    json.WriteStartArray("content");
                    foreach (var image in m.Images)
                    {
                        json.WriteStartObject();
                        json.WriteString("type", "image_url");
                        json.WriteStartObject("image_url");
                        json.WriteString("url", "data:image/png;base64," + Convert.ToBase64String(image));
                        json.WriteEndObject();
                        json.WriteEndObject();
                    }
                    json.WriteStartObject();
                    json.WriteString("type", "text");
                    json.WriteString("text", m.Text);
                    json.WriteEndObject();
                    json.WriteEndArray();
                }
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteNumber("max_tokens", request.MaxTokens);
            json.WriteNumber("temperature", request.Temperature);
            if (request.Seed is long seed) json.WriteNumber("seed", seed);
            if (request.IgnoreEos) json.WriteBoolean("ignore_eos", true);
            json.WriteBoolean("stream", true);
            json.WriteStartObject("stream_options");
            json.WriteBoolean("include_usage", true);
            json.WriteEndObject();
            json.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>OpenAI's error body <c>{"error":{"message","type","code"}}</c>; nulls when the body is something else.</summary>
    internal static (string? Code, string? Message) ErrorBody(string text)
    {
        try
        {
            using var json = JsonDocument.Parse(text);
            if (json.RootElement.ValueKind == JsonValueKind.Object && json.RootElement.TryGetProperty("error", out var error) && error.ValueKind == JsonValueKind.Object)
                return (Str(error, "code") ?? Str(error, "type"), Str(error, "message"));
        }
        catch (JsonException)
        {
        }
        return (null, text.Length > 200 ? text[..200] : text);
    }

    private static string? Str(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static int Int(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : 0;

    public ValueTask DisposeAsync()
    {
        _http.Dispose();
        return ValueTask.CompletedTask;
    }
}
