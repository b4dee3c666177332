using XGenMM.Cluster.Abstractions;

namespace XGenMM.Cluster.Client;

/// <summary>
/// Predicts how long a new request would wait for its first token on a decoder, from the decoder's last load report
/// (docs/architecture.md, "Admission control"). Three additive parts, each from measured engine costs:
/// <list type="bullet">
/// <item>slot wait: when the free slots do not cover the waiting requests and this one, the k-th running row to end
/// frees the slot we need (k = waiting + 1 - free); a row ends at the latest after its remaining max tokens, one per
/// decode step. Beyond the running rows, each further round of slots lasts as long as the longest row now.</item>
/// <item>prefill: the prompt positions ahead (admitted but not prefilled, waiting) plus this prompt, at the measured
/// seconds per position.</item>
/// <item>interleaved decode: the engine prefills at most one chunk per step and runs a decode pass of the running rows
/// in every step, so each chunk of those positions also costs one decode step.</item>
/// </list>
/// The slot wait is an upper bound (rows that stop early free their slot sooner), so under a full decoder the model
/// errs toward refusing. A decoder that has not measured a cost yet reports 0 for it and is predicted optimistically.
/// </summary>
public static class CapacityModel
{
    /// <summary>Prompt positions the decoder will prefill for <paramref name="request"/>: its token ids (each image
    /// placeholder becomes the image's rows) and the tokens a resumed generation replays.</summary>
    public static long PromptPositions(GenerationRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        long positions = request.PromptIds.Length + request.ResumeTokenIds.Length;
        foreach (var image in request.Images) positions += image.Rows - 1;
        return Math.Max(1, positions);
    }

    /// <summary>The predicted time to first token of a request of <paramref name="promptTokens"/> positions.</summary>
    public static TtftPrediction Predict(DecoderLoadReport decoder, long promptTokens)
    {
        ArgumentNullException.ThrowIfNull(decoder);
        double step = Math.Max(0, decoder.DecodeStepSeconds);
        double slotWait = step * SlotWaitSteps(decoder);
        long ahead = Math.Max(0, decoder.PrefillingTokens) + Math.Max(0, decoder.WaitingTokens) + Math.Max(0, promptTokens);
        double prefill = ahead * Math.Max(0, decoder.PrefillSecondsPerToken);
        // Decode passes run only while some row decodes: the running ones, or waiting ones admitted before us.
        bool decoding = decoder.Running > 0 || decoder.Waiting > 0;
        long chunks = (ahead + Math.Max(1, decoder.PrefillChunkTokens) - 1) / Math.Max(1, decoder.PrefillChunkTokens);
        double interleaved = decoding ? chunks * step : 0;
        return new TtftPrediction(slotWait, prefill, interleaved);
    }

    /// <summary>Decode steps until a slot is free for a new request behind the waiting ones.</summary>
    internal static long SlotWaitSteps(DecoderLoadReport decoder)
    {
        int free = Math.Max(0, decoder.TotalSlots - decoder.Running);
        long needed = (long)Math.Max(0, decoder.Waiting) + 1 - free;
        var remaining = decoder.RemainingTokens;
        // No running row to wait for (a report caught between two states): nothing to add.
        if (needed <= 0 || remaining.Length == 0) return 0;
        if (needed <= remaining.Length) return remaining[(int)needed - 1];
        long rounds = (needed + remaining.Length - 1) / remaining.Length;
        return rounds * remaining[^1];
    }

    /// <summary>When a refused client should come back: once the predicted wait has shrunk to the target, at least
    /// 1 s and at most <paramref name="maxSeconds"/>.</summary>
    public static double RetryAfterSeconds(double predictedSeconds, double targetSeconds, double maxSeconds) =>
        Math.Clamp(Math.Ceiling(predictedSeconds - targetSeconds), 1, Math.Max(1, maxSeconds));
}

/// <summary>A predicted time to first token, by part (see <see cref="CapacityModel"/>).</summary>
public readonly record struct TtftPrediction(double SlotWaitSeconds, double PrefillSeconds, double InterleavedDecodeSeconds)
{
    public double Seconds => SlotWaitSeconds + PrefillSeconds + InterleavedDecodeSeconds;
}
