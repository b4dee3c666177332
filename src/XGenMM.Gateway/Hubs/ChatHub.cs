using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.Options;
using XGenMM.Gateway.Chat;
using XGenMM.Gateway.Contracts;
using XGenMM.Gateway.Hosting;
using XGenMM.Gateway.OpenAi;
using XGenMM.Gateway.Telemetry;
using XGenMM.Gateway.Tenants;

namespace XGenMM.Gateway.Hubs;

/// <summary>
/// Streaming chat over SignalR at <c>/hubs/chat</c>. A client invokes <c>Chat</c> as a stream; cancelling the stream
/// or disconnecting cancels the generation in the cluster. Errors arrive as hub errors "STATUS code: message".
/// </summary>
[Authorize]
public sealed class ChatHub(ChatService chat, ServedModel model, IOptions<RequestLimits> limits, GatewayMetrics metrics, TenantConnections connections) : Hub
{
    private const string StreamsKey = "xgenmm.streams";
    private const string TenantKey = "xgenmm.tenant";

    public override Task OnConnectedAsync()
    {
        string tenant = Context.User!.TenantId();
        int limit = limits.Value.MaxConnectionsPerTenant;
        // A refusal here closes the connection; the client's close event carries the message.
        if (!connections.TryOpen(tenant, limit))
            throw Error(OpenAiException.RateLimited($"This API key already holds {limit} open connections to this gateway; that is the limit per tenant.",
                "too_many_connections", 1));
        Context.Items[TenantKey] = tenant;
        metrics.Connections.Inc();
        Context.Items[StreamsKey] = new StrongBox<int>(0);
        return base.OnConnectedAsync();
    }

    public override Task OnDisconnectedAsync(Exception? exception)
    {
        if (Context.Items.TryGetValue(TenantKey, out var tenant) && tenant is string id)
        {
            connections.Close(id);
            metrics.Connections.Dec();
        }
        return base.OnDisconnectedAsync(exception);
    }

    /// <summary>The served model and the limits a client should respect (the page shows them).</summary>
    public object Info() => new
    {
        model = model.Id,
        modelCard = model.Card,
        contextLength = model.ContextLength,
        maxImagesPerRequest = limits.Value.MaxImagesPerRequest,
        maxImageBytes = limits.Value.MaxImageBytes,
        maxCompletionTokens = limits.Value.MaxCompletionTokens,
        defaultMaxTokens = limits.Value.DefaultMaxTokens,
    };

