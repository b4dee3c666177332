using System.Diagnostics;
using System.IO.Hashing;
using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.Extensions.Options;
using XGenMM.Cluster.Abstractions;
using XGenMM.Cluster.Client;
using XGenMM.Gateway.Hosting;
using XGenMM.Gateway.OpenAi;
using XGenMM.Gateway.Telemetry;
using XGenMM.Model.Imaging;
using XGenMM.Model.Tokenization;

namespace XGenMM.Gateway.Chat;

/// <summary>
/// The one path every chat turn takes, whichever door it came in by: checks the images and the prompt against the
/// limits, asks the tenant grain for admission (cluster-wide quotas), has the images encoded on vision silos, and
/// streams the generation from a decoder. Every failure before the first token is an <see cref="OpenAiException"/> with
/// its status; the tenant's lease is always returned with the usage actually spent.
/// </summary>
public sealed partial class ChatService(IClusterChat cluster, IGrainFactory grains, ServedModel model, IOptions<RequestLimits> limits,
    IOptions<ClusterChatOptions> clusterOptions, MembershipStoreHealth membershipStore, GatewayMetrics metrics, ILogger<ChatService> logger)
{
    private readonly RequestLimits _limits = limits.Value;
    private readonly CallDeadlines _deadlines = clusterOptions.Value.Deadlines;
    private readonly PromptBound _bound = new(model.Tokenizer);
    private long _tokenizerCalls;

    /// <summary>Prompts tokenised so far: tests read it to prove a refusal came before the tokenizer.</summary>
    internal long TokenizerCalls => Interlocked.Read(ref _tokenizerCalls);

    /// <summary>Admits the turn and waits for its first token; the returned stream starts with that token.</summary>
    public async Task<ChatGeneration> StartAsync(ChatTurn turn, CancellationToken cancellationToken) =>
        (await StartAsync(turn, 1, cancellationToken).ConfigureAwait(false))[0];

    /// <summary>
    /// Admits the turn once for <paramref name="choices"/> generations of the same prompt (OpenAI's <c>n</c>) and waits
    /// for the first token of each. The tenant is charged as for that many requests' tokens (one admission, one
    /// concurrent stream); with a seed, choice i samples with seed + i so that the choices differ yet repeat.
    /// </summary>
    public async Task<IReadOnlyList<ChatGeneration>> StartAsync(ChatTurn turn, int choices, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(choices, 1);
        long arrived = Stopwatch.GetTimestamp();
        try
        {
            // Without the membership store no tenant can be admitted (its ledger is written there) and silos cannot
            // agree on who is alive: say so at once instead of after a deadline.
            if (membershipStore.Unreachable is { } outage)
                throw OpenAiException.Unavailable($"The cluster's membership store is unreachable ({outage}); retry shortly.", "membership_unavailable", 5);
            model.LearnFrom(await Cluster(() => cluster.GetDecodersAsync(cancellationToken), cancellationToken).ConfigureAwait(false));
            long atLeast = CheckPrompt(turn);
            // Refused at the door when the decoders' last reports already say no, before the tokenizer, the image hashes
            // and the tenant's quota (a grain call and a ledger write, and one more to give the lease back): at 10x the
            // knee most requests are refused, and that work ran on the cores the admitted ones need.
            await Cluster(async () =>
            {
                await cluster.CheckCapacityAsync(turn.Tenant, atLeast, cancellationToken).ConfigureAwait(false);
                return true;
            }, cancellationToken).ConfigureAwait(false);
            int[] promptIds = TokenizePrompt(turn);
            // The one hash of each image for this request: it names the vision grain, the engine's cache entry and
            // the conversation's affinity key.
            var imageKeys = turn.Images.Select(image => ImageContentKey.Compute(image, turn.Tenant, model.ImageFingerprint)).ToArray();
            int textTokens = promptIds.Length - turn.Images.Count;
            long estimate = (textTokens + (long)turn.MaxTokens) * choices;
            var tenant = grains.GetGrain<ITenantGrain>(turn.Tenant);
            var ticket = await AdmitAsync(tenant, turn.Images.Count, estimate, cancellationToken).ConfigureAwait(false);
            if (!ticket.Admitted) throw QuotaError(ticket);
            var lease = new Lease(tenant, ticket.LeaseId!, estimate, choices);
            var started = new List<IAsyncEnumerator<GenerationChunk>>(choices);
            try
            {
                var images = await EncodeImagesAsync(turn, imageKeys, cancellationToken).ConfigureAwait(false);
                string requestId = "chatcmpl-" + Guid.NewGuid().ToString("N");
                string conversation = turn.ConversationId ?? ConversationKey(turn, imageKeys);
                for (int i = 0; i < choices; i++)
                {
                    var request = new GenerationRequest
                    {
                        // The decoder keys its work by request id: each choice is a generation of its own.
                        RequestId = i == 0 ? requestId : $"{requestId}-{i}",
                        Tenant = turn.Tenant,
                        // One conversation key: the choices land on one decoder and share the prompt's prefix there.
                        ConversationId = conversation,
                        PromptIds = promptIds,
                        Images = images,
                        MaxNewTokens = turn.MaxTokens,
                        Sampling = new SamplingParameters(turn.Temperature, turn.TopP, Seed: turn.Seed is ulong seed ? unchecked(seed + (ulong)i) : null),
                        StopStrings = [.. turn.Stop],
                        StopTokenIds = turn.IgnoreEos ? [] : null,
                        TopLogprobs = turn.TopLogprobs,
                    };
                    started.Add(cluster.GenerateAsync(request, ct => EncodeImagesAsync(turn, imageKeys, ct), cancellationToken).GetAsyncEnumerator(cancellationToken));
                }
                var first = await Task.WhenAll(started.Select(chunks => Cluster(async () => await chunks.MoveNextAsync().ConfigureAwait(false), cancellationToken)))
                    .ConfigureAwait(false);
                if (first.Any(any => !any))
                    throw new OpenAiException(503, "server_error", "The decoder ended the stream without a token.", "empty_stream", retryAfterSeconds: 1);
                return [.. started.Select((chunks, i) => new ChatGeneration(this, turn, requestId, i, chunks, lease.Part(), arrived, textTokens))];
            }
            catch
            {
                foreach (var chunks in started) await DisposeQuietlyAsync(chunks).ConfigureAwait(false);
                await lease.AbandonAsync().ConfigureAwait(false);
                throw;
            }
        }
        catch (OpenAiException e)
        {
            metrics.Reject(e);
            // Shedding (429 / 503) is counted by reason in xgenmm_requests_rejected_total and logged only at Debug: a
            // flood of refused requests wrote two Information lines each (640 lines a second in the overload sweep),
            // console output on the cores the admitted requests need.
            if (e.Status is 429 or 503) LogShed(turn.Tenant, e.Status, e.Code ?? e.Type, e.Message);
            else LogRejected(turn.Tenant, e.Status, e.Code ?? e.Type, e.Message);
            throw;
        }
    }

    /// <summary>Asks the tenant grain for admission within <see cref="CallDeadlines.Tenant"/>; a grain that does not
    /// answer by then (its silo died, or its storage is unreachable) is a 503, and the grain returns a ticket it takes
    /// after that (the call's token is cancelled).</summary>
    private async Task<AdmissionTicket> AdmitAsync(ITenantGrain tenant, int images, long estimate, CancellationToken cancellationToken)
    {
        using var call = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        call.CancelAfter(_deadlines.Tenant);
        return await Cluster(async () =>
        {
            try
            {
                return await tenant.Admit(images, estimate, call.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw OpenAiException.Unavailable($"The tenant's quota could not be checked within {_deadlines.Tenant.TotalSeconds:0.#} s; retry shortly.",
                    "cluster_timeout", 2);
            }
        }, cancellationToken).ConfigureAwait(false);
    }

    private static async Task DisposeQuietlyAsync(IAsyncEnumerator<GenerationChunk> chunks)
    {
        try
        {
            await chunks.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or OrleansException or TimeoutException or ClusterRejectedException)
        {
            // A choice that failed to start may report its failure again on disposal; the first report is the one answered.
        }
    }

    /// <summary>The prompt's token ids, with one &lt;image&gt; token per image, after every text and image check.</summary>
    internal int[] BuildPrompt(ChatTurn turn)
    {
        CheckPrompt(turn);
        return TokenizePrompt(turn);
    }

    /// <summary>The checks that need no tokenizer (message count, the prompt's token bound, each image's header); returns
    /// the fewest tokens the texts can encode to (<see cref="PromptBound"/>).</summary>
    private long CheckPrompt(ChatTurn turn)
    {
        if (turn.Messages.Count == 0) throw OpenAiException.Invalid("'messages' must contain at least one message.", "messages");
        if (turn.Messages.Count > _limits.MaxMessages)
            throw OpenAiException.Invalid($"'messages' has {turn.Messages.Count} messages; the limit is {_limits.MaxMessages}.", "messages", "too_many_messages");
        long weight = 0;
        foreach (var message in turn.Messages)
            foreach (var part in message.Parts)
                if (part.Text is not null) weight += PromptBound.Weight(part.Text);
        long atLeast = _bound.MinTokens(weight);
        if (atLeast > _limits.MaxPromptTokens)
            throw OpenAiException.Invalid($"The prompt is at least {atLeast} tokens; the limit is {_limits.MaxPromptTokens}.", "messages", "context_length_exceeded");
        var imageLimits = new ImageLimits { MaxBytes = _limits.MaxImageBytes, MaxPixels = _limits.MaxImagePixels, MaxSide = _limits.MaxImageSide };
        for (int i = 0; i < turn.Images.Count; i++)
        {
            try
            {
                ImageDecoder.Probe(turn.Images[i], imageLimits);
            }
            catch (ImageDecodeException e)
            {
                throw e.Reason is ImageErrorReason.TooLarge or ImageErrorReason.TooManyPixels
                    ? OpenAiException.TooLarge($"Image {i + 1}: {e.Message}", "image_too_large", "messages")
                    : OpenAiException.InvalidImage($"Image {i + 1}: {e.Message}");
            }
        }
        return atLeast;
    }

    /// <summary>The prompt through the chat template and the tokenizer, after <see cref="CheckPrompt"/>.</summary>
    private int[] TokenizePrompt(ChatTurn turn)
    {
        var messages = new List<ChatMessage>(turn.Messages.Count);
        for (int m = 0; m < turn.Messages.Count; m++)
        {
            var message = turn.Messages[m];
            var content = new StringBuilder();
            foreach (var part in message.Parts)
            {
                if (content.Length > 0) content.Append('\n');
                if (part.Image is not null)
                {
                    if (message.Role != "user") throw OpenAiException.Invalid($"messages[{m}]: only user messages may carry images.", $"messages[{m}].content");
                    content.Append(SpecialTokens.ImageText);
                    continue;
                }
                string text = part.Text ?? "";
                if (text.Contains(SpecialTokens.ImageText, StringComparison.Ordinal))
                    throw OpenAiException.Invalid($"messages[{m}]: the text contains '{SpecialTokens.ImageText}'; send images as image_url content parts.", $"messages[{m}].content");
                content.Append(text);
            }
            messages.Add(new ChatMessage(message.Role, content.ToString()));
        }
        // The fixed system prompt of xGen-MM when the conversation brings none (spec: "used everywhere").
        string prompt;
        try
        {
            prompt = model.ChatTemplate.Apply(messages, addGenerationPrompt: true, addDefaultSystemPrompt: true);
        }
        catch (ChatTemplateException e)
        {
            // The checkpoint's template refused the conversation (raise_exception), e.g. roles out of order.
            throw OpenAiException.Invalid($"The model's chat template refused the conversation: {e.Message}", "messages", "invalid_request");
        }
        Interlocked.Increment(ref _tokenizerCalls);
        var ids = model.Tokenizer.Encode(prompt);
        int textTokens = ids.Count - turn.Images.Count;
        if (textTokens > _limits.MaxPromptTokens)
            throw OpenAiException.Invalid($"The prompt is {textTokens} tokens; the limit is {_limits.MaxPromptTokens}.", "messages", "context_length_exceeded");
        if (model.ContextLength is int context && textTokens + turn.MaxTokens > context)
            throw OpenAiException.Invalid($"The prompt ({textTokens} tokens) plus max_tokens ({turn.MaxTokens}) exceeds the model's context of {context} tokens.",
                "max_tokens", "context_length_exceeded");
        return [.. ids];
    }

    private async Task<ImageRef[]> EncodeImagesAsync(ChatTurn turn, string[] keys, CancellationToken cancellationToken)
    {
        if (turn.Images.Count == 0) return [];
        return await Cluster(() => Task.WhenAll(turn.Images.Select((image, i) => cluster.EncodeImageAsync(keys[i], image, cancellationToken))), cancellationToken)
            .ConfigureAwait(false);
    }

    /// <summary>Follow-up turns of one conversation share their opening, so they map to the same key (decoder affinity).</summary>
    private static string ConversationKey(ChatTurn turn, string[] imageKeys)
    {
        var hash = new XxHash64();
        hash.Append(Encoding.UTF8.GetBytes(turn.Tenant));
        var first = turn.Messages.FirstOrDefault(m => m.Role == "user") ?? turn.Messages[0];
        foreach (var part in first.Parts)
        {
            if (part.Text is not null) hash.Append(Encoding.UTF8.GetBytes(part.Text));
            if (part.Image is int i) hash.Append(Encoding.ASCII.GetBytes(imageKeys[i]));
        }
        return Convert.ToHexStringLower(hash.GetCurrentHash());
    }

    /// <summary>Runs a cluster call and turns the cluster's typed refusals and failures into API errors.</summary>
    internal static async Task<T> Cluster<T>(Func<Task<T>> call, CancellationToken cancellationToken)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (ClusterRejectedException e)
        {
            throw ClusterError(e);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e) when (e is OrleansException or TimeoutException)
        {
            throw OpenAiException.Unavailable($"The cluster could not serve the request: {e.Message}", "cluster_unavailable", 2);
        }
        catch (OperationCanceledException)
        {
            // A deadline of a call inside the cluster, not the caller's cancellation: the request cannot be served now.
            throw OpenAiException.Unavailable("A call inside the cluster missed its deadline; retry shortly.", "cluster_timeout", 2);
        }
    }

    internal static OpenAiException ClusterError(ClusterRejectedException e) => e.Kind switch
    {
        RejectionKind.TooLong => OpenAiException.Invalid(e.Message, "messages", "context_length_exceeded"),
        RejectionKind.Invalid => OpenAiException.Invalid(e.Message, null, "invalid_request"),
        RejectionKind.BadImage => OpenAiException.InvalidImage(e.Message),
        RejectionKind.Overloaded => OpenAiException.Unavailable(e.Message, "overloaded", 2),
        RejectionKind.Expired => OpenAiException.Unavailable(e.Message, "queue_timeout", 2),
        RejectionKind.ShuttingDown => OpenAiException.Unavailable(e.Message, "shutting_down", 1),
        RejectionKind.NoDecoder => OpenAiException.Unavailable(e.Message, "no_decoder", 5),
        RejectionKind.Interrupted => OpenAiException.Unavailable(e.Message, "generation_interrupted", 1),
        RejectionKind.OverCapacity => OpenAiException.Unavailable(e.Message, "over_capacity", Math.Max(1, e.RetryAfterSeconds)),
        RejectionKind.TenantOverShare => OpenAiException.RateLimited(e.Message, "tenant_over_share", Math.Max(1, e.RetryAfterSeconds)),
        RejectionKind.NoVisionSilo => OpenAiException.Unavailable(e.Message, "no_vision_silo", Math.Max(1, e.RetryAfterSeconds)),
        RejectionKind.Unavailable => OpenAiException.Unavailable(e.Message, "cluster_timeout", Math.Max(1, e.RetryAfterSeconds)),
        _ => OpenAiException.Unavailable(e.Message, "cluster_unavailable", 2),
    };

    internal static OpenAiException QuotaError(AdmissionTicket ticket) => ticket.Rejection switch
    {
        QuotaRejection.TooManyImages => OpenAiException.Invalid(ticket.Message ?? "Too many images for this tenant.", "messages", "too_many_images"),
        QuotaRejection.RequestsPerMinute => OpenAiException.RateLimited(ticket.Message ?? "Requests per minute exceeded.", "rate_limit_requests", ticket.RetryAfterSeconds),
        QuotaRejection.TokensPerMinute => OpenAiException.RateLimited(ticket.Message ?? "Tokens per minute exceeded.", "rate_limit_tokens", ticket.RetryAfterSeconds),
        QuotaRejection.ConcurrentStreams => OpenAiException.RateLimited(ticket.Message ?? "Too many concurrent streams.", "rate_limit_concurrency", ticket.RetryAfterSeconds),
        _ => OpenAiException.RateLimited(ticket.Message ?? "Quota exceeded.", "rate_limit", ticket.RetryAfterSeconds),
    };

    /// <summary>
    /// Records a finished request. Prefill and decode times are the decoder's when it reports them; otherwise they are
    /// read off the stream as the gateway saw it (prefill = time to first token less queue time, decode = the rest).
    /// </summary>
    internal void Record(ChatTurn turn, string finish, UsageReport usage, double ttft, double e2e, TimingReport? engine, IReadOnlyList<double> gaps)
    {
        string name = model.Id;
        double queue = engine?.QueueSeconds ?? 0;
        double prefill = engine is { PrefillSeconds: > 0 } ? engine.PrefillSeconds : Math.Max(0, ttft - queue);
        double decode = engine is { EndToEndSeconds: > 0 } ? Math.Max(0, engine.EndToEndSeconds - engine.TimeToFirstTokenSeconds) : Math.Max(0, e2e - ttft);
        metrics.TimeToFirstToken.WithLabels(name, turn.Protocol).Observe(ttft);
        metrics.EndToEnd.WithLabels(name, turn.Protocol).Observe(e2e);
        metrics.QueueTime.WithLabels(name, turn.Protocol).Observe(queue);
        metrics.PrefillTime.WithLabels(name, turn.Protocol).Observe(prefill);
        metrics.DecodeTime.WithLabels(name, turn.Protocol).Observe(decode);
        metrics.RequestPromptTokens.WithLabels(name, turn.Protocol).Observe(usage.OpenAiPromptTokens());
        metrics.RequestGenerationTokens.WithLabels(name, turn.Protocol).Observe(usage.CompletionTokens);
        var itl = metrics.InterTokenLatency.WithLabels(name, turn.Protocol);
        foreach (var gap in gaps) itl.Observe(gap);
        metrics.PrefixCacheQueries.WithLabels(name).Inc(usage.OpenAiPromptTokens());
        metrics.PrefixCacheHits.WithLabels(name).Inc(usage.CachedTokens);
        metrics.PromptTokens.WithLabels(turn.Tenant, name).Inc(usage.PromptTokens);
        metrics.ImageTokens.WithLabels(turn.Tenant, name).Inc(usage.ImageTokens);
        metrics.GenerationTokens.WithLabels(turn.Tenant, name).Inc(usage.CompletionTokens);
        metrics.Success.WithLabels(turn.Tenant, finish, name).Inc();
    }

    /// <summary>A request that ended before its last token (the client went away): counted as an abort.</summary>
    internal void RecordAbort(ChatTurn turn) => metrics.Success.WithLabels(turn.Tenant, "abort", model.Id).Inc();

    internal void RecordFailure(OpenAiException error) => metrics.Reject(error);

    internal GatewayMetrics Metrics => metrics;

    /// <summary>
    /// A tenant's lease for one admitted turn of one or more choices: each choice's generation returns its part with
    /// what it spent, and the lease goes back to the tenant once, with the sum, when the last part is in.
    /// </summary>
    internal sealed class Lease(ITenantGrain tenant, string id, long estimate, int parts)
    {
        private readonly Lock _gate = new();
        private readonly int _parts = parts;
        private int _outstanding = parts, _handedOut;
        private long _prompt, _image, _completion, _cached;
        private int _returned;

        /// <summary>The part of the next choice; every part must be returned exactly once.</summary>
        public LeasePart Part()
        {
            if (Interlocked.Increment(ref _handedOut) > _parts) throw new InvalidOperationException("More choices than the lease was taken for.");
            return new LeasePart(this);
        }

        internal async Task ReturnPartAsync(UsageReport usage)
        {
            bool last;
            lock (_gate)
            {
                _prompt += usage.PromptTokens;
                _image += usage.ImageTokens;
                _completion += usage.CompletionTokens;
                _cached += usage.CachedTokens;
                last = --_outstanding == 0;
            }
            if (last) await ReturnAsync(new UsageReport((int)_prompt, (int)_image, (int)_completion, (int)_cached)).ConfigureAwait(false);
        }

        /// <summary>Nothing was generated (the turn failed before its first tokens): the lease goes back empty.</summary>
        public Task AbandonAsync() => ReturnAsync(new UsageReport(0, 0, 0, 0));

        /// <summary>Gives the tenant's lease back with what was really spent; never throws (a lost lease expires by itself).</summary>
        private async Task ReturnAsync(UsageReport usage)
        {
            if (Interlocked.Exchange(ref _returned, 1) == 1) return;
            try
            {
                await tenant.Complete(id, estimate, usage).WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // The tenant grain's lease times out on its own; usage of this one request is then counted as estimated.
            }
        }
    }

    /// <summary>One choice's share of a <see cref="Lease"/>, returned once whichever way the choice ends.</summary>
    internal sealed class LeasePart(Lease lease)
    {
        private int _returned;

        public Task ReturnAsync(UsageReport usage) =>
            Interlocked.Exchange(ref _returned, 1) == 1 ? Task.CompletedTask : lease.ReturnPartAsync(usage);
    }

    [LoggerMessage(EventId = 701, Level = LogLevel.Information, Message = "Tenant {Tenant}: request refused with {Status} {Code}: {Reason}")]
    private partial void LogRejected(string tenant, int status, string code, string reason);

    [LoggerMessage(EventId = 704, Level = LogLevel.Debug, Message = "Tenant {Tenant}: request shed with {Status} {Code}: {Reason}")]
    private partial void LogShed(string tenant, int status, string code, string reason);

    [LoggerMessage(EventId = 702, Level = LogLevel.Warning, Message = "Tenant {Tenant}: request {RequestId} failed mid-stream after {Tokens} token(s): {Reason}")]
    internal partial void LogStreamFailed(string tenant, string requestId, int tokens, string reason);
}

