using TorchSharp;
using XGenMM.Model.Modules;
using XGenMM.Model.Tokenization;
using static TorchSharp.torch;

namespace XGenMM.Model.Generation;

/// <summary>The prompt count of &lt;image&gt; tokens does not match the images supplied, or the prompt is too long.</summary>
public sealed class PromptException(string message) : Exception(message);

/// <summary>A left-padded batch of spliced prompt embeddings, ready for the decoder's prefill.</summary>
public sealed class SplicedBatch : IDisposable
{
    /// <summary>[B, S, D]; padding rows hold the model's pad_token_id as a constant (LAVIS stack_with_padding).</summary>
    public required Tensor InputsEmbeds { get; init; }
    /// <summary>[B, S] int64, 1 = real position.</summary>
    public required Tensor AttentionMask { get; init; }
    /// <summary>[B, S] int64 RoPE positions: cumsum(mask) - 1, padding set to 1 (transformers prepare_inputs_for_generation).</summary>
    public required Tensor PositionIds { get; init; }
    /// <summary>Real (unpadded) spliced length of each prompt.</summary>
    public required int[] Lengths { get; init; }

    public void Dispose()
    {
        InputsEmbeds.Dispose();
        AttentionMask.Dispose();
        PositionIds.Dispose();
    }
}

/// <summary>
/// Splices vision tokens into prompt embeddings (LAVIS <c>_prepare_inputs_for_forward</c>): the k-th &lt;image&gt;
/// token of a prompt is replaced (removed) by the k-th image's vision tokens; then prompts are left-padded.
/// </summary>
public static class MultimodalInputs
{
    /// <summary>Number of spliced positions a prompt takes.</summary>
    public static int SplicedLength(IReadOnlyList<int> ids, IReadOnlyList<int> visionTokenCounts)
    {
        int images = ids.Count(id => id == SpecialTokens.Image);
        if (images != visionTokenCounts.Count)
            throw new PromptException($"The prompt has {images} <image> token(s) but {visionTokenCounts.Count} image(s) were supplied; each image needs exactly one <image> in the text.");
        return ids.Count - images + visionTokenCounts.Sum();
    }

    /// <param name="model">Supplies the embedding table and the pad value.</param>
    /// <param name="prompts">Token ids per prompt.</param>
    /// <param name="images">Per prompt, the vision tokens [n_k, D] of each image in order of appearance.</param>
    public static SplicedBatch Build(XGenMMModel model, IReadOnlyList<IReadOnlyList<int>> prompts, IReadOnlyList<IReadOnlyList<Tensor>> images)
    {
        if (prompts.Count != images.Count) throw new ArgumentException("One image list per prompt is required.", nameof(images));
        using var scope = torch.NewDisposeScope();
        var rows = new List<Tensor>();
        var lengths = new int[prompts.Count];
        for (int b = 0; b < prompts.Count; b++)
        {
            var ids = prompts[b];
            SplicedLength(ids, images[b].Select(t => (int)t.shape[0]).ToList());
            var embeds = model.Embed(torch.tensor(ids.Select(i => (long)i).ToArray(), ScalarType.Int64)); // [T, D]
            var pieces = new List<Tensor>();
            int start = 0, image = 0;
            for (int i = 0; i < ids.Count; i++)
            {
                if (ids[i] != SpecialTokens.Image) continue;
                if (i > start) pieces.Add(embeds.narrow(0, start, i - start));
                pieces.Add(images[b][image++].to(model.Device).to_type(model.DType));
                start = i + 1;
            }
            if (start < ids.Count) pieces.Add(embeds.narrow(0, start, ids.Count - start));
            if (pieces.Count == 0) throw new PromptException("The prompt is empty.");
            var row = torch.cat(pieces, 0);
            lengths[b] = (int)row.shape[0];
            rows.Add(row);
        }
        long s = lengths.Max();
        long d = rows[0].shape[1];
        float padValue = model.Config.Text.PadTokenId;
        var embedsBatch = Scalars.Full([prompts.Count, s, d], padValue, model.DType, model.Device);
        var mask = torch.zeros([prompts.Count, s], ScalarType.Int64, model.Device);
        for (int b = 0; b < rows.Count; b++)
        {
            embedsBatch[b].narrow(0, s - lengths[b], lengths[b]).copy_(rows[b]);
            mask[b].narrow(0, s - lengths[b], lengths[b]).fill_(Scalars.One);
        }
        var positions = PositionsFromMask(mask);
        return new SplicedBatch
        {
            InputsEmbeds = embedsBatch.MoveToOuterDisposeScope(),
            AttentionMask = mask.MoveToOuterDisposeScope(),
            PositionIds = positions.MoveToOuterDisposeScope(),
            Lengths = lengths,
        };
    }

    /// <summary>mask [B, S] -> cumsum(mask) - 1 with padding positions set to 1.</summary>
    public static Tensor PositionsFromMask(Tensor mask)
    {
        using var scope = torch.NewDisposeScope();
        var positions = mask.cumsum(1).sub_(Scalars.One);
        positions.masked_fill_(mask.eq(Scalars.Zero), Scalars.One);
        return positions.MoveToOuterDisposeScope();
    }
}
