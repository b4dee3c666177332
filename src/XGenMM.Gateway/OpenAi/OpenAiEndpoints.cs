using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;
using XGenMM.Cluster.Abstractions;
using XGenMM.Gateway.Chat;
using XGenMM.Gateway.Hosting;
using XGenMM.Gateway.Images;
using XGenMM.Gateway.Tenants;

namespace XGenMM.Gateway.OpenAi;

/// <summary>The OpenAI-compatible HTTP API: chat completions (JSON or SSE), models, and a tenant's own usage ledger.</summary>
public static class OpenAiEndpoints
{
    public static IEndpointRouteBuilder MapOpenAiApi(this IEndpointRouteBuilder app)
    {
        var v1 = app.MapGroup("/v1").RequireAuthorization();
        v1.MapPost("/chat/completions", ChatCompletions);
        v1.MapGet("/models", (ServedModel model) => Results.Json(new { @object = "list", data = new[] { ModelCard(model) } }));
        v1.MapGet("/models/{id}", (string id, ServedModel model) => id == model.Id
            ? Results.Json(ModelCard(model))
            : OpenAiException.NotFound($"The model '{id}' does not exist.", "model_not_found", "model").ToResult());
        v1.MapGet("/usage", Usage);
        // Anything else under /v1 is a 404 in OpenAI's shape, not an empty page.
        v1.Map("/{**rest}", (string rest) => OpenAiException.NotFound($"Unknown endpoint /v1/{rest}.", "unknown_url").ToResult());
        return app;
    }

    private static object ModelCard(ServedModel model) => new { id = model.Id, @object = "model", created = model.Created, owned_by = "xgenmm" };

