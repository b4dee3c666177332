using System.Diagnostics;
using XGenMM.Model.Tokenization;

namespace XGenMM.Engine.Decoding;

/// <summary>
/// Checks a request on the caller's thread and turns it into a <see cref="Sequence"/> with the content id of every
/// prompt position. Needs only the model's sizes, not the model, so scheduler tests can build sequences with it.
/// </summary>
internal sealed class RequestValidator(int vocabSize, int embeddingDim, int contextLength)
{
    public Sequence Prepare(DecodeRequest request)
    {
        if (string.IsNullOrEmpty(request.RequestId)) throw new EngineRejectedException(RejectionReason.Invalid, "A request id is required.");
        if (request.PromptIds.Count == 0) throw new EngineRejectedException(RejectionReason.Invalid, "The prompt is empty.");
        if (request.MaxNewTokens < 1) throw new EngineRejectedException(RejectionReason.Invalid, $"max new tokens must be at least 1 (got {request.MaxNewTokens}).");
        if (request.TopLogprobs is < 0 or > DecodeRequest.MaxTopLogprobs)
            throw new EngineRejectedException(RejectionReason.Invalid, $"top logprobs must be 0..{DecodeRequest.MaxTopLogprobs} (got {request.TopLogprobs}).");
        try { request.Sampling.Validate(); }
        catch (ArgumentOutOfRangeException e) { throw new EngineRejectedException(RejectionReason.Invalid, e.Message); }
        foreach (int id in request.PromptIds.Concat(request.ResumeTokenIds))
            if ((uint)id >= (uint)vocabSize) throw new EngineRejectedException(RejectionReason.Invalid, $"Token id {id} is outside the vocabulary (0..{vocabSize - 1}).");
        if (request.ResumeTokenIds.Count >= request.MaxNewTokens)
            throw new EngineRejectedException(RejectionReason.Invalid, $"{request.ResumeTokenIds.Count} resumed tokens leave nothing of max new tokens {request.MaxNewTokens}.");
        int placeholders = request.PromptIds.Count(id => id == SpecialTokens.Image);
        if (placeholders != request.Images.Count)
            throw new EngineRejectedException(RejectionReason.Invalid, $"The prompt has {placeholders} <image> token(s) but {request.Images.Count} image(s) were supplied.");
        foreach (var tokensOfImage in request.Images)
        {
            try { tokensOfImage.Validate(embeddingDim); }
            catch (ArgumentException e) { throw new EngineRejectedException(RejectionReason.Invalid, e.Message); }
        }

        var ids = new List<long>(request.PromptIds.Count + request.Images.Sum(i => i.Rows) + request.ResumeTokenIds.Count);
        int image = 0, textTokens = 0, imageTokens = 0;
        foreach (int id in request.PromptIds)
        {
            if (id != SpecialTokens.Image) { ids.Add(id); textTokens++; continue; }
            var tokens = request.Images[image++];
            for (int k = 0; k < tokens.Rows; k++) ids.Add(PrefixIndex.VisionId(tokens.ContentKey, k));
            imageTokens += tokens.Rows;
        }
        foreach (int id in request.ResumeTokenIds) ids.Add(id);
        int remaining = request.MaxNewTokens - request.ResumeTokenIds.Count;
        if (ids.Count + remaining > contextLength)
            throw new EngineRejectedException(RejectionReason.TooLong,
                $"The prompt takes {ids.Count} positions ({imageTokens} of them vision tokens); with {remaining} new tokens that exceeds the context of {contextLength}.");
        return new Sequence(request, textTokens, imageTokens, ids.ToArray(), Stopwatch.GetTimestamp());
    }
}
