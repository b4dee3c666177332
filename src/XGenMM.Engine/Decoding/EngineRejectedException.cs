namespace XGenMM.Engine.Decoding;

/// <summary>Why the engine refused a request; the gateway maps these to HTTP statuses.</summary>
public enum RejectionReason
{
    /// <summary>The waiting queue is full (by requests or by tokens): retry later (429).</summary>
    Overloaded,
    /// <summary>Prompt plus max new tokens can never fit the context (413).</summary>
    TooLong,
    /// <summary>The request waited longer than the queue time-to-live (503).</summary>
    Expired,
    /// <summary>The engine is draining or stopped (503).</summary>
    ShuttingDown,
    /// <summary>The request itself is malformed (400).</summary>
    Invalid,
}

/// <summary>A typed refusal; <see cref="Reason"/> decides the status, the message says what to change.</summary>
public sealed class EngineRejectedException(RejectionReason reason, string message) : Exception(message)
{
    public RejectionReason Reason { get; } = reason;
}
