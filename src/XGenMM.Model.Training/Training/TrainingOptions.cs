namespace XGenMM.Model.Training;

/// <summary>Optimisation settings: AdamW with linear warm-up then cosine decay, gradient clipping.</summary>
public sealed record TrainingOptions
{
    public int Steps { get; init; } = 2000;
    public int BatchSize { get; init; } = 8;
    public double LearningRate { get; init; } = 2e-3;
    public double MinLearningRateRatio { get; init; } = 0.05;
    public int WarmupSteps { get; init; } = 100;
    public double WeightDecay { get; init; } = 0.01;
    public double ClipGradNorm { get; init; } = 1.0;
    public long Seed { get; init; } = 1234;
    /// <summary>Save a resumable checkpoint every this many steps (0 = only at the end).</summary>
    public int CheckpointEvery { get; init; } = 250;

    /// <summary>Learning rate at <paramref name="step"/> (0-based).</summary>
    public double LearningRateAt(int step)
    {
        if (step < WarmupSteps) return LearningRate * (step + 1) / WarmupSteps;
        double progress = (double)(step - WarmupSteps) / Math.Max(1, Steps - WarmupSteps);
        double cosine = 0.5 * (1 + Math.Cos(Math.PI * Math.Min(1.0, progress)));
        return LearningRate * (MinLearningRateRatio + (1 - MinLearningRateRatio) * cosine);
    }
}
