using XGenMM.Cluster.Abstractions;

namespace XGenMM.Cluster.Client;

/// <summary>
/// Predicts how long a new request would wait for its first token on a decoder, from the decoder's last load report
/// (docs/architecture.md, "Admission control"). Three additive parts, each from measured engine costs:
/// <list type="bullet">
/// <item>slot wait: when the free slots do not cover the waiting requests and this one, the k-th running row to end
/// frees the slot we need (k = waiting + 1 - free); a row ends at the latest after its remaining max tokens, one per
/// decode step. Beyond the running rows, each further round of slots lasts as long as the longest row now.</item>
/// <item>prefill: the prompt positions still ahead when our slot is free (admitted but not prefilled, waiting; those
/// that the steps of the slot wait prefill are no longer ahead) plus this prompt, at the fitted seconds per prompt
/// position of a forward pass.</item>
/// <item>interleaved: the engine prefills at most one budget of positions per step, and each of those steps also
/// pays the pass's fixed cost and the decode rows of the running requests; plus, on a busy decoder, half of the step
/// in flight when the request arrives.</item>
/// </list>
/// The per-pass costs are the engine's fitted ones (<see cref="DecoderLoadReport.StepFixedSeconds"/> + decode rows x
/// <see cref="DecoderLoadReport.StepSecondsPerRow"/> + prompt positions x <see cref="DecoderLoadReport.StepSecondsPerPrefillToken"/>). A decoder that reports no line (an older one) is
/// predicted from its per-position prefill cost and whole decode steps instead, which counts a mixed step's time
/// about twice: measured on the 2-core CPU, that predicted 3x the TTFT that came
/// (loadtest/results/2026-12-05-overload-calibrated). The slot wait is an upper bound (rows that stop early free their
/// slot sooner), so under a full decoder the model errs toward refusing. A decoder that has not measured a cost yet
/// reports 0 for it and is predicted optimistically.
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
        if (!(decoder.StepSecondsPerPrefillToken > 0)) return PredictPerPosition(decoder, promptTokens);
        double perToken = decoder.StepSecondsPerPrefillToken, perRow = Math.Max(0, decoder.StepSecondsPerRow), fixedPart = Math.Max(0, decoder.StepFixedSeconds);
        int budget = Math.Max(1, decoder.PrefillChunkTokens);
        bool busy = decoder.Running > 0 || decoder.Waiting > 0;
        // Rows decoding while this prompt prefills: those running and those admitted ahead of it.
        long rows = Math.Min(Math.Max(0, Rows(decoder)), Math.Max(0, decoder.Running) + Math.Max(0, decoder.Waiting));
        double step = decoder.DecodeStepSeconds > 0 ? StepSeconds(decoder, rows) : fixedPart + perRow * rows + perToken * budget;
        long slotSteps = SlotWaitSteps(decoder);
        // Prompts not admitted yet prefill only what a parked prefix does not give them (admitted ones are counted
        // without their reused positions already).
        double fresh = 1 - Math.Clamp(decoder.PrefixReuseFraction, 0, 1);
        long ahead = Math.Max(0, decoder.PrefillingTokens) + (long)Math.Ceiling(Math.Max(0, decoder.WaitingTokens) * fresh);
        promptTokens = (long)Math.Ceiling(Math.Max(0, promptTokens) * fresh);
        // The requests ahead take their slots (and prefill, one budget a step) while this one waits for its own.
        long aheadNow = Math.Max(0, ahead - slotSteps * budget);
        long positions = aheadNow + Math.Max(0, promptTokens);
        long chunks = (positions + budget - 1) / budget;
        double pass = fixedPart + rows * perRow;
        double interleaved = chunks * pass + (busy ? step / 2 : 0);
        // This prompt's own share: its positions, and the passes that would not run without it.
        double own = Math.Max(0, promptTokens) * perToken + (chunks - (aheadNow + budget - 1) / budget) * pass;
        return new TtftPrediction(slotSteps * step, positions * perToken, interleaved, own);
    }

    /// <summary>The prediction from whole decode steps and the per-position prefill cost, for a decoder that reports
    /// no fitted pass cost.</summary>
    private static TtftPrediction PredictPerPosition(DecoderLoadReport decoder, long promptTokens)
    {
        double step = Math.Max(0, decoder.DecodeStepSeconds);
        double slotWait = step * SlotWaitSteps(decoder);
        long ahead = Math.Max(0, decoder.PrefillingTokens) + Math.Max(0, decoder.WaitingTokens) + Math.Max(0, promptTokens);
        double prefill = ahead * Math.Max(0, decoder.PrefillSecondsPerToken);
        // Decode passes run only while some row decodes: the running ones, or waiting ones admitted before us.
        bool decoding = decoder.Running > 0 || decoder.Waiting > 0;
        int budget = Math.Max(1, decoder.PrefillChunkTokens);
        long chunks = (ahead + budget - 1) / budget;
        double interleaved = decoding ? chunks * step : 0;
        long aheadOnly = ahead - Math.Max(0, promptTokens);
        double own = Math.Max(0, promptTokens) * Math.Max(0, decoder.PrefillSecondsPerToken) + (decoding ? (chunks - (aheadOnly + budget - 1) / budget) * step : 0);
        return new TtftPrediction(slotWait, prefill, interleaved, own);
    }

    /// <summary>
    /// Seconds of one decode step at <paramref name="rows"/> rows: the engine's measured step, but no less than its
    /// fitted pass at those rows. The measured step is a moving average of the steps run lately, so a report taken
    /// while the decoder ran few rows (or idled after a lull) understates the step at the rows this router's own
    /// requests added since (<see cref="InflightLedger"/>): at the onset of a 10x burst a report of an idle decoder,
    /// adjusted to 25 running rows and 80 waiting, was predicted at its last 1.4 ms a step instead of about 10 ms, and
    /// the first second admitted a hundred requests whose first tokens came 1 s later.
    /// </summary>
    public static double StepSeconds(DecoderLoadReport decoder, long rows)
    {
        ArgumentNullException.ThrowIfNull(decoder);
        double fitted = Math.Max(0, decoder.StepFixedSeconds) + Math.Max(0, decoder.StepSecondsPerRow) * Math.Max(0, rows);
        return Math.Max(Math.Max(0, decoder.DecodeStepSeconds), fitted);
    }

    /// <summary>Decode steps until a slot is free for a new request behind the waiting ones.</summary>
    internal static long SlotWaitSteps(DecoderLoadReport decoder)
    {
        int free = Math.Max(0, Rows(decoder) - decoder.Running);
        long needed = (long)Math.Max(0, decoder.Waiting) + 1 - free;
        var remaining = decoder.RemainingTokens;
        // No running row to wait for (a report caught between two states): nothing to add.
        if (needed <= 0 || remaining.Length == 0) return 0;
        if (needed <= remaining.Length) return remaining[(int)needed - 1];
        long rounds = (needed + remaining.Length - 1) / remaining.Length;
        return rounds * remaining[^1];
    }

    /// <summary>The rows the decoder runs now: its slots, or fewer while its engine holds tenants over their share
    /// back to keep a lighter tenant's steps short (<see cref="DecoderLoadReport.RowLimit"/>).</summary>
    public static int Rows(DecoderLoadReport decoder) =>
        decoder.RowLimit > 0 ? Math.Min(decoder.TotalSlots, decoder.RowLimit) : decoder.TotalSlots;

    /// <summary>When a refused client should come back: once the predicted wait has shrunk to the target, at least
    /// 1 s and at most <paramref name="maxSeconds"/>.</summary>
    public static double RetryAfterSeconds(double predictedSeconds, double targetSeconds, double maxSeconds) =>
        Math.Clamp(Math.Ceiling(predictedSeconds - targetSeconds), 1, Math.Max(1, maxSeconds));
}

/// <summary>A predicted time to first token, by part (see <see cref="CapacityModel"/>). <see cref="OwnPrefillSeconds"/>
/// is the part of the prefill and interleaved seconds that the request's own prompt costs (its positions and the passes
/// that run only for it): what it would take on an idle decoder, which no refusal of others can shorten.</summary>
public readonly record struct TtftPrediction(double SlotWaitSeconds, double PrefillSeconds, double InterleavedDecodeSeconds, double OwnPrefillSeconds = 0)
{
    public double Seconds => SlotWaitSeconds + PrefillSeconds + InterleavedDecodeSeconds;

    /// <summary>The time the request waits on the others: the predicted TTFT less its own prefill.</summary>
    public double WaitSeconds => Math.Max(0, Seconds - OwnPrefillSeconds);
}