    public async IAsyncEnumerable<HubDelta> Chat(HubTurn turn, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var streams = (StrongBox<int>)Context.Items[StreamsKey]!;
        if (Interlocked.Increment(ref streams.Value) > limits.Value.MaxStreamsPerConnection)
        {
            Interlocked.Decrement(ref streams.Value);
            throw Error(OpenAiException.RateLimited($"This connection already has {limits.Value.MaxStreamsPerConnection} streams; that is the limit per connection.",
                "too_many_streams", 1));
        }
        try
        {
            ChatGeneration stream;
            try
            {
                stream = await chat.StartAsync(ToTurn(turn, Context.User!.TenantId()), cancellationToken).ConfigureAwait(false);
            }
            catch (OpenAiException e)
            {
                throw Error(e);
            }
            try
            {
                var deltas = stream.GetAsyncEnumerator(cancellationToken);
                try
                {
                    while (true)
                    {
                        try
                        {
                            if (!await deltas.MoveNextAsync().ConfigureAwait(false)) break;
                        }
                        catch (OpenAiException e)
                        {
                            throw Error(e);
                        }
                        var d = deltas.Current;
                        yield return ToWire(d);
                    }
                }
                finally
                {
                    await deltas.DisposeAsync().ConfigureAwait(false);
                }
            }
            finally
            {
                await stream.DisposeAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            Interlocked.Decrement(ref streams.Value);
        }
    }

    private ChatTurn ToTurn(HubTurn turn, string tenant)
    {
        var l = limits.Value;
        if (turn is null) throw Error(OpenAiException.Invalid("The turn is missing.", "turn"));
        if (turn.Messages is not { Length: > 0 }) throw Error(OpenAiException.Invalid("'messages' must contain at least one message.", "messages"));
        if (turn.Messages.Length > l.MaxMessages) throw Error(OpenAiException.Invalid($"'messages' has {turn.Messages.Length} messages; the limit is {l.MaxMessages}.", "messages", "too_many_messages"));
        var images = new List<byte[]>();
        var messages = new List<TurnMessage>();
        for (int i = 0; i < turn.Messages.Length; i++)
        {
            var m = turn.Messages[i] ?? throw Error(OpenAiException.Invalid($"messages[{i}] is null.", $"messages[{i}]"));
            string role = m.Role switch
            {
                "system" or "user" or "assistant" => m.Role,
                _ => throw Error(OpenAiException.Invalid($"messages[{i}].role '{m.Role}' is not one of system, user, assistant.", $"messages[{i}].role")),
            };
            var parts = new List<TurnPart>();
            foreach (var image in m.Images ?? [])
            {
                if (image is null) throw Error(OpenAiException.Invalid($"messages[{i}].images has a null entry.", $"messages[{i}].images"));
                if (l.RefuseImage(images.Count, "messages") is { } tooMany) throw Error(tooMany);
                images.Add(image);
                parts.Add(TurnPart.OfImage(images.Count - 1));
            }
            parts.Add(TurnPart.OfText(m.Content ?? ""));
            messages.Add(new TurnMessage(role, parts));
        }
        int maxTokens = turn.MaxTokens ?? l.DefaultMaxTokens;
        if (maxTokens < 1 || maxTokens > l.MaxCompletionTokens) throw Error(OpenAiException.Invalid($"'maxTokens' must be between 1 and {l.MaxCompletionTokens}.", "maxTokens"));
        float temperature = turn.Temperature ?? 0f;
        if (!float.IsFinite(temperature) || temperature is < 0 or > 2) throw Error(OpenAiException.Invalid("'temperature' must be between 0 and 2.", "temperature"));
        float topP = turn.TopP ?? 1f;
        if (!float.IsFinite(topP) || topP is <= 0 or > 1) throw Error(OpenAiException.Invalid("'topP' must be greater than 0 and at most 1.", "topP"));
        var stop = turn.Stop ?? [];
        if (stop.Length > l.MaxStopSequences || stop.Any(s => string.IsNullOrEmpty(s) || s.Length > l.MaxStopSequenceChars))
            throw Error(OpenAiException.Invalid($"'stop' takes up to {l.MaxStopSequences} sequences of 1 to {l.MaxStopSequenceChars} characters.", "stop"));
        if (turn.ConversationId is { Length: > 128 }) throw Error(OpenAiException.Invalid("'conversationId' is longer than 128 characters.", "conversationId"));
        return new ChatTurn
        {
            Tenant = tenant,
            ConversationId = string.IsNullOrEmpty(turn.ConversationId) ? null : tenant + "/" + turn.ConversationId,
            Messages = messages,
            Images = images,
            MaxTokens = maxTokens,
            Temperature = temperature,
            TopP = topP,
            Seed = turn.Seed is long s ? unchecked((ulong)s) : null,
            Stop = stop,
            IgnoreEos = turn.IgnoreEos,
            Protocol = "signalr",
        };
    }

    private HubException Error(OpenAiException e)
    {
        metrics.Reject(e);
        return new HubException(HubErrorText(e));
    }

    /// <summary>A hub error's text: <c>"STATUS code: message"</c>, and for a refusal that says when to come back (the
    /// HTTP API's <c>Retry-After</c> header) a last line <c>"Retry-After: SECONDS"</c>, which clients read as the header.</summary>
    internal static string HubErrorText(OpenAiException e) => e.RetryAfterSeconds is double seconds
        ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{e.Status} {e.Code ?? e.Type}: {e.Message}\nRetry-After: {OpenAiException.RetryAfterHeaderValue(seconds)}")
        : $"{e.Status} {e.Code ?? e.Type}: {e.Message}";

    private static HubDelta ToWire(ChatDelta d) => new()
    {
        Text = d.Text,
        FinishReason = d.FinishReason,
        Usage = d.Usage is { } u ? new HubUsage
        {
            PromptTokens = u.OpenAiPromptTokens(), ImageTokens = u.ImageTokens, CompletionTokens = u.CompletionTokens, CachedTokens = u.CachedTokens, TotalTokens = u.TotalTokens(),
        } : null,
        Timings = d.Timings is { } t ? new HubTimings
        {
            QueueSeconds = t.QueueSeconds, TimeToFirstTokenSeconds = t.TimeToFirstTokenSeconds, EndToEndSeconds = t.EndToEndSeconds,
        } : null,
    };
}
