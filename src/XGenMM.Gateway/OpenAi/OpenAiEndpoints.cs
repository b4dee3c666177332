using System.Buffers;
using System.Text.Json;
using System.Threading.Channels;
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
        IReadOnlyList<ChatGeneration> choices;
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
                TopLogprobs = request.TopLogprobs,
                Protocol = "http",
            };
            choices = await chat.StartAsync(turn, request.Choices, cancel).ConfigureAwait(false);
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
            if (request.Stream) await WriteStreamAsync(http, choices, model, request.IncludeUsage).ConfigureAwait(false);
            else await WriteCompletionAsync(http, choices, model).ConfigureAwait(false);
        }
        finally
        {
            foreach (var choice in choices) await choice.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>The body buffer's first size: the declared length when smaller.</summary>
    private const int InitialBodyBuffer = 16 * 1024;

    private static async Task<ReadOnlyMemory<byte>> ReadBodyAsync(HttpContext http, long limit)
    {
        if (http.Request.ContentLength is long declared && declared > limit)
            throw OpenAiException.TooLarge($"The request body is {declared} bytes; the limit is {limit} bytes.", "request_too_large");
        var feature = http.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (feature is { IsReadOnly: false }) feature.MaxRequestBodySize = limit + 1;
        // Sized by the declared length (a chat request is a few KB), growing by doubling as bytes arrive, never
        // ahead of them: a 64 KB read buffer per request was ~130 KB allocated for every request, refusals included
        // (at 10x the knee, 400 MB/s of garbage on the cores the decoder steps on), and a client that declares a large
        // body and sends it slowly holds only what it has sent.
        long? expected = http.Request.ContentLength;
        var buffer = new ArrayBufferWriter<byte>((int)Math.Clamp(expected ?? InitialBodyBuffer, 1, InitialBodyBuffer));
        try
        {
            while (expected is not long length || buffer.WrittenCount < length)
            {
                var memory = buffer.GetMemory();
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

    /// <summary>
    /// The usage of a completion of one or more choices, as OpenAI and vLLM count it: the prompt once, the completion
    /// tokens of every choice.
    /// </summary>
    private static UsageReport? SumUsage(UsageReport?[] usages) =>
        usages.Length == 0 || usages[0] is not { } first ? null
            : first with { CompletionTokens = usages.Sum(u => u?.CompletionTokens ?? 0) };

    private static async Task WriteCompletionAsync(HttpContext http, IReadOnlyList<ChatGeneration> choices, ServedModel model)
    {
        (string Text, ChatDelta? Last, List<TokenLogprobs>? Logprobs)[] results;
        try
        {
            results = await Task.WhenAll(choices.Select(async choice =>
            {
                var text = new System.Text.StringBuilder();
                ChatDelta? last = null;
                List<TokenLogprobs>? logprobs = null;
                await foreach (var delta in choice.WithCancellation(http.RequestAborted).ConfigureAwait(false))
                {
                    text.Append(delta.Text);
                    if (delta.Logprobs is { } l) (logprobs ??= []).Add(l);
                    last = delta;
                }
                return (text.ToString(), last, logprobs);
            })).ConfigureAwait(false);
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
        json.WriteString("id", choices[0].RequestId);
        json.WriteString("object", "chat.completion");
        json.WriteNumber("created", choices[0].Created);
        json.WriteString("model", model.Id);
        json.WriteStartArray("choices");
        for (int i = 0; i < results.Length; i++)
        {
            json.WriteStartObject();
            json.WriteNumber("index", choices[i].Index);
            json.WriteStartObject("message");
            json.WriteString("role", "assistant");
            json.WriteString("content", results[i].Text);
            json.WriteNull("refusal");
            json.WriteEndObject();
            WriteLogprobs(json, results[i].Logprobs);
            json.WriteString("finish_reason", results[i].Last?.FinishReason ?? "stop");
            json.WriteEndObject();
        }
        json.WriteEndArray();
        if (SumUsage([.. results.Select(r => r.Last?.Usage)]) is { } usage) WriteUsage(json, usage);
        json.WriteNull("system_fingerprint");
        json.WriteEndObject();
        await json.FlushAsync(http.RequestAborted).ConfigureAwait(false);
    }

    private static async Task WriteStreamAsync(HttpContext http, IReadOnlyList<ChatGeneration> choices, ServedModel model, bool includeUsage)
    {
        http.Response.ContentType = "text/event-stream; charset=utf-8";
        http.Response.Headers.CacheControl = "no-cache";
        http.Response.Headers["X-Accel-Buffering"] = "no";
        var cancel = http.RequestAborted;
        var head = choices[0];
        // The choices generate side by side; one writer puts their deltas on the wire in the order they arrive.
        var deltas = Channel.CreateUnbounded<(int Choice, ChatDelta? Delta, OpenAiException? Error)>(new UnboundedChannelOptions { SingleReader = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        var pumps = choices.Select((choice, i) => Task.Run(async () =>
        {
            try
            {
                await foreach (var delta in choice.WithCancellation(stop.Token).ConfigureAwait(false))
                    await deltas.Writer.WriteAsync((i, delta, null), stop.Token).ConfigureAwait(false);
            }
            catch (OpenAiException e)
            {
                deltas.Writer.TryWrite((i, null, e));
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                // The client went away or another choice failed: disposing the streams cancels the generations.
            }
        }, CancellationToken.None)).ToArray();
        _ = Task.WhenAll(pumps).ContinueWith(_ => deltas.Writer.TryComplete(), TaskScheduler.Default);
        try
        {
            foreach (var choice in choices)
            {
                await WriteChunkAsync(http, head, model, includeUsage, choice.Index, json =>
                {
                    json.WriteString("role", "assistant");
                    json.WriteString("content", "");
                }, null, null).ConfigureAwait(false);
            }
            var usages = new UsageReport?[choices.Count];
            await foreach (var (i, delta, error) in deltas.Reader.ReadAllAsync(cancel).ConfigureAwait(false))
            {
                if (error is not null) throw error;
                if (delta!.Text.Length > 0 || delta.Logprobs is not null)
                    await WriteChunkAsync(http, head, model, includeUsage, choices[i].Index, json => json.WriteString("content", delta.Text), null, null,
                        delta.Logprobs is { } l ? [l] : null).ConfigureAwait(false);
                if (delta.FinishReason is { } finish)
                {
                    await WriteChunkAsync(http, head, model, includeUsage, choices[i].Index, _ => { }, finish, null).ConfigureAwait(false);
                    usages[i] = delta.Usage;
                }
            }
            if (includeUsage && SumUsage(usages) is { } usage)
                await WriteChunkAsync(http, head, model, includeUsage, 0, null, null, usage).ConfigureAwait(false);
            await http.Response.WriteAsync("data: [DONE]\n\n", cancel).ConfigureAwait(false);
            await http.Response.Body.FlushAsync(cancel).ConfigureAwait(false);
        }
        catch (OpenAiException e)
        {
            await stop.CancelAsync().ConfigureAwait(false);
            // Headers are gone: the error travels as an event, as OpenAI's own streams do.
            var payload = JsonSerializer.Serialize(e.ToBody(), OpenAiJsonContext.Relaxed.ErrorBody);
            await http.Response.WriteAsync($"data: {payload}\n\n", cancel).ConfigureAwait(false);
            await http.Response.WriteAsync("data: [DONE]\n\n", cancel).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            // The client went away; disposing the streams cancels the generations.
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(pumps).ConfigureAwait(false);
        }
    }

    /// <summary>One <c>chat.completion.chunk</c> of choice <paramref name="index"/>; <paramref name="delta"/> null writes the usage-only chunk (empty choices).</summary>
    private static async Task WriteChunkAsync(HttpContext http, ChatGeneration stream, ServedModel model, bool includeUsage, int index,
        Action<Utf8JsonWriter>? delta, string? finish, UsageReport? usage, IReadOnlyList<TokenLogprobs>? logprobs = null)
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
                json.WriteNumber("index", index);
                json.WriteStartObject("delta");
                delta(json);
                json.WriteEndObject();
                WriteLogprobs(json, logprobs);
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

    /// <summary>OpenAI's <c>logprobs</c> of a choice: null when not asked, else <c>{"content": [...], "refusal": null}</c>
    /// with each token's text, log probability, UTF-8 bytes and its alternatives.</summary>
    private static void WriteLogprobs(Utf8JsonWriter json, IReadOnlyList<TokenLogprobs>? logprobs)
    {
        if (logprobs is null)
        {
            json.WriteNull("logprobs");
            return;
        }
        json.WriteStartObject("logprobs");
        json.WriteStartArray("content");
        foreach (var token in logprobs)
        {
            WriteToken(json, token.Token, token.Logprob);
            json.WriteStartArray("top_logprobs");
            foreach (var (text, logprob) in token.Top)
            {
                WriteToken(json, text, logprob);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteNull("refusal");
        json.WriteEndObject();

        static void WriteToken(Utf8JsonWriter json, string text, double logprob)
        {
            json.WriteStartObject();
            json.WriteString("token", text);
            json.WriteNumber("logprob", logprob);
            json.WriteStartArray("bytes");
            foreach (byte b in System.Text.Encoding.UTF8.GetBytes(text)) json.WriteNumberValue(b);
            json.WriteEndArray();
        }
    }

    private static void WriteUsage(Utf8JsonWriter json, UsageReport usage)
    {
        json.WriteStartObject("usage");
        json.WriteNumber("prompt_tokens", usage.OpenAiPromptTokens());
        json.WriteNumber("completion_tokens", usage.CompletionTokens);
        json.WriteNumber("total_tokens", usage.TotalTokens());
        json.WriteStartObject("prompt_tokens_details");
        json.WriteNumber("cached_tokens", usage.CachedTokens);
        json.WriteNumber("image_tokens", usage.ImageTokens);
        json.WriteEndObject();
        json.WriteEndObject();
    }
}
