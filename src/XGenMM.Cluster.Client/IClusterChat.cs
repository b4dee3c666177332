using XGenMM.Cluster.Abstractions;

namespace XGenMM.Cluster.Client;

/// <summary>What a gateway needs from the cluster: encode images, stream generations, see the decoders.</summary>
public interface IClusterChat
{
    /// <summary>Encodes an image on a vision silo (or finds it cached). <paramref name="contentKey"/> is the image's one
    /// identity (tenant scope, model fingerprint and bytes, hashed once by the caller: ImageContentKey in
    /// XGenMM.Model.Core); it names the vision grain and the engine's cache entry.</summary>
    /// <exception cref="ClusterRejectedException">BadImage, Overloaded.</exception>
    Task<ImageRef> EncodeImageAsync(string contentKey, byte[] image, CancellationToken cancellationToken = default);

    /// <summary>
    /// Streams a generation from the best decoder. If a decoder fails, the generation moves to another one, replaying
    /// the prompt and the tokens already streamed, so the caller sees no duplicates or gaps; <paramref name="reencode"/>
    /// is called when the images' tokens were lost with their silo.
    /// </summary>
    /// <exception cref="ClusterRejectedException">Typed refusal, or Interrupted with what was produced.</exception>
    IAsyncEnumerable<GenerationChunk> GenerateAsync(GenerationRequest request, Func<CancellationToken, Task<ImageRef[]>>? reencode = null,
        CancellationToken cancellationToken = default);

    Task<DecoderLoadReport[]> GetDecodersAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Refuses a new request of <paramref name="tenant"/> at once when admission control would refuse it by the
    /// decoders' last reports even at <paramref name="minPromptPositions"/> (a lower bound of its prompt): the same
    /// decision as <see cref="GenerateAsync"/> makes, taken before the caller spends work on the request (tokenising,
    /// the tenant's quota, image hashes). Returns when the request may be admitted; <see cref="GenerateAsync"/> decides
    /// again on the whole prompt.
    /// </summary>
    /// <exception cref="ClusterRejectedException">OverCapacity or TenantOverShare, with when to come back.</exception>
    Task CheckCapacityAsync(string tenant, long minPromptPositions, CancellationToken cancellationToken = default);
}
