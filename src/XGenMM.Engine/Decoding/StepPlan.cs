namespace XGenMM.Engine.Decoding;

/// <summary>
/// What one engine step does, in order: end the dropped and stopped sequences, make the KV copies (in list order: a
/// later copy can read a slot an earlier one wrote), set up the admitted sequences, run the prefill chunks, then one
/// decode forward pass over slots [0, <see cref="DecodeWidth"/>) for the decode rows (other rows are padding).
/// Plain data: no tensors, so the scheduler that makes it is tested without a model.
/// </summary>
internal sealed record StepPlan(
    IReadOnlyList<DroppedRequest> Dropped,
    IReadOnlyList<StoppedSequence> Stopped,
    IReadOnlyList<SlotCopy> Copies,
    IReadOnlyList<Sequence> Admitted,
    IReadOnlyList<PrefillChunk> Prefills,
    IReadOnlyList<DecodeRow> Decodes,
    int DecodeWidth)
{
    public int PrefillTokens => Prefills.Sum(p => p.Count);

    /// <summary>Whether the model has anything to run (otherwise the loop may sleep).</summary>
    public bool HasModelWork => Prefills.Count > 0 || Decodes.Count > 0;
}
