namespace XGenMM.Engine.Decoding;

/// <summary>A waiting request the scheduler dropped: <paramref name="Reason"/> null means its consumer cancelled.</summary>
internal readonly record struct DroppedRequest(Sequence Sequence, RejectionReason? Reason);
