namespace XGenMM.Engine.Decoding;

/// <summary>A sequence holding a slot that is stopped before this step: cancelled by its consumer, or cut by a drain
/// that timed out (<paramref name="ByShutdown"/>). Its slot is already free.</summary>
internal readonly record struct StoppedSequence(Sequence Sequence, bool ByShutdown);
