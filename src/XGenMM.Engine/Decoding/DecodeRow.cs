namespace XGenMM.Engine.Decoding;

/// <summary>One decode row: feed the sequence's pending token at <paramref name="Position"/> of its slot.</summary>
internal readonly record struct DecodeRow(Sequence Sequence, int Slot, int Position);
