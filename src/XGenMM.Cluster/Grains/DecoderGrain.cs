using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;
using Orleans.GrainDirectory;
using XGenMM.Cluster.Abstractions;
using XGenMM.Cluster.Hosting;
using XGenMM.Cluster.Placement;
using XGenMM.Engine.Decoding;
using XGenMM.Engine.Vision;
using XGenMM.Model.Generation;

namespace XGenMM.Cluster.Grains;

/// <summary>
/// The decode engine of one device (key "{silo}|{device}"), pinned to its silo. Reentrant: every call is a separate
/// stream into the same continuous batch. Vision tokens are pulled from the vision grains here, silo to silo.
/// </summary>
[DecoderPlacement]
[Reentrant]
[GrainDirectory(GrainDirectoryName = DirectoryName)]
internal sealed partial class DecoderGrain(EngineHost engines, IGrainFactory grains, SiloState state, IOptions<SiloSettings> settings,
    ILogger<DecoderGrain> logger) : Grain, IDecoderGrain
{
    /// <summary>The grain directory of decoder grains (Orleans' distributed one, see ClusterHostingExtensions).</summary>
    internal const string DirectoryName = "decoders";

    private DecodeEngine Engine => engines.GetDecoder(DecoderKey.Parse(this.GetPrimaryKeyString()).Device);

    public async IAsyncEnumerable<GenerationChunk> Generate(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (state.Draining) throw new ClusterRejectedException(RejectionKind.ShuttingDown, $"Decoder '{this.GetPrimaryKeyString()}' is draining.");
        // Held until the caller has pulled the last chunk (or left): a draining silo waits for it before exiting.
        using var open = state.OpenStream();
        var images = await PullVisionTokensAsync(request, cancellationToken).ConfigureAwait(true);
        var decodeRequest = new DecodeRequest
        {
            RequestId = request.RequestId,
            Tenant = request.Tenant,
            PromptIds = request.PromptIds,
            Images = images.Select(p => new VisionTokens(p.Data, p.Rows, p.Dim, WireMaps.ToEngine(p.Format), p.ContentKey)).ToArray(),
            MaxNewTokens = request.MaxNewTokens,
            Sampling = new SamplingOptions
            {
                Temperature = request.Sampling.Temperature,
                TopP = request.Sampling.TopP,
                TopK = request.Sampling.TopK,
                RepetitionPenalty = request.Sampling.RepetitionPenalty,
                Seed = request.Sampling.Seed,
            },
            StopTokenIds = request.StopTokenIds ?? new DecodeRequest { RequestId = "", PromptIds = [] }.StopTokenIds,
            StopStrings = request.StopStrings,
            Priority = WireMaps.ToEngine(request.Priority),
            ResumeTokenIds = request.ResumeTokenIds,
            TopLogprobs = request.TopLogprobs,
            TenantPressing = request.TenantPressing,
        };
        IAsyncEnumerator<DecodeEvent> stream;
        try
        {
            stream = Engine.Submit(decodeRequest, cancellationToken).GetAsyncEnumerator(cancellationToken);
        }
        catch (EngineRejectedException e)
        {
            throw new ClusterRejectedException(WireMaps.ToWire(e.Reason), e.Message);
        }
        string decoder = this.GetPrimaryKeyString();
        try
        {
            while (true)
            {
                DecodeEvent e;
                try
                {
                    if (!await stream.MoveNextAsync().ConfigureAwait(true)) yield break;
                    e = stream.Current;
                }
                catch (EngineRejectedException ex)
                {
                    throw new ClusterRejectedException(WireMaps.ToWire(ex.Reason), ex.Message);
                }
                yield return new GenerationChunk
                {
                    TokenId = e.TokenId,
                    Text = e.Text,
                    Index = e.Index,
                    Finish = e.Finish is { } f ? WireMaps.ToWire(f) : null,
                    Usage = e.Usage is { } u ? new UsageReport(u.PromptTokens, u.ImageTokens, u.CompletionTokens, u.CachedTokens) : null,
                    Timings = e.Timings is { } t ? new TimingReport(t.QueueSeconds, t.TimeToFirstTokenSeconds, t.EndToEndSeconds, t.PrefillSeconds) : null,
                    Decoder = e.IsFinal ? decoder : null,
                    Logprob = e.Logprob,
                    TopLogprobs = e.TopLogprobs?.Select(t => new TokenLogprobReport(t.TokenId, t.Text, t.Logprob)).ToArray(),
                };
            }
        }
        finally
        {
            await stream.DisposeAsync().ConfigureAwait(true);
        }
    }

    /// <summary>
    /// The images' tokens from their vision grains, within <see cref="SiloSettings.VisionPullTimeoutSeconds"/>. A vision
    /// silo that died or does not answer in time means the tokens are lost to this request: that is VisionTokensMissing,
    /// which the gateway answers by encoding the images again (on a vision silo that is alive) and retrying.
    /// </summary>
    private async Task<VisionTokensPayload[]> PullVisionTokensAsync(GenerationRequest request, CancellationToken cancellationToken)
    {
        if (request.Images.Length == 0) return [];
        var deadline = TimeSpan.FromSeconds(settings.Value.VisionPullTimeoutSeconds);
        using var pull = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        pull.CancelAfter(deadline);
        try
        {
            return await Task.WhenAll(request.Images.Select(i => grains.GetGrain<IVisionGrain>(i.VisionGrainKey).GetTokens(pull.Token))).ConfigureAwait(true);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            LogVisionPullFailed(request.RequestId, $"no answer within {deadline.TotalSeconds:0.#} s");
            throw new ClusterRejectedException(RejectionKind.VisionTokensMissing,
                $"The vision tokens of request '{request.RequestId}' did not arrive within {deadline.TotalSeconds:0.#} s; encode the images again.");
        }
        catch (Exception e) when (e is SiloUnavailableException or OrleansMessageRejectionException or TimeoutException
            || (e is OrleansException && e is not ClusterRejectedException))
        {
            // The vision silo died (membership broke the call) or the grain cannot be reached or placed.
            LogVisionPullFailed(request.RequestId, e.Message);
            throw new ClusterRejectedException(RejectionKind.VisionTokensMissing,
                $"The vision tokens of request '{request.RequestId}' could not be read ({e.GetType().Name}); encode the images again.");
        }
    }

    [LoggerMessage(EventId = 320, Level = LogLevel.Warning, Message = "Request {RequestId}: the vision tokens could not be pulled ({Reason}); the gateway encodes again")]
    private partial void LogVisionPullFailed(string requestId, string reason);

    public Task<DecoderLoadReport> GetLoad() => Task.FromResult(DecoderReports.From(this.GetPrimaryKeyString(), Engine.GetLoad(), state.Draining));
}

