using System.Collections.Concurrent;
using System.Globalization;
using System.IO.Hashing;
using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime;
using XGenMM.Cluster.Abstractions;

namespace XGenMM.Cluster.Client;

/// <summary>
/// Routes generations to decoders and keeps streams alive across decoder failures. Decoder choice: the
/// conversation's affine decoder (rendezvous hashing of the conversation id over the live decoders, so every
/// gateway agrees without sharing state) unless it is draining or has too much queued, else the least loaded one.
/// </summary>
public sealed partial class ClusterChat : IClusterChat, IDisposable
{
    private readonly IGrainFactory grains;
    private readonly ILogger<ClusterChat> logger;
    private readonly ClusterChatOptions _options;
    private readonly ClusterWatch _watch;
    private readonly SemaphoreSlim _refresh = new(1, 1);
    private DecoderLoadReport[] _decoders = [];
    private readonly InflightLedger _inflight = new(TimeProvider.System);
    /// <summary>When each tenant was last refused for its share here (Environment.TickCount64).</summary>
    private readonly ConcurrentDictionary<string, long> _overShareAt = new(StringComparer.Ordinal);
    private DateTimeOffset _fetched = DateTimeOffset.MinValue, _listed = DateTimeOffset.MinValue;

    public ClusterChat(IGrainFactory grains, IOptions<ClusterChatOptions> options, ILogger<ClusterChat> logger)
    {
        this.grains = grains;
        this.logger = logger;
        _options = options.Value;
        _watch = new ClusterWatch(grains, _options.Deadlines, logger);
    }

    /// <summary>The cluster's active silos as this client sees them.</summary>
    public ClusterWatch Watch => _watch;

    public async Task<ImageRef> EncodeImageAsync(string contentKey, byte[] image, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(contentKey);
        var grain = grains.GetGrain<IVisionGrain>(contentKey);
        var deadline = _options.Deadlines.Encode;
        using var overall = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        overall.CancelAfter(deadline);
        for (int attempt = 1; ; attempt++)
        {
            if (_watch.KnowsNoVisionSilo) throw NoVisionSilo();
            // Taken before the call: a vision silo that leaves from now on may have been the one encoding this image.
            var visionLoss = _watch.VisionLoss;
            using var call = CancellationTokenSource.CreateLinkedTokenSource(overall.Token, visionLoss);
            try
            {
                return await grain.Encode(image, call.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                throw;
            }
            catch (OperationCanceledException) when (visionLoss.IsCancellationRequested && !overall.IsCancellationRequested)
            {
                // Its silo may be the one that left: encode again, on a vision silo that is alive (or fail, typed, if none is).
                LogVisionCallMoved(contentKey, attempt);
                continue;
            }
            catch (OperationCanceledException)
            {
                throw new ClusterRejectedException(RejectionKind.Unavailable, string.Create(CultureInfo.InvariantCulture,
                    $"The image was not encoded within {deadline.TotalSeconds:0.#} s ({attempt} attempt(s)).")) { RetryAfterSeconds = 2 };
            }
            catch (Exception e) when (IsDecoderLoss(e))
            {
                // A vision silo left, or the one that just joined is not yet known everywhere, or none is left: look at
                // the cluster again and place again shortly, within the deadline.
                LogVisionCallFailed(contentKey, attempt, e.GetType().Name, e.Message);
                try
                {
                    await _watch.RefreshAsync(overall.Token).ConfigureAwait(false);
                    if (_watch.KnowsNoVisionSilo) throw NoVisionSilo();
                    await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(1000, 200 * attempt)), overall.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    throw new ClusterRejectedException(RejectionKind.Unavailable, string.Create(CultureInfo.InvariantCulture,
                        $"The image could not be encoded within {deadline.TotalSeconds:0.#} s: {e.Message}")) { RetryAfterSeconds = 2 };
                }
            }
        }
    }

