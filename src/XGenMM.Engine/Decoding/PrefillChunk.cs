namespace XGenMM.Engine.Decoding;

/// <summary>Prompt positions [Start, Start + Count) of a sequence, written to its slot.</summary>
internal readonly record struct PrefillChunk(Sequence Sequence, int Slot, int Start, int Count)
{
    /// <summary>The chunk ends the prompt: its last position's logits give the first token.</summary>
    public bool Completes => Start + Count == Sequence.PromptPositions;
}
