using System.Security.Cryptography;
using XGenMM.Cluster.Abstractions;
using XGenMM.Cluster.Hosting;
using XGenMM.Cluster.Placement;
using XGenMM.Engine.Decoding;
using XGenMM.Engine.Vision;
using XGenMM.Model.Imaging;

namespace XGenMM.Cluster.Grains;

/// <summary>
/// One image of one tenant scope (key "{scope}/{sha256}"), on a vision silo. Calls are not interleaved, so
/// concurrent requests for the same image queue here and all but the first find the tokens ready.
/// </summary>
[VisionSiloPlacement]
[CollectionAgeLimit(Minutes = 30)]
internal sealed class VisionGrain(EngineHost engines) : Grain, IVisionGrain
{
    private VisionTokens? _tokens;

    public async Task<ImageRef> Encode(byte[] image)
    {
        string key = this.GetPrimaryKeyString();
        if (_tokens is null)
        {
            int slash = key.LastIndexOf('/');
            string scope = slash > 0 ? key[..slash] : "";
            string hash = key[(slash + 1)..];
            // The key names the content: a caller cannot plant other bytes under an image's identity.
            if (!string.Equals(hash, Convert.ToHexStringLower(SHA256.HashData(image)), StringComparison.Ordinal))
                throw new ClusterRejectedException(RejectionKind.Invalid, "The image bytes do not match the SHA-256 in the vision grain key.");
            try
            {
                var vision = await engines.GetVisionAsync().ConfigureAwait(true);
                _tokens = (await vision.EncodeAsync(image, scope).ConfigureAwait(true)).Tokens;
                if (engines.VisionContentKeys.Count > 100_000) engines.VisionContentKeys.Clear();
                engines.VisionContentKeys[key] = _tokens.ContentKey;
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
                throw new ClusterRejectedException(ClusterErrors.Map(e.Reason), e.Message);
            }
        }
        else engines.RecordVisionGrainHit();
        return new ImageRef(key, _tokens.Rows);
    }

    public Task<VisionTokensPayload> GetTokens()
    {
        if (_tokens is null && engines.VisionContentKeys.TryGetValue(this.GetPrimaryKeyString(), out var contentKey)
            && engines.TryGetVision(out var vision) && vision.TryGetCached(contentKey, out var cached))
            _tokens = cached;
        if (_tokens is null)
        {
            DeactivateOnIdle();
            throw new ClusterRejectedException(RejectionKind.VisionTokensMissing, $"The vision tokens of '{this.GetPrimaryKeyString()}' are not on this silo any more; encode the image again.");
        }
        return Task.FromResult(new VisionTokensPayload(_tokens.Data, _tokens.Rows, _tokens.Dim, (TokenFormat)_tokens.Format, _tokens.ContentKey));
    }
}