    private static ClusterRejectedException NoVisionSilo() =>
        new(RejectionKind.NoVisionSilo, "No vision silo is active in the cluster: the images cannot be encoded now.") { RetryAfterSeconds = 5 };

    public async Task<DecoderLoadReport[]> GetDecodersAsync(CancellationToken cancellationToken = default)
    {
        if (DateTimeOffset.UtcNow - _fetched < _options.RegistryRefresh) return Live(_decoders);
        await _refresh.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (DateTimeOffset.UtcNow - _fetched >= _options.RegistryRefresh)
            {
                using var call = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                call.CancelAfter(_options.Deadlines.Registry);
                try
                {
                    _decoders = await grains.GetGrain<IDecoderRegistryGrain>(0).List(call.Token).ConfigureAwait(false);
                    _fetched = _listed = DateTimeOffset.UtcNow;
                }
                catch (Exception e) when ((e is OperationCanceledException || IsDecoderLoss(e)) && !cancellationToken.IsCancellationRequested)
                {
                    // The registry lived on a silo that just went down (it comes back on another one at the next call), or
                    // it did not answer in time. Route on the last list while it is recent, less the silos that left.
                    LogRegistryUnavailable(e);
                    if (DateTimeOffset.UtcNow - _listed > _options.Deadlines.RegistryMaxAge) _decoders = [];
                }
            }
            return Live(_decoders);
        }
        finally
        {
            _refresh.Release();
        }
    }

    /// <summary>The decoders whose silo is still in the cluster's view (the registry drops a dead one only once its
    /// own silo's membership has, and a list read before that may still name it).</summary>
    private DecoderLoadReport[] Live(DecoderLoadReport[] decoders) =>
        decoders.All(d => _watch.IsActive(d.Silo)) ? decoders : [.. decoders.Where(d => _watch.IsActive(d.Silo))];

    public async IAsyncEnumerable<GenerationChunk> GenerateAsync(GenerationRequest request, Func<CancellationToken, Task<ImageRef[]>>? reencode = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var produced = new List<int>();
        var text = new StringBuilder();
        var failed = new HashSet<string>(StringComparer.Ordinal);
        int attempts = 0;
        Exception? lastError = null;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (attempts > _options.MaxRecoveryAttempts)
                throw new ClusterRejectedException(produced.Count == 0 ? RejectionKind.NoDecoder : RejectionKind.Interrupted,
                    produced.Count == 0
                        ? $"No decoder could run the request after {attempts} attempt(s): {lastError?.Message}"
                        : $"The generation was interrupted after {produced.Count} token(s) and could not be resumed after {attempts} attempt(s): {lastError?.Message}")
                { ProducedText = text.ToString(), ProducedTokens = produced.Count };
            attempts++;
            // A generation already streaming was admitted once: moving it is recovery, never a refusal.
            long admitTokens = produced.Count == 0 ? CapacityModel.PromptPositions(request) : -1;
            var decoder = await PickAsync(request, admitTokens, failed, cancellationToken).ConfigureAwait(false);
            for (var waited = System.Diagnostics.Stopwatch.StartNew(); decoder is null && waited.Elapsed < _options.NoDecoderWait;)
            {
                // Decoders may be starting or the registry failing over: look again shortly.
                await Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken).ConfigureAwait(false);
                _fetched = DateTimeOffset.MinValue;
                failed.Clear();
                decoder = await PickAsync(request, admitTokens, failed, cancellationToken).ConfigureAwait(false);
            }
            if (decoder is null)
            {
                lastError = new ClusterRejectedException(RejectionKind.NoDecoder, $"No decoder is registered in the cluster (waited {_options.NoDecoderWait.TotalSeconds:0.#} s).");
                attempts = _options.MaxRecoveryAttempts + 1;
                continue;
            }
            var attempt = request with { ResumeTokenIds = [.. request.ResumeTokenIds, .. produced], TenantPressing = Pressing(request.Tenant) };
            // Calibration of the capacity model: what it predicted for the decoder chosen, against the first token's
            // arrival here (docs/architecture.md, "Admission control"; loadtest/results/2026-12-05-overload-calibrated).
            var calibration = admitTokens >= 0 && logger.IsEnabled(LogLevel.Debug)
                ? (Prediction: CapacityModel.Predict(decoder, admitTokens), Report: decoder, Clock: System.Diagnostics.Stopwatch.StartNew())
                : default;
            var inflight = _inflight.Start(decoder.DecoderKey, request.Tenant, CapacityModel.PromptPositions(attempt), request.MaxNewTokens - produced.Count);
            if (produced.Count > 0) LogResuming(request.RequestId, decoder.DecoderKey, produced.Count);
            // The stream ends when its decoder's silo leaves the cluster: a dead silo never answers the next MoveNext.
            var decoderLost = _watch.SiloLost(decoder.Silo);
            using var attemptToken = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, decoderLost);
            var stream = grains.GetGrain<IDecoderGrain>(decoder.DecoderKey).Generate(attempt, attemptToken.Token)
                .WithBatchSize(_options.StreamBatchSize).GetAsyncEnumerator(attemptToken.Token);
            bool retry = false;
            try
            {
                while (true)
                {
                    GenerationChunk chunk;
                    try
                    {
                        if (!await stream.MoveNextAsync()) break;
                        chunk = stream.Current;
                    }
                    catch (ClusterRejectedException e) when (e.Kind == RejectionKind.VisionTokensMissing && reencode is not null)
                    {
                        LogReencoding(request.RequestId, e.Message);
                        request = request with { Images = await reencode(cancellationToken).ConfigureAwait(false) };
                        lastError = e;
                        retry = true;
                        break;
                    }
                    catch (ClusterRejectedException e) when (e.Kind is RejectionKind.ShuttingDown or RejectionKind.Overloaded or RejectionKind.Expired)
                    {
                        // That decoder cannot take it now: another one may.
                        failed.Add(decoder.DecoderKey);
                        lastError = e;
                        retry = true;
                        break;
                    }
                    catch (Exception e) when ((IsDecoderLoss(e) || (e is OperationCanceledException && decoderLost.IsCancellationRequested))
                        && !cancellationToken.IsCancellationRequested)
                    {
                        LogDecoderLost(e, request.RequestId, decoder.DecoderKey, produced.Count);
                        failed.Add(decoder.DecoderKey);
                        _fetched = DateTimeOffset.MinValue;
                        lastError = e;
                        retry = true;
                        break;
                    }
                    if (!chunk.IsFinal)
                    {
                        if (produced.Count == 0 && calibration.Clock is { } clock) LogPredictedTtft(calibration.Report, calibration.Prediction, clock.Elapsed.TotalSeconds);
                        _inflight.Token(inflight);
                        produced.Add(chunk.TokenId);
                        text.Append(chunk.Text);
                    }
                    yield return chunk;
                    if (chunk.IsFinal) yield break;
                }
            }
            finally
            {
                _inflight.End(inflight);
                await DisposeBoundedAsync(stream).ConfigureAwait(false);
            }
            if (!retry)
            {
                // A stream cut short without an error (its silo went down between two batches): move it like a loss.
                cancellationToken.ThrowIfCancellationRequested();
                LogDecoderEndedEarly(request.RequestId, decoder.DecoderKey, produced.Count);
                failed.Add(decoder.DecoderKey);
                _fetched = DateTimeOffset.MinValue;
                lastError = new ClusterRejectedException(RejectionKind.Interrupted, $"Decoder '{decoder.DecoderKey}' ended the stream without a final chunk.");
            }
        }
    }

    /// <summary>Ends a token stream, waiting at most <see cref="CallDeadlines.StreamDispose"/> for its decoder (a dead one
    /// never answers); a failure to dispose is not the request's failure.</summary>
    private async Task DisposeBoundedAsync(IAsyncEnumerator<GenerationChunk> stream)
    {
        try
        {
            await stream.DisposeAsync().AsTask().WaitAsync(_options.Deadlines.StreamDispose).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException or OrleansException or ClusterRejectedException)
        {
            LogStreamDisposeFailed(e);
        }
    }

    /// <summary>Failures that mean the decoder (or its silo, or the link to it) is gone, not that the request is bad.</summary>
    private static bool IsDecoderLoss(Exception e) => e is SiloUnavailableException or OrleansMessageRejectionException
        or EnumerationAbortedException or TimeoutException
        || (e is OrleansException && e is not ClusterRejectedException);

    private async Task<DecoderLoadReport?> PickAsync(GenerationRequest request, long promptTokens, HashSet<string> failed, CancellationToken cancellationToken) =>
        Admit(await ViewAsync(failed, cancellationToken).ConfigureAwait(false), request.ConversationId, promptTokens, request.Tenant, request.RequestId);

    public async Task CheckCapacityAsync(string tenant, long minPromptPositions, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(tenant);
        var live = await ViewAsync(null, cancellationToken).ConfigureAwait(false);
        // No decoder at all is not a refusal at the door: GenerateAsync waits a while for one to register.
        if (live.Length > 0) Admit(live, null, Math.Max(1, minPromptPositions), tenant, null);
    }

    /// <summary>The decoders a new request may go to, as this router sees them now: live, not draining, not failed
    /// for this request, each report moved by this router's own requests since (<see cref="InflightLedger"/>).</summary>
    private async Task<DecoderLoadReport[]> ViewAsync(HashSet<string>? failed, CancellationToken cancellationToken) =>
        [.. (await GetDecodersAsync(cancellationToken).ConfigureAwait(false)).Where(d => !d.Draining && failed?.Contains(d.DecoderKey) != true)
            .Select(_inflight.Adjust)];

    /// <summary><see cref="Choose"/>, remembering a tenant refused for its share (it is pressing) and logging refusals
    /// (of <paramref name="requestId"/>, or of a new request of the tenant when asked before it has one).</summary>
    private DecoderLoadReport? Admit(DecoderLoadReport[] live, string? conversationId, long promptTokens, string tenant, string? requestId)
    {
        try
        {
            return Choose(live, conversationId, promptTokens, _options, tenant, Pressing);
        }
        catch (ClusterRejectedException e) when (e.Kind is RejectionKind.OverCapacity or RejectionKind.TenantOverShare)
        {
            if (e.Kind == RejectionKind.TenantOverShare) _overShareAt[tenant] = Environment.TickCount64;
            if (logger.IsEnabled(LogLevel.Debug)) LogOverCapacity(requestId is null ? $"A new request of tenant '{tenant}'" : $"Request {requestId}", e.Message);
            throw;
        }
    }

    /// <summary>How long a tenant refused for its share counts as pressing (<see cref="TenantShare.Of"/>): its refused
    /// users come back within about a second (Retry-After 1 s, or sooner).</summary>
    internal static readonly TimeSpan PressingFor = TimeSpan.FromSeconds(1);

    /// <summary>Whether this router refused <paramref name="tenant"/> for its share within <see cref="PressingFor"/>.</summary>
    private bool Pressing(string tenant) =>
        _overShareAt.TryGetValue(tenant, out long at) && Environment.TickCount64 - at < (long)PressingFor.TotalMilliseconds;

    private static bool Idle(DecoderLoadReport d) => d.Running == 0 && d.Waiting == 0 && d.PrefillingTokens == 0 && d.WaitingTokens == 0;

    /// <summary>The decoder for a request among the live ones, or null when there is none. With admission control on
    /// and <paramref name="promptTokens"/> &gt;= 0, only decoders predicted within the TTFT target are candidates;
    /// when none is, a <paramref name="tenant"/> below its weighted share of a decoder still goes there (see
    /// <see cref="TenantShare"/>), and otherwise the request is refused.</summary>
    /// <exception cref="ClusterRejectedException">TenantOverShare when the tenant holds its share while another
    /// tenant is there, else OverCapacity; both with when to come back.</exception>
    internal static DecoderLoadReport? Choose(DecoderLoadReport[] live, string? conversationId, long promptTokens, ClusterChatOptions options, string? tenant = null,
        Func<string, bool>? pressing = null)
    {
        if (live.Length == 0) return null;
        var candidates = live;
        double target = options.Admission.TtftTargetSeconds;
        if (target > 0 && promptTokens >= 0)
        {
            var predicted = live.Select(d => (Decoder: d, Seconds: options.Admission.Measure(CapacityModel.Predict(d, promptTokens)))).ToArray();
            // An idle decoder is always a candidate: nothing waits ahead of the request, so refusing it cannot make its
            // first token sooner (a decoder's first prefill, with one-time start-up work in its measured cost, would
            // otherwise refuse the very first requests after a start on a busy machine).
            candidates = [.. predicted.Where(p => p.Seconds <= target || Idle(p.Decoder)).Select(p => p.Decoder)];
            if (candidates.Length == 0)
            {
                var best = predicted.MinBy(p => p.Seconds);
                double retryAfter = CapacityModel.RetryAfterSeconds(best.Seconds, target, options.Admission.MaxRetryAfterSeconds);
                if (tenant is not null)
                {
                    var shares = predicted.Select(p => (p.Decoder, Share: TenantShare.Of(p.Decoder, tenant, pressing, target / p.Seconds))).ToArray();
                    candidates = [.. shares.Where(s => s.Share.Below && s.Share.OthersPresent).Select(s => s.Decoder)];
                    if (candidates.Length > 0) return candidates.MinBy(d => predicted.First(p => p.Decoder == d).Seconds);
                    var crowded = shares.FirstOrDefault(s => s.Share.OthersPresent);
                    if (crowded.Decoder is not null)
                        throw new ClusterRejectedException(RejectionKind.TenantOverShare, string.Create(CultureInfo.InvariantCulture,
                            $"Tenant '{tenant}' is over its share: the cluster is over its admission target of {target:0.###} s and this tenant holds {crowded.Share.Rows} of the {crowded.Decoder.TotalSlots} slots of decoder '{crowded.Decoder.DecoderKey}' (its weighted share: {crowded.Share.Slots:0.#}) while other tenants use it; retry in {retryAfter:0} s."))
                        { RetryAfterSeconds = retryAfter };
                }
                throw new ClusterRejectedException(RejectionKind.OverCapacity, string.Create(CultureInfo.InvariantCulture,
                    $"The cluster is over capacity: the shortest predicted {options.Admission.MeasureName} is {best.Seconds:0.###} s (decoder '{best.Decoder.DecoderKey}'), over the target of {target:0.###} s; retry in {retryAfter:0} s."))
                { RetryAfterSeconds = retryAfter };
            }
        }
        if (conversationId is not null)
        {
            // Affinity is decided over all live decoders, so that a conversation keeps its decoder once that one is
            // back under the target; while it is over, the request goes elsewhere.
            var affine = live.MaxBy(d => Rendezvous(conversationId, d.DecoderKey))!;
            if (affine.WaitingTokens <= options.AffinityMaxWaitingTokens && affine.Waiting < Math.Max(1, affine.TotalSlots) && candidates.Contains(affine)) return affine;
        }
        return candidates.MinBy(d => (d.Waiting + (double)d.Running / Math.Max(1, d.TotalSlots), d.WaitingTokens, Rendezvous(conversationId ?? "", d.DecoderKey)));
    }

    /// <summary>The decoder a conversation sticks to while it can take it.</summary>
    internal static string AffineDecoder(IEnumerable<string> decoderKeys, string conversationId) => decoderKeys.MaxBy(k => Rendezvous(conversationId, k))!;

    private static ulong Rendezvous(string conversation, string decoder) =>
        XxHash64.HashToUInt64(Encoding.UTF8.GetBytes(conversation + "\n" + decoder));

    public void Dispose()
    {
        _watch.Dispose();
        _refresh.Dispose();
    }

    [LoggerMessage(EventId = 201, Level = LogLevel.Warning, Message = "Request {RequestId}: decoder {Decoder} was lost after {Produced} token(s); moving the generation")]
    private partial void LogDecoderLost(Exception exception, string requestId, string decoder, int produced);

    [LoggerMessage(EventId = 202, Level = LogLevel.Information, Message = "Request {RequestId}: resuming on {Decoder} after {Produced} token(s)")]
    private partial void LogResuming(string requestId, string decoder, int produced);

    [LoggerMessage(EventId = 204, Level = LogLevel.Warning, Message = "Request {RequestId}: decoder {Decoder} ended the stream without finishing it after {Produced} token(s); moving the generation")]
    private partial void LogDecoderEndedEarly(string requestId, string decoder, int produced);

    [LoggerMessage(EventId = 205, Level = LogLevel.Warning, Message = "The decoder registry could not be read; routing on the last known decoders")]
    private partial void LogRegistryUnavailable(Exception exception);

    [LoggerMessage(EventId = 206, Level = LogLevel.Debug, Message = "{Request} refused at admission: {Reason}")]
    private partial void LogOverCapacity(string request, string reason);

    [LoggerMessage(EventId = 207, Level = LogLevel.Warning, Message = "Image {Key}: a vision silo left the cluster during attempt {Attempt}; encoding again")]
    private partial void LogVisionCallMoved(string key, int attempt);

    [LoggerMessage(EventId = 208, Level = LogLevel.Warning, Message = "Image {Key}: attempt {Attempt} failed ({Kind}: {Reason}); placing it again")]
    private partial void LogVisionCallFailed(string key, int attempt, string kind, string reason);

    [LoggerMessage(EventId = 209, Level = LogLevel.Debug, Message = "A token stream could not be disposed; its decoder is gone or busy")]
    private partial void LogStreamDisposeFailed(Exception exception);

    private void LogPredictedTtft(DecoderLoadReport report, TtftPrediction predicted, double measured) =>
        LogPredictedTtft(report.DecoderKey, predicted.Seconds, measured, predicted.SlotWaitSeconds, predicted.PrefillSeconds, predicted.InterleavedDecodeSeconds,
            report.Running, report.Waiting, report.PrefillingTokens, report.WaitingTokens, report.DecodeStepSeconds, report.StepFixedSeconds,
            report.StepSecondsPerRow, report.StepSecondsPerPrefillToken, report.PrefillChunkTokens, report.PrefixReuseFraction, (DateTimeOffset.UtcNow - report.At).TotalSeconds - measured);

    [LoggerMessage(EventId = 210, Level = LogLevel.Debug, Message = "TTFT calibration on {Decoder}: predicted {Predicted:F4} s, measured {Measured:F4} s (slot wait {SlotWait:F4}, prefill {Prefill:F4}, interleaved {Interleaved:F4}; running {Running}, waiting {Waiting}, prefilling {Prefilling}, waiting tokens {WaitingTokens}, step {Step:F5} s, pass {FixedSeconds:F5} s + {PerRow:F6} s/row + {PerToken:F6} s/position, chunk {Chunk}, reuse {Reuse:F2}, report age {Age:F3} s)")]
    private partial void LogPredictedTtft(string decoder, double predicted, double measured, double slotWait, double prefill, double interleaved,
        int running, int waiting, long prefilling, long waitingTokens, double step, double fixedSeconds, double perRow, double perToken, int chunk, double reuse, double age);

    [LoggerMessage(EventId = 203, Level = LogLevel.Warning, Message = "Request {RequestId}: image tokens lost ({Reason}); encoding the images again")]
    private partial void LogReencoding(string requestId, string reason);
}