internal static class DecoderReports
{
    public static DecoderLoadReport From(string key, DecodeLoad load, bool draining) => new()
    {
        DecoderKey = key,
        Silo = DecoderKey.Parse(key).Silo,
        Waiting = load.Waiting,
        Running = load.Running,
        WaitingTokens = load.WaitingTokens,
        KvUsage = load.KvUsage,
        TotalSlots = load.TotalSlots,
        ContextLength = load.ContextLength,
        TokensPerSecond = load.TokensPerSecond,
        Draining = draining || load.Draining,
        At = DateTimeOffset.UtcNow,
        DecodeStepSeconds = load.DecodeStepSeconds,
        PrefillSecondsPerToken = load.PrefillSecondsPerToken,
        StepFixedSeconds = load.StepFixedSeconds,
        StepSecondsPerRow = load.StepSecondsPerRow,
        StepSecondsPerPrefillToken = load.StepSecondsPerPrefillToken,
        PrefixReuseFraction = load.PrefixReuseFraction,
        RowLimit = load.RowLimit,
        PrefillChunkTokens = load.PrefillChunkTokens,
        PrefillingTokens = load.PrefillingTokens,
        RemainingTokens = [.. load.RemainingTokens],
        Tenants = [.. load.Tenants.Select(t => new TenantRowsReport(t.Tenant, t.Running, t.Waiting, t.Weight, t.Held))],
    };
}
