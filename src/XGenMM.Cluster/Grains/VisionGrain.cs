using XGenMM.Cluster.Abstractions;
using XGenMM.Cluster.Hosting;
using XGenMM.Cluster.Placement;
using XGenMM.Engine.Decoding;
using XGenMM.Engine.Vision;
using XGenMM.Model.Imaging;

namespace XGenMM.Cluster.Grains;

/// <summary>
/// One image of one tenant scope, keyed by its content key (<see cref="ImageContentKey"/>, computed once by the gateway),
/// on a vision silo. Calls are not interleaved, so concurrent requests for the same image queue here and all but the
/// first find the tokens ready. The same key names the tokens in the vision engine's cache, so an activation that lost
/// its state (its silo's directory partition moved) finds them there without the bytes.
/// </summary>
[VisionSiloPlacement]
[CollectionAgeLimit(Minutes = 30)]
internal sealed class VisionGrain(EngineHost engines) : Grain, IVisionGrain
{
    private VisionTokens? _tokens;

    public async Task<ImageRef> Encode(byte[] image, CancellationToken cancellationToken = default)
    {
        string key = this.GetPrimaryKeyString();
        if (_tokens is null)
        {
            // Only content keys name images (no hash here: the gateway computed it once from these bytes).
            if (!IsContentKey(key))
                throw new ClusterRejectedException(RejectionKind.Invalid, $"'{key}' is not an image content key (64 lower-case hex digits).");
            try
            {
                var vision = await engines.GetVisionAsync(CancellationToken.None).ConfigureAwait(true);
                // The caller's token is not passed on: identical requests coalesce on this encode, so one caller giving up
                // must not cancel it for the others queued behind it.
                _tokens = (await vision.EncodeByKeyAsync(key, image, CancellationToken.None).ConfigureAwait(true)).Tokens;
            }
            catch (TimeoutException)
            {
                DeactivateOnIdle();
                throw new ClusterRejectedException(RejectionKind.Overloaded, $"The vision engine of this silo has not finished loading within {EngineHost.LoadWait.TotalSeconds:0} s.");
            }
            catch (ImageDecodeException e)
            {
                DeactivateOnIdle();
                throw new ClusterRejectedException(RejectionKind.BadImage, e.Message);
            }
            catch (EngineRejectedException e)
            {
                DeactivateOnIdle();
                throw new ClusterRejectedException(WireMaps.ToWire(e.Reason), e.Message);
            }
        }
        else engines.RecordVisionGrainHit();
        return new ImageRef(key, _tokens.Rows);
    }

    public Task<VisionTokensPayload> GetTokens(CancellationToken cancellationToken = default)
    {
        if (_tokens is null && engines.TryGetVision(out var vision) && vision.TryGetCached(this.GetPrimaryKeyString(), out var cached))
            _tokens = cached;
        if (_tokens is null)
        {
            DeactivateOnIdle();
            throw new ClusterRejectedException(RejectionKind.VisionTokensMissing, $"The vision tokens of '{this.GetPrimaryKeyString()}' are not on this silo any more; encode the image again.");
        }
        return Task.FromResult(new VisionTokensPayload(_tokens.Data, _tokens.Rows, _tokens.Dim, WireMaps.ToWire(_tokens.Format), _tokens.ContentKey));
    }

    private static bool IsContentKey(string key) => key.Length == 64 && key.All(c => char.IsAsciiDigit(c) || c is >= 'a' and <= 'f');
}
