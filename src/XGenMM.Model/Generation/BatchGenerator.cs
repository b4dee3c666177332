using TorchSharp;
using XGenMM.Model.Language;
using XGenMM.Model.Modules;
using XGenMM.Model.Tokenization;
using static TorchSharp.torch;

namespace XGenMM.Model.Generation;

/// <summary>Per-request generation limits and stop rules.</summary>
public sealed record GenerationOptions
{
    public int MaxNewTokens { get; init; } = 256;
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;
    /// <summary>Token ids that end a sequence (not part of the answer): Phi-3 chat models stop at &lt;|end|&gt;.</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = [SpecialTokens.End, SpecialTokens.EndOfText];
    /// <summary>Strings that end the answer where they first appear in the decoded text (not included in it).</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
}

/// <summary>Why a sequence stopped.</summary>
public enum FinishReason
{
    None,
    Stop,
    Length,
}

/// <summary>One decoding step of a batch: the token chosen for each row (or -1 once that row has finished).</summary>
public sealed record GenerationStep(int Step, int[] Tokens, FinishReason[] Finished);

/// <summary>
/// Batched generation for a set of prompts with the plain model: left-padded prefill, then one token per row per
/// step with a KV cache. Finished rows keep running with pad inputs until all are done (HF generate semantics),
/// which keeps every row's numbers independent of the others. This is one of two generation loops and the reference
/// one: simple, for tools, tests and evaluation, and what parity tests hold the serving loop (DecodeEngine in
/// XGenMM.Engine, which schedules differently) to.
/// </summary>
public sealed class BatchGenerator(XGenMMModel model)
{
    /// <summary>Generates for every prompt; yields after each step. <paramref name="onLogits"/> sees each step's [B, V]
    /// logits; the tensor is disposed after the callback (detach a clone to keep it).</summary>
    public IEnumerable<GenerationStep> Generate(SplicedBatch batch, IReadOnlyList<IReadOnlyList<int>> promptIds,
        IReadOnlyList<GenerationOptions> options, Action<Tensor>? onLogits = null, CancellationToken cancellationToken = default)
    {
        int b = batch.Lengths.Length;
        if (options.Count != b || promptIds.Count != b) throw new ArgumentException("One option set and one prompt per row are required.");
        var text = model.Config.Text;
        long context = text.MaxPositionEmbeddings;
        for (int i = 0; i < b; i++)
        {
            if (options[i].MaxNewTokens < 1) throw new ArgumentOutOfRangeException(nameof(options), "max new tokens must be at least 1.");
            if (batch.Lengths[i] + options[i].MaxNewTokens > context)
                throw new PromptException($"Prompt {i} takes {batch.Lengths[i]} positions (vision tokens included); with {options[i].MaxNewTokens} new tokens it exceeds the model's context of {context}.");
        }
        var samplers = Enumerable.Range(0, b).Select(i => new TokenSampler(options[i].Sampling, promptIds[i])).ToArray();
        var finished = new FinishReason[b];
        var produced = new int[b];
        int maxSteps = options.Max(o => o.MaxNewTokens);

        // No dispose scope or no_grad region spans a yield: the caller runs between steps on the same thread.
        using var cache = new DynamicKvCache(text.NumHiddenLayers);
        var mask = batch.AttentionMask.clone().DetachFromDisposeScope();
        var positions = batch.PositionIds.clone().DetachFromDisposeScope();
        var embeds = batch.InputsEmbeds;
        try
        {
            for (int step = 0; step < maxSteps; step++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var tokens = new int[b];
                using (var scope = torch.NewDisposeScope())
                using (torch.no_grad())
                {
                    var bias = AttentionBias.Build(mask, embeds.shape[1], text.SlidingWindow, model.DType);
                    var hidden = model.LanguageModel.Model.Forward(embeds, positions, bias, cache);
                    var logits = model.Logits(hidden.narrow(1, hidden.shape[1] - 1, 1).squeeze(1)).to_type(ScalarType.Float32).cpu();
                    onLogits?.Invoke(logits);
                    var rows = logits.data<float>().ToArray();
                    int v = (int)logits.shape[1];
                    for (int i = 0; i < b; i++)
                    {
                        if (finished[i] != FinishReason.None) { tokens[i] = -1; continue; }
                        int token = samplers[i].Next(rows.AsSpan(i * v, v));
                        tokens[i] = token;
                        produced[i]++;
                        if (options[i].StopTokenIds.Contains(token)) finished[i] = FinishReason.Stop;
                        else if (produced[i] >= options[i].MaxNewTokens) finished[i] = FinishReason.Length;
                    }

                    // Next inputs: the new tokens (finished rows feed the pad id, as HF does after EOS).
                    var next = tokens.Select(t => (long)(t < 0 ? text.PadTokenId : t)).ToArray();
                    var newEmbeds = model.Embed(torch.tensor(next, ScalarType.Int64).view(b, 1)).DetachFromDisposeScope();
                    var newMask = torch.cat([mask, torch.ones([b, 1], ScalarType.Int64, model.Device)], 1).DetachFromDisposeScope();
                    var newPositions = newMask.cumsum(1).narrow(1, newMask.shape[1] - 1, 1).sub(Scalars.One).DetachFromDisposeScope();
                    if (!ReferenceEquals(embeds, batch.InputsEmbeds)) embeds.Dispose();
                    positions.Dispose();
                    mask.Dispose();
                    (embeds, mask, positions) = (newEmbeds, newMask, newPositions);
                }
                yield return new GenerationStep(step, tokens, (FinishReason[])finished.Clone());
                if (finished.All(f => f != FinishReason.None)) yield break;
            }
        }
        finally
        {
            if (!ReferenceEquals(embeds, batch.InputsEmbeds)) embeds.Dispose();
            positions.Dispose();
            mask.Dispose();
        }
    }
}
