namespace XGenMM.Engine.Decoding;

/// <summary>Copy positions [0, Length) of every layer's KV from one slot to another (packing slots low).</summary>
internal readonly record struct SlotCopy(int From, int To, int Length);
