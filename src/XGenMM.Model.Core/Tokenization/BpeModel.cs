namespace XGenMM.Model.Tokenization;

/// <summary>
/// Byte-pair encoding over a vocabulary and ranked merges (HF tokenizers "BPE" model with byte fallback): a word
/// starts as one symbol per character (characters missing from the vocabulary become their UTF-8 byte tokens
/// <c>&lt;0xNN&gt;</c>), then the lowest-ranked adjacent pair is merged until no known pair remains.
/// </summary>
internal sealed class BpeModel
{
    private readonly Dictionary<(int, int), (int Rank, int Merged)> _merges = new();
    private readonly int[] _byteTokens = new int[256];
    private readonly int _unk;

    public Dictionary<string, int> Vocab { get; }
    public int VocabSize { get; }

    public BpeModel(Dictionary<string, int> vocab, List<(string Left, string Right)> merges, string unkToken)
    {
        Vocab = vocab;
        VocabSize = vocab.Count == 0 ? 0 : vocab.Values.Max() + 1;
        _unk = vocab.TryGetValue(unkToken, out int unk) ? unk : -1;
        for (int b = 0; b < 256; b++) _byteTokens[b] = vocab.TryGetValue($"<0x{b:X2}>", out int id) ? id : _unk;
        for (int rank = 0; rank < merges.Count; rank++)
        {
            var (l, r) = merges[rank];
            if (vocab.TryGetValue(l, out int li) && vocab.TryGetValue(r, out int ri) && vocab.TryGetValue(l + r, out int merged))
                _merges.TryAdd((li, ri), (rank, merged));
        }
    }

    public void Encode(string word, List<int> output)
    {
        var symbols = new List<int>(word.Length);
        Span<byte> utf8 = stackalloc byte[4];
        for (int i = 0; i < word.Length; i++)
        {
            int len = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            string ch = word.Substring(i, len);
            if (Vocab.TryGetValue(ch, out int id)) symbols.Add(id);
            else
            {
                int n = System.Text.Encoding.UTF8.GetBytes(ch, utf8);
                for (int k = 0; k < n; k++) symbols.Add(_byteTokens[utf8[k]]);
            }
            i += len - 1;
        }
        MergeAll(symbols);
        output.AddRange(symbols);
    }

    /// <summary>Applies merges by rank with a priority queue over a linked list of symbols (O(n log n)).</summary>
    private void MergeAll(List<int> symbols)
    {
        int n = symbols.Count;
        if (n < 2) return;
        var prev = new int[n];
        var next = new int[n];
        var alive = new bool[n];
        for (int i = 0; i < n; i++) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; alive[i] = true; }
        var queue = new PriorityQueue<(int Left, int LeftSymbol, int RightSymbol), (int Rank, int Pos)>();
        void Push(int left)
        {
            int right = next[left];
            if (right < 0) return;
            if (_merges.TryGetValue((symbols[left], symbols[right]), out var m))
                queue.Enqueue((left, symbols[left], symbols[right]), (m.Rank, left));
        }
        for (int i = 0; i < n - 1; i++) Push(i);
        while (queue.TryDequeue(out var item, out _))
        {
            int left = item.Left;
            if (!alive[left]) continue;
            int right = next[left];
            // Stale entry: one side was merged into something else since it was queued.
            if (right < 0 || symbols[left] != item.LeftSymbol || symbols[right] != item.RightSymbol) continue;
            symbols[left] = _merges[(item.LeftSymbol, item.RightSymbol)].Merged;
            alive[right] = false;
            next[left] = next[right];
            if (next[right] >= 0) prev[next[right]] = left;
            if (prev[left] >= 0) Push(prev[left]);
            Push(left);
        }
        int w = 0;
        for (int i = 0; i >= 0 && i < n; i = next[i]) symbols[w++] = symbols[i];
        symbols.RemoveRange(w, n - w);
    }
}
