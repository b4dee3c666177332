namespace XGenMM.Engine.Decoding;

/// <summary>Copy positions [0, Length) of every layer's KV from one slot to another (packing slots low).</summary>
internal readonly record struct SlotCopy(int From, int To, int Length);

/// <summary>Prompt positions [Start, Start + Count) of a sequence, written to its slot.</summary>
internal readonly record struct PrefillChunk(Sequence Sequence, int Slot, int Start, int Count)
{
    /// <summary>The chunk ends the prompt: its last position's logits give the first token.</summary>
    public bool Completes => Start + Count == Sequence.PromptPositions;
}

/// <summary>One decode row: feed the sequence's pending token at <paramref name="Position"/> of its slot.</summary>
internal readonly record struct DecodeRow(Sequence Sequence, int Slot, int Position);

/// <summary>A waiting request the scheduler dropped: <paramref name="Reason"/> null means its consumer cancelled.</summary>
internal readonly record struct Dropped(Sequence Sequence, RejectionReason? Reason);

/// <summary>A sequence holding a slot that is stopped before this step: cancelled by its consumer, or cut by a drain
/// that timed out (<paramref name="ByShutdown"/>). Its slot is already free.</summary>
internal readonly record struct Stopped(Sequence Sequence, bool ByShutdown);

/// <summary>
/// What one engine step does, in order: end the dropped and stopped sequences, make the KV copies (in list order: a
/// later copy can read a slot an earlier one wrote), set up the admitted sequences, run the prefill chunks, then one
/// decode forward pass over slots [0, <see cref="DecodeWidth"/>) for the decode rows (other rows are padding).
/// Plain data: no tensors, so the scheduler that makes it is tested without a model.
/// </summary>
internal sealed record StepPlan(
    IReadOnlyList<Dropped> Dropped,
    IReadOnlyList<Stopped> Stopped,
    IReadOnlyList<SlotCopy> Copies,
    IReadOnlyList<Sequence> Admitted,
    IReadOnlyList<PrefillChunk> Prefills,
    IReadOnlyList<DecodeRow> Decodes,
    int DecodeWidth)
{
    public int PrefillTokens => Prefills.Sum(p => p.Count);

    /// <summary>Whether the model has anything to run (otherwise the loop may sleep).</summary>
    public bool HasModelWork => Prefills.Count > 0 || Decodes.Count > 0;

    public bool IsEmpty => !HasModelWork && Dropped.Count == 0 && Stopped.Count == 0 && Admitted.Count == 0;
}
