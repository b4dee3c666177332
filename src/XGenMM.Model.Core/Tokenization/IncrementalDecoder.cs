namespace XGenMM.Model.Tokenization;

/// <summary>
/// Turns a stream of token ids into text deltas that never split a UTF-8 character or a byte-fallback sequence:
/// a delta is released only once the decoded window no longer ends in an incomplete character (U+FFFD).
/// The concatenation of all deltas equals decoding the whole sequence at once.
/// </summary>
public sealed class IncrementalDecoder(XGenMMTokenizer tokenizer, bool skipSpecialTokens)
{
    private readonly List<int> _ids = [];
    private int _prefix;   // window start: decoding always restarts here so the leading-space rule applies equally
    private int _read;     // ids up to here have been emitted

    public string Push(int id)
    {
        _ids.Add(id);
        return Next(final: false);
    }

    /// <summary>Emits whatever is still held back (an incomplete character at the very end becomes U+FFFD).</summary>
    public string Flush() => Next(final: true);

    private string Next(bool final)
    {
        string before = tokenizer.Decode(Window(_prefix, _read), skipSpecialTokens);
        string now = tokenizer.Decode(Window(_prefix, _ids.Count), skipSpecialTokens);
        if (now.Length <= before.Length || (!final && now.EndsWith('\uFFFD')) || !now.StartsWith(before, StringComparison.Ordinal))
        {
            if (!final || now.Length <= before.Length) return "";
        }
        string delta = now[before.Length..];
        _prefix = _read;
        _read = _ids.Count;
        return delta;
    }

    private IEnumerable<int> Window(int from, int to)
    {
        for (int i = from; i < to; i++) yield return _ids[i];
    }
}