/// <summary>
/// A generation in progress: deltas as tokens arrive. Disposing it early (client cancelled or disconnected) cancels
/// the generation in the cluster; either way the tenant's lease is returned with the real usage and metrics recorded.
/// </summary>
public sealed class ChatGeneration : IAsyncEnumerable<ChatDelta>, IAsyncDisposable
{
    private readonly ChatService _service;
    private readonly ChatTurn _turn;
    private readonly IAsyncEnumerator<GenerationChunk> _chunks;
    private readonly ChatService.LeasePart _lease;
    private readonly long _arrived;
    private readonly int _textTokens;
    private int _produced, _enumerated;
    private bool _finished;

    internal ChatGeneration(ChatService service, ChatTurn turn, string requestId, int index, IAsyncEnumerator<GenerationChunk> chunks, ChatService.LeasePart lease, long arrived, int textTokens)
    {
        _service = service;
        _turn = turn;
        RequestId = requestId;
        Index = index;
        _chunks = chunks;
        _lease = lease;
        _arrived = arrived;
        _textTokens = textTokens;
        _service.Metrics.ActiveStreams.WithLabels(turn.Protocol).Inc();
    }

    /// <summary>The id of the whole completion (every choice of one request shares it).</summary>
    public string RequestId { get; }
    /// <summary>The choice's index in the completion (OpenAI's <c>choices[].index</c>).</summary>
    public int Index { get; }
    public long Created { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public async IAsyncEnumerator<ChatDelta> GetAsyncEnumerator(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _enumerated, 1) == 1) throw new InvalidOperationException("A chat stream can be read once.");
        double ttft = Stopwatch.GetElapsedTime(_arrived).TotalSeconds;
        var gaps = new List<double>();
        long last = Stopwatch.GetTimestamp();
        var chunk = _chunks.Current;
        while (true)
        {
            if (chunk.IsFinal)
            {
                // The decoder's report as it came: one vocabulary from the decoder to the tenant's ledger.
                var usage = chunk.Usage ?? new UsageReport(_textTokens, 0, _produced, 0);
                double e2e = Stopwatch.GetElapsedTime(_arrived).TotalSeconds;
                var timings = new TimingReport(chunk.Timings?.QueueSeconds ?? 0, ttft, e2e, chunk.Timings?.PrefillSeconds ?? 0);
                string finish = chunk.Finish switch { FinishKind.Length => "length", FinishKind.Cancelled => "abort", _ => "stop" };
                _finished = true;
                _service.Record(_turn, finish, usage, ttft, e2e, chunk.Timings, gaps);
                await _lease.ReturnAsync(usage).ConfigureAwait(false);
                yield return new ChatDelta(chunk.Text, finish, usage, timings);
                yield break;
            }
            _produced++;
            yield return new ChatDelta(chunk.Text) { Logprobs = ToLogprobs(chunk) };

            bool more;
            try
            {
                more = await ChatService.Cluster(async () => await _chunks.MoveNextAsync().ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
            }
            catch (OpenAiException e)
            {
                _service.RecordFailure(e);
                _service.LogStreamFailed(_turn.Tenant, RequestId, _produced, e.Message);
                throw;
            }
            if (!more)
            {
                var e = OpenAiException.Unavailable("The generation stream ended without a final chunk.", "generation_interrupted", 1);
                _service.RecordFailure(e);
                throw e;
            }
            long now = Stopwatch.GetTimestamp();
            gaps.Add(Stopwatch.GetElapsedTime(last, now).TotalSeconds);
            last = now;
            chunk = _chunks.Current;
        }
    }

    private static TokenLogprobs? ToLogprobs(GenerationChunk chunk)
    {
        if (chunk.Logprob is not double logprob) return null;
        var top = chunk.TopLogprobs ?? [];
        // The sampled token's own text when it is among the alternatives (the delta's text can be empty or held back
        // while a stop string or a UTF-8 sequence is incomplete).
        string token = top.FirstOrDefault(t => t.TokenId == chunk.TokenId)?.Text ?? chunk.Text;
        return new TokenLogprobs(token, logprob, [.. top.Select(t => (t.Text, t.Logprob))]);
    }

    public async ValueTask DisposeAsync()
    {
        _service.Metrics.ActiveStreams.WithLabels(_turn.Protocol).Dec();
        try
        {
            await _chunks.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or OrleansException or TimeoutException)
        {
            // Disposing a cancelled stream reports the cancellation; the generation is already being torn down.
        }
        if (!_finished)
        {
            _service.RecordAbort(_turn);
            await _lease.ReturnAsync(new UsageReport(_textTokens, 0, _produced, 0)).ConfigureAwait(false);
        }
    }
}
