using System.Runtime.CompilerServices;
using Orleans.Concurrency;
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
internal sealed class DecoderGrain(EngineHost engines, IGrainFactory grains, SiloState state) : Grain, IDecoderGrain
{
    private DecodeEngine Engine => engines.GetDecoder(DecoderKey.Parse(this.GetPrimaryKeyString()).Device);

    public async IAsyncEnumerable<GenerationChunk> Generate(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (state.Draining) throw new ClusterRejectedException(RejectionKind.ShuttingDown, $"Decoder '{this.GetPrimaryKeyString()}' is draining.");
        var images = await Task.WhenAll(request.Images.Select(i => grains.GetGrain<IVisionGrain>(i.VisionGrainKey).GetTokens())).ConfigureAwait(true);
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
        PrefillChunkTokens = load.PrefillChunkTokens,
        PrefillingTokens = load.PrefillingTokens,
        RemainingTokens = [.. load.RemainingTokens],
        Tenants = [.. load.Tenants.Select(t => new TenantRowsReport(t.Tenant, t.Running, t.Waiting, t.Weight))],
    };
}