    private static async Task<IResult> Usage(HttpContext http, IGrainFactory grains, string? days)
    {
        // A string, parsed here: an int? parameter made "days=abc" a 400 with an empty body from the binder.
        int span = 7;
        if (days is not null && (!int.TryParse(days, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out span) || span is < 1 or > 366))
            return OpenAiException.Invalid("'days' must be an integer between 1 and 366.", "days").ToResult();
        string tenant = http.User.TenantId();
        var ledger = await grains.GetGrain<ITenantGrain>(tenant).GetUsage(span).ConfigureAwait(false);
        return Results.Json(new
        {
            @object = "list",
            tenant,
            data = ledger.Select(d => new
            {
                date = d.Day.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture),
                requests = d.Requests,
                prompt_tokens = d.PromptTokens,
                completion_tokens = d.CompletionTokens,
                image_tokens = d.ImageTokens,
                total_tokens = d.PromptTokens + d.CompletionTokens + d.ImageTokens,
            }),
        });
    }

    private static async Task ChatCompletions(HttpContext http, ChatService chat, ServedModel model, RemoteImageFetcher fetcher,
        IOptions<RequestLimits> limitOptions)
    {
        var limits = limitOptions.Value;
        var cancel = http.RequestAborted;
        ChatGeneration stream;
        ChatCompletionRequest request;
        try
        {
            var body = await ReadBodyAsync(http, limits.MaxBodyBytes).ConfigureAwait(false);
            request = ChatCompletionParser.Parse(body, limits);
            if (request.Model != model.Id) throw OpenAiException.NotFound($"The model '{request.Model}' does not exist; this server serves '{model.Id}'.", "model_not_found", "model");
            var images = new byte[request.Images.Count][];
            for (int i = 0; i < images.Length; i++)
            {
                var source = request.Images[i];
                images[i] = source.Data ?? await fetcher.FetchAsync(source.Remote!, source.Param, limits.MaxImageBytes, cancel).ConfigureAwait(false);
            }
            var turn = new ChatTurn
            {
                Tenant = http.User.TenantId(),
                ConversationId = http.Request.Headers.TryGetValue("X-Conversation-Id", out var conversation) && conversation.ToString().Length is > 0 and <= 128
                    ? conversation.ToString() : null,
                Messages = request.Messages,
                Images = images,
                MaxTokens = request.MaxTokens ?? limits.DefaultMaxTokens,
                Temperature = request.Temperature,
                TopP = request.TopP,
                Seed = request.Seed,
                Stop = request.Stop,
                IgnoreEos = request.IgnoreEos,
                Protocol = "http",
            };
            stream = await chat.StartAsync(turn, cancel).ConfigureAwait(false);
        }
        catch (OpenAiException e)
        {
            chat.Metrics.Reject(e);
            await e.WriteAsync(http).ConfigureAwait(false);
            return;
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            return;
        }

        try
        {
            if (request.Stream) await WriteStreamAsync(http, stream, model, request.IncludeUsage).ConfigureAwait(false);
            else await WriteCompletionAsync(http, stream, model).ConfigureAwait(false);
        }
        finally
        {
            await stream.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static async Task<ReadOnlyMemory<byte>> ReadBodyAsync(HttpContext http, long limit)
    {
        if (http.Request.ContentLength is long declared && declared > limit)
            throw OpenAiException.TooLarge($"The request body is {declared} bytes; the limit is {limit} bytes.", "request_too_large");
        var feature = http.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (feature is { IsReadOnly: false }) feature.MaxRequestBodySize = limit + 1;
        var buffer = new ArrayBufferWriter<byte>(16 * 1024);
        try
        {
            while (true)
            {
                var memory = buffer.GetMemory(64 * 1024);
                int read = await http.Request.Body.ReadAsync(memory, http.RequestAborted).ConfigureAwait(false);
                if (read == 0) break;
                buffer.Advance(read);
                if (buffer.WrittenCount > limit)
                    throw OpenAiException.TooLarge($"The request body is larger than the limit of {limit} bytes.", "request_too_large");
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw OpenAiException.TooLarge($"The request body is larger than the limit of {limit} bytes.", "request_too_large");
        }
        catch (BadHttpRequestException e)
        {
            throw OpenAiException.Invalid($"The request body could not be read: {e.Message}", null, "invalid_body");
        }
        return buffer.WrittenMemory;
    }

    private static async Task WriteCompletionAsync(HttpContext http, ChatGeneration stream, ServedModel model)
    {
        var text = new System.Text.StringBuilder();
        ChatDelta? last = null;
        try
        {
            await foreach (var delta in stream.WithCancellation(http.RequestAborted).ConfigureAwait(false))
            {
                text.Append(delta.Text);
                last = delta;
            }
        }
        catch (OpenAiException e)
        {
            await e.WriteAsync(http).ConfigureAwait(false);
            return;
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            return;
        }
        http.Response.ContentType = "application/json";
        using var json = new Utf8JsonWriter(http.Response.BodyWriter, OpenAiJsonContext.WriterOptions);
        json.WriteStartObject();
        json.WriteString("id", stream.RequestId);
        json.WriteString("object", "chat.completion");
        json.WriteNumber("created", stream.Created);
        json.WriteString("model", model.Id);
        json.WriteStartArray("choices");
        json.WriteStartObject();
        json.WriteNumber("index", 0);
        json.WriteStartObject("message");
        json.WriteString("role", "assistant");
        json.WriteString("content", text.ToString());
        json.WriteNull("refusal");
        json.WriteEndObject();
        json.WriteNull("logprobs");
        json.WriteString("finish_reason", last?.FinishReason ?? "stop");
        json.WriteEndObject();
        json.WriteEndArray();
        if (last?.Usage is { } usage) WriteUsage(json, usage);
        json.WriteNull("system_fingerprint");
        json.WriteEndObject();
        await json.FlushAsync(http.RequestAborted).ConfigureAwait(false);
    }

    private static async Task WriteStreamAsync(HttpContext http, ChatGeneration stream, ServedModel model, bool includeUsage)
    {
        http.Response.ContentType = "text/event-stream; charset=utf-8";
        http.Response.Headers.CacheControl = "no-cache";
        http.Response.Headers["X-Accel-Buffering"] = "no";
        var cancel = http.RequestAborted;
        try
        {
            await WriteChunkAsync(http, stream, model, includeUsage, json =>
            {
                json.WriteString("role", "assistant");
                json.WriteString("content", "");
            }, null, null).ConfigureAwait(false);
            await foreach (var delta in stream.WithCancellation(cancel).ConfigureAwait(false))
            {
                if (delta.Text.Length > 0)
                    await WriteChunkAsync(http, stream, model, includeUsage, json => json.WriteString("content", delta.Text), null, null).ConfigureAwait(false);
                if (delta.FinishReason is { } finish)
                {
                    await WriteChunkAsync(http, stream, model, includeUsage, _ => { }, finish, null).ConfigureAwait(false);
                    if (includeUsage && delta.Usage is { } usage)
                        await WriteChunkAsync(http, stream, model, includeUsage, null, null, usage).ConfigureAwait(false);
                }
            }
            await http.Response.WriteAsync("data: [DONE]\n\n", cancel).ConfigureAwait(false);
            await http.Response.Body.FlushAsync(cancel).ConfigureAwait(false);
        }
        catch (OpenAiException e)
        {
            // Headers are gone: the error travels as an event, as OpenAI's own streams do.
            var payload = JsonSerializer.Serialize(e.ToBody(), OpenAiJsonContext.Relaxed.ErrorBody);
            await http.Response.WriteAsync($"data: {payload}\n\n", cancel).ConfigureAwait(false);
            await http.Response.WriteAsync("data: [DONE]\n\n", cancel).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            // The client went away; disposing the stream cancels the generation.
        }
    }

    /// <summary>One <c>chat.completion.chunk</c>; <paramref name="delta"/> null writes the usage-only chunk (empty choices).</summary>
    private static async Task WriteChunkAsync(HttpContext http, ChatGeneration stream, ServedModel model, bool includeUsage,
        Action<Utf8JsonWriter>? delta, string? finish, TurnUsage? usage)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var json = new Utf8JsonWriter(buffer, OpenAiJsonContext.WriterOptions))
        {
            json.WriteStartObject();
            json.WriteString("id", stream.RequestId);
            json.WriteString("object", "chat.completion.chunk");
            json.WriteNumber("created", stream.Created);
            json.WriteString("model", model.Id);
            json.WriteNull("system_fingerprint");
            json.WriteStartArray("choices");
            if (delta is not null)
            {
                json.WriteStartObject();
                json.WriteNumber("index", 0);
                json.WriteStartObject("delta");
                delta(json);
                json.WriteEndObject();
                json.WriteNull("logprobs");
                if (finish is null) json.WriteNull("finish_reason");
                else json.WriteString("finish_reason", finish);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            if (usage is not null) WriteUsage(json, usage);
            else if (includeUsage) json.WriteNull("usage");
            json.WriteEndObject();
        }
        await http.Response.Body.WriteAsync("data: "u8.ToArray(), http.RequestAborted).ConfigureAwait(false);
        await http.Response.Body.WriteAsync(buffer.WrittenMemory, http.RequestAborted).ConfigureAwait(false);
        await http.Response.Body.WriteAsync("\n\n"u8.ToArray(), http.RequestAborted).ConfigureAwait(false);
        await http.Response.Body.FlushAsync(http.RequestAborted).ConfigureAwait(false);
    }

    private static void WriteUsage(Utf8JsonWriter json, TurnUsage usage)
    {
        json.WriteStartObject("usage");
        json.WriteNumber("prompt_tokens", usage.PromptTokens);
        json.WriteNumber("completion_tokens", usage.CompletionTokens);
        json.WriteNumber("total_tokens", usage.TotalTokens);
        json.WriteStartObject("prompt_tokens_details");
        json.WriteNumber("cached_tokens", usage.CachedTokens);
        json.WriteNumber("image_tokens", usage.ImageTokens);
        json.WriteEndObject();
        json.WriteEndObject();
    }
}
