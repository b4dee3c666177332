namespace XGenMM.Model.Checkpoints;

/// <summary>A checkpoint directory or file is missing, malformed, truncated or does not fit the model.</summary>
public class CheckpointException : Exception
{
    public CheckpointException(string message) : base(message) { }
    public CheckpointException(string message, Exception inner) : base(message, inner) { }
}
