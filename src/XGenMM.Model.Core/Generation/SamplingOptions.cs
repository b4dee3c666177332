namespace XGenMM.Model.Generation;

/// <summary>How the next token is chosen. Temperature 0 means greedy (argmax).</summary>
public sealed record SamplingOptions
{
    public float Temperature { get; init; }
    /// <summary>Keep only the k most likely tokens (0 = off).</summary>
    public int TopK { get; init; }
    /// <summary>Nucleus sampling: keep the smallest set of most likely tokens whose probability reaches p (1 = off).</summary>
    public float TopP { get; init; } = 1f;
    /// <summary>HF-style repetition penalty over prompt and generated ids (1 = off).</summary>
    public float RepetitionPenalty { get; init; } = 1f;
    /// <summary>Seed for reproducible sampling; null draws one.</summary>
    public ulong? Seed { get; init; }

    public static SamplingOptions Greedy { get; } = new();

    public bool IsGreedy => Temperature <= 0f;

    public void Validate()
    {
        if (float.IsNaN(Temperature) || Temperature < 0f || Temperature > 100f)
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "temperature must be between 0 and 100.");
        if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "top_k must be 0 (off) or positive.");
        if (float.IsNaN(TopP) || TopP <= 0f || TopP > 1f)
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "top_p must be in (0, 1].");
        if (float.IsNaN(RepetitionPenalty) || RepetitionPenalty <= 0f || RepetitionPenalty > 100f)
            throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty, "repetition_penalty must be in (0, 100].");
    }
}
