namespace XGenMM.Model.Generation;

/// <summary>
/// Cuts streamed text at the first stop string. Text that could still become a stop string is held back until
/// the next delta decides it, so a client never sees any part of a stop string.
/// </summary>
public sealed class StopStringMatcher(IReadOnlyList<string> stopStrings)
{
    private readonly string[] _stops = stopStrings.Where(s => s.Length > 0).ToArray();
    private string _pending = "";

    public bool Stopped { get; private set; }

    /// <summary>Feeds a delta; returns the text that is safe to emit now.</summary>
    public string Push(string delta)
    {
        if (Stopped) return "";
        if (_stops.Length == 0) return delta;
        _pending += delta;
        int cut = -1;
        foreach (var stop in _stops)
        {
            int at = _pending.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0)
        {
            Stopped = true;
            string emitted = _pending[..cut];
            _pending = "";
            return emitted;
        }
        int hold = 0;
        foreach (var stop in _stops)
            for (int k = Math.Min(stop.Length - 1, _pending.Length); k > hold; k--)
                if (_pending.AsSpan(_pending.Length - k).SequenceEqual(stop.AsSpan(0, k))) { hold = k; break; }
        string safe = _pending[..^hold];
        _pending = _pending[^hold..];
        return safe;
    }

    /// <summary>At the end of generation, releases text that turned out not to be a stop string.</summary>
    public string Flush()
    {
        string rest = Stopped ? "" : _pending;
        _pending = "";
        return rest;
    }
}
