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
    /// <summary>Learning rate of the vision tower and resampler relative to the decoder's. From scratch the decoder first
    /// has to learn to read the vision tokens; a vision side that moves as fast meanwhile drifts toward image-independent
    /// tokens (measured: the red/blue difference of the tokens fell from 25% to 3% in 50 steps at 1.0).</summary>
    public double VisionLearningRateScale { get; init; } = 1.0;
    /// <summary>Steps during which the vision tower and resampler do not move at all. Their random features already tell a
    /// red from a blue shape (vision tokens differ by 25%); trained from step 0 they collapse to image-independent tokens
    /// (1.6% after 50 steps, even at a 0.3 scale) before the decoder has learnt to read them.</summary>
    public int VisionFreezeSteps { get; init; }
    /// <summary>Weight of the patch-label loss (<see cref="PatchLabels"/>) on examples that carry label images; 0 = off.</summary>
    public double PatchLabelWeight { get; init; }
    /// <summary>Each example's answer counts the same in the loss, however many tokens it has (<see cref="TrainingBatch"/>).</summary>
    public bool LossPerExample { get; init; }
    /// <summary>Weight of the token-origin loss (<see cref="TokenOriginHead"/>); 0 = off.</summary>
    public double OriginWeight { get; init; }
    /// <summary>Weight of the mention loss (<see cref="MentionHead"/>); 0 = off.</summary>
    public double MentionWeight { get; init; }
    /// <summary>Weight of the answer-carry loss (<see cref="AnswerCarryHead"/>); 0 = off.</summary>
    public double CarryWeight { get; init; }
    /// <summary>A work directory whose training-only heads a new run starts from (when it has them), instead of fresh ones:
    /// for a run that continues from that one's weights with a new schedule.</summary>
    public string? HeadsFrom { get; init; }
    /// <summary>A work directory whose weights, optimizer moments and heads a new run (at step 0, this run's schedule) starts
    /// from; a run already under way in its own work directory resumes from that instead.</summary>
    public string? RestartFrom { get; init; }
    /// <summary>Stop (and save) after this many steps of the schedule of <see cref="Steps"/>; null = run it to its end.</summary>
    public int? StopAfter { get; init; }
    public long Seed { get; init; } = 1234;
    /// <summary>Steps between progress reports that carry the loss per question type (the mean over those steps).</summary>
    public int ReportEvery { get; init; } = 20;
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
