namespace XGenMM.Engine.Decoding;

/// <summary>
/// The time of one forward pass from what it carries: a fixed part (weights read, kernel launches, sampling set-up),
/// a part per decode row and a part per prompt position. The decode line (fixed + rows x per row) is fitted online by
/// least squares with exponential forgetting over the passes without prompt positions; the cost of a prompt position
/// is what a pass with prompt positions took beyond that line, per position (moving average). Rows and prompt
/// positions are fitted apart because they cost very differently on the 2-core CPU: a decode row (its attention over
/// its own cache) about 0.5 ms, a prompt position (one more column of batched matrix products) well under 0.1 ms.
/// Admission control predicts a new request's first token from these (<see cref="DecodeLoad.StepFixedSeconds"/>) and
/// the scheduler bounds a shared decoder's step with them (<see cref="DecodeEngineOptions.SharedStepSlowdown"/>).
/// Sharing each mixed pass's time out per token instead, as <see cref="DecodeLoad.PrefillSecondsPerToken"/> does,
/// charges the fixed part to every prompt position and again to the interleaved decode steps, which made the predicted
/// TTFT about 3x the measured one (loadtest/results/2026-12-05-overload-calibrated). Not thread-safe: the owner locks.
/// </summary>
internal sealed class StepCostFit
{
    /// <summary>Weight of the newest pass in the cost of a prompt position: about the last 30 passes with prompt
    /// positions count.</summary>
    internal const double Weight = 0.03;

    /// <summary>Weight of the newest pass in the decode line: about the last 100 passes (a second under load) count.
    /// A shorter memory let a busy neighbour on the 2-core machine swing the line within a second (a fixed part of 0
    /// and 2.7 ms a row, then 25 ms and 0.9 ms).</summary>
    internal const double RowWeight = 0.01;

    /// <summary>Passes ignored at the start: the first ones pay one-time work (JIT, first allocations of each shape)
    /// that would be averaged in for many passes after.</summary>
    internal const int WarmUpPasses = 2;

    /// <summary>Least variance of the rows (rows², a spread of about 2 rows) that the per-row slope is fitted from;
    /// below it (a steady batch) the slope last fitted is kept and only the level followed. Fitted from less, the
    /// slope followed the 2-core machine's noise (a fixed part of 0 and 2.7 ms a row within a second under a busy
    /// neighbour).</summary>
    private const double MinVariance = 4;

    private int _seen;
    private bool _line;
    private double _x, _y, _xx, _xy;
    /// <summary>Decode passes measured at each row count (moving average per count): the row limit compares passes at
    /// row counts far apart (a light tenant's 2 rows, a burst's 30), and the line, fitted where the passes are now,
    /// extrapolated badly to counts not seen lately (a steady 31-row batch left a fixed part of 30 ms, so that 2 rows
    /// looked as slow as 31 and the limit let the burst run every slot).</summary>
    private readonly SortedDictionary<int, double> _byRows = [];

    /// <summary>Weight of the newest pass in the per-row-count averages.</summary>
    internal const double CountWeight = 0.1;

    /// <summary>Seconds of a pass whatever it carries (0 until fitted).</summary>
    public double FixedSeconds { get; private set; }
    /// <summary>Seconds per decode row of a pass (0 until fitted).</summary>
    public double SecondsPerRow { get; private set; }
    /// <summary>Seconds per prompt position of a pass (0 until measured).</summary>
    public double SecondsPerPrefillToken { get; private set; }

    public bool Fitted => _line && SecondsPerPrefillToken > 0;

    /// <summary>A pass of <paramref name="rows"/> decode rows (the rows it computes: padding included in libtorch passes, not in the CPU step) and <paramref name="prefillTokens"/>
    /// prompt positions took <paramref name="seconds"/>.</summary>
    public void Record(double seconds, int rows, int prefillTokens)
    {
        if (rows < 0 || prefillTokens < 0 || rows + prefillTokens == 0 || !(seconds >= 0)) return;
        if (++_seen <= WarmUpPasses) return;
        if (prefillTokens == 0)
        {
            FitRows(seconds, rows);
            _byRows[rows] = _byRows.TryGetValue(rows, out var at) ? at + CountWeight * (seconds - at) : seconds;
            return;
        }
        // Without a decode line yet, the whole pass is shared out per token.
        double beyond = _line ? Math.Max(0, seconds - Predict(rows, 0)) / prefillTokens : seconds / (rows + prefillTokens);
        SecondsPerPrefillToken = SecondsPerPrefillToken > 0 ? SecondsPerPrefillToken + Weight * (beyond - SecondsPerPrefillToken) : beyond;
    }

    private void FitRows(double seconds, int rows)
    {
        if (!_line) (_x, _y, _xx, _xy, _line) = (rows, seconds, (double)rows * rows, rows * seconds, true);
        else
        {
            _x += RowWeight * (rows - _x);
            _y += RowWeight * (seconds - _y);
            _xx += RowWeight * ((double)rows * rows - _xx);
            _xy += RowWeight * (rows * seconds - _xy);
        }
        double variance = _xx - _x * _x;
        double slope = variance >= MinVariance ? Math.Max(0, (_xy - _x * _y) / variance) : SecondsPerRow;
        double fixedPart = _y - slope * _x;
        if (fixedPart < 0)
        {
            fixedPart = 0;
            slope = _x > 0 ? _y / _x : 0;
        }
        (FixedSeconds, SecondsPerRow) = (fixedPart, slope);
    }

    /// <summary>Predicted seconds of a pass of <paramref name="rows"/> decode rows and <paramref name="prefillTokens"/>
    /// prompt positions, from the fitted line.</summary>
    public double Predict(int rows, int prefillTokens) => FixedSeconds + SecondsPerRow * rows + SecondsPerPrefillToken * prefillTokens;

    /// <summary>Predicted seconds of a decode pass of <paramref name="rows"/> rows from the passes measured at that
    /// count, else between the nearest counts measured (linearly), else beyond them along the fitted slope; the line
    /// when none was measured.</summary>
    public double Measured(int rows)
    {
        if (_byRows.Count == 0) return Predict(rows, 0);
        if (_byRows.TryGetValue(rows, out var at)) return at;
        int? below = null, above = null;
        foreach (var count in _byRows.Keys)
        {
            if (count < rows) below = count;
            else if (above is null) above = count;
        }
        if (below is int b && above is int a)
            return _byRows[b] + (_byRows[a] - _byRows[b]) * (rows - b) / (a - b);
        if (below is int low) return _byRows[low] + SecondsPerRow * (rows - low);
        int high = above!.Value;
        return Math.Max(FixedSeconds, _byRows[high] - SecondsPerRow * (high - rows));
    }
}
