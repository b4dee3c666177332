namespace XGenMM.Engine.Decoding;

/// <summary>
/// The time of one forward pass as a line in its tokens (decode rows plus prompt positions): a fixed part (weights
/// read, kernel launches, sampling set-up) and a part per token, fitted online by least squares over recent passes
/// with exponential forgetting. Admission control predicts a new request's first token from it
/// (<see cref="DecodeLoad.StepFixedSeconds"/>): sharing each mixed pass's time out per token, as
/// <see cref="DecodeLoad.PrefillSecondsPerToken"/> does, charges the fixed part to every prompt position and again to
/// the decode steps interleaved with the prefill, which on the 2-core CPU made the predicted TTFT about 3x the
/// measured one (loadtest/results/2026-12-05-overload-calibrated). Not thread-safe: the owner locks.
/// </summary>
internal sealed class StepCostFit
{
    /// <summary>Weight of the newest pass: about the last 30 passes count (a fraction of a second under load).</summary>
    internal const double Weight = 0.03;

    /// <summary>Passes ignored at the start: the first ones pay one-time work (JIT, first allocations of each shape)
    /// that would be averaged in for many passes after.</summary>
    internal const int WarmUpPasses = 2;

    /// <summary>Least token variance (tokens²) that the slope is fitted from; below it only the level is followed.</summary>
    private const double MinVariance = 4;

    private int _seen;
    private double _x, _y, _xx, _xy;

    /// <summary>Seconds of a pass whatever its tokens (0 until fitted).</summary>
    public double FixedSeconds { get; private set; }
    /// <summary>Seconds per token of a pass (0 until fitted).</summary>
    public double SecondsPerToken { get; private set; }

    public void Record(double seconds, int tokens)
    {
        if (tokens <= 0 || !(seconds >= 0)) return;
        if (++_seen <= WarmUpPasses) return;
        if (_seen == WarmUpPasses + 1) (_x, _y, _xx, _xy) = (tokens, seconds, (double)tokens * tokens, tokens * seconds);
        else
        {
            _x += Weight * (tokens - _x);
            _y += Weight * (seconds - _y);
            _xx += Weight * ((double)tokens * tokens - _xx);
            _xy += Weight * (tokens * seconds - _xy);
        }
        double variance = _xx - _x * _x;
        double slope;
        if (variance >= MinVariance) slope = Math.Max(0, (_xy - _x * _y) / variance);
        // Passes of one size only (a steady batch without prompts): keep the slope last fitted, follow the level.
        else slope = SecondsPerToken > 0 ? SecondsPerToken : _y / _x;
        double fixedPart = _y - slope * _x;
        if (fixedPart < 0)
        {
            fixedPart = 0;
            slope = _y / _x;
        }
        (FixedSeconds, SecondsPerToken) = (fixedPart, slope);
    }

    /// <summary>Predicted seconds of a pass of <paramref name="tokens"/> tokens.</summary>
    public double Predict(int tokens) => FixedSeconds + SecondsPerToken * tokens;
}
