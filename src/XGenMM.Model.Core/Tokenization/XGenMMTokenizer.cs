using System.Text;
using System.Text.Json;

namespace XGenMM.Model.Tokenization;

/// <summary>A tokenizer file is missing or malformed.</summary>
public sealed class TokenizerException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The Phi-3 / Llama tokenizer of xGen-MM, read from the Hugging Face <c>tokenizer.json</c>, with the three
/// multimodal tokens the model code adds (<c>&lt;image&gt;</c> 32012, <c>&lt;image placeholder&gt;</c> 32013,
/// <c>&lt;|endofchunk|&gt;</c> 32014).
/// </summary>
/// <remarks>
/// Encoding follows the HF <c>tokenizers</c> pipeline of that file: added tokens are matched in the raw text first
/// (honouring their lstrip/rstrip flags), every remaining segment is normalised (prepend "▁", spaces to "▁") and run
/// through BPE as one word (no pre-tokenizer), with UTF-8 byte fallback. Microsoft.ML.Tokenizers' Llama tokenizer
/// needs a SentencePiece <c>tokenizer.model</c>, which the xGen-MM repositories do not ship, so this class reads
/// tokenizer.json itself.
/// </remarks>
public sealed class XGenMMTokenizer
{
    private static readonly (string Content, int Id)[] MultimodalTokens =
        [("<image>", SpecialTokens.Image), ("<image placeholder>", SpecialTokens.ImagePlaceholder), ("<|endofchunk|>", SpecialTokens.EndOfChunk)];

    private readonly BpeModel _bpe;
    private readonly AddedToken[] _added;
    private readonly Dictionary<int, AddedToken> _addedById;
    private readonly Dictionary<char, AddedToken[]> _addedByFirstChar;
    private readonly string[] _idToToken;

    public int VocabSize => _idToToken.Length;

    private XGenMMTokenizer(BpeModel bpe, List<AddedToken> added)
    {
        _bpe = bpe;
        _added = added.ToArray();
        _addedById = _added.ToDictionary(a => a.Id);
        _addedByFirstChar = _added.GroupBy(a => a.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(a => a.Content.Length).ToArray());
        int size = Math.Max(bpe.VocabSize, _added.Max(a => a.Id) + 1);
        _idToToken = new string[size];
        foreach (var (token, id) in bpe.Vocab) _idToToken[id] = token;
        foreach (var a in _added) _idToToken[a.Id] = a.Content;
    }

    /// <summary>Reads <c>tokenizer.json</c> from a checkpoint directory.</summary>
    public static XGenMMTokenizer FromDirectory(string checkpointDir)
    {
        string path = Path.Combine(checkpointDir, "tokenizer.json");
        if (!File.Exists(path)) throw new TokenizerException($"'{path}' does not exist; a checkpoint directory needs the Hugging Face tokenizer.json.");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            return FromJson(doc.RootElement, path);
        }
        catch (JsonException ex)
        {
            throw new TokenizerException($"'{path}' is not valid JSON: {ex.Message}", ex);
        }
    }

    private static XGenMMTokenizer FromJson(JsonElement root, string path)
    {
        try
        {
            var model = root.GetProperty("model");
            string type = model.GetProperty("type").GetString() ?? "";
            if (type != "BPE") throw new TokenizerException($"'{path}': model type '{type}' is not supported (expected BPE).");
            if (!model.TryGetProperty("byte_fallback", out var bf) || !bf.GetBoolean())
                throw new TokenizerException($"'{path}': only BPE with byte_fallback (the Llama/Phi-3 tokenizer) is supported.");
            var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var v in model.GetProperty("vocab").EnumerateObject()) vocab[v.Name] = v.Value.GetInt32();
            var merges = new List<(string, string)>();
            foreach (var m in model.GetProperty("merges").EnumerateArray())
            {
                if (m.ValueKind == JsonValueKind.Array)
                {
                    merges.Add((m[0].GetString()!, m[1].GetString()!));
                    continue;
                }
                string s = m.GetString()!;
                int space = s.IndexOf(' ', StringComparison.Ordinal);
                if (space <= 0) throw new TokenizerException($"'{path}': malformed merge '{s}'.");
                merges.Add((s[..space], s[(space + 1)..]));
            }
            string unk = model.TryGetProperty("unk_token", out var u) && u.ValueKind == JsonValueKind.String ? u.GetString()! : "<unk>";
            var bpe = new BpeModel(vocab, merges, unk);

            var added = new List<AddedToken>();
            foreach (var a in root.GetProperty("added_tokens").EnumerateArray())
            {
                added.Add(new AddedToken(a.GetProperty("id").GetInt32(), a.GetProperty("content").GetString()!,
                    a.GetProperty("special").GetBoolean(), a.GetProperty("lstrip").GetBoolean(), a.GetProperty("rstrip").GetBoolean()));
            }
            int next = Math.Max(bpe.VocabSize, added.Count == 0 ? 0 : added.Max(a => a.Id) + 1);
            foreach (var (content, id) in MultimodalTokens)
            {
                if (added.Any(a => a.Content == content)) continue;
                if (id != next) throw new TokenizerException($"'{path}': the multimodal token {content} would get id {next}, but xGen-MM expects {id}.");
                added.Add(new AddedToken(id, content, Special: true, LStrip: false, RStrip: false));
                next++;
            }
            return new XGenMMTokenizer(bpe, added);
        }
        catch (Exception ex) when (ex is KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new TokenizerException($"'{path}' is malformed: {ex.Message}", ex);
        }
    }

    /// <summary>Encodes text to ids (no BOS/EOS). Added tokens in the text (e.g. &lt;image&gt;) become their ids.</summary>
    public IReadOnlyList<int> Encode(string text)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        int segmentStart = 0;
        int i = 0;
        while (i < text.Length)
        {
            var match = MatchAdded(text, i);
            if (match is null)
            {
                i++;
                continue;
            }
            int start = i, end = i + match.Content.Length;
            if (match.LStrip) while (start > segmentStart && char.IsWhiteSpace(text[start - 1])) start--;
            if (match.RStrip) while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
            EncodeSegment(text.AsSpan(segmentStart, start - segmentStart), ids);
            ids.Add(match.Id);
            segmentStart = i = end;
        }
        EncodeSegment(text.AsSpan(segmentStart), ids);
        return ids;
    }

    private AddedToken? MatchAdded(string text, int i)
    {
        if (!_addedByFirstChar.TryGetValue(text[i], out var candidates)) return null;
        foreach (var c in candidates)
            if (string.CompareOrdinal(text, i, c.Content, 0, c.Content.Length) == 0) return c;
        return null;
    }

    private void EncodeSegment(ReadOnlySpan<char> segment, List<int> ids)
    {
        if (segment.IsEmpty) return;
        // Normalizer: Prepend("▁") then Replace(" ", "▁").
        var normalized = new StringBuilder(segment.Length + 1).Append('▁');
        foreach (char c in segment) normalized.Append(c == ' ' ? '▁' : c);
        _bpe.Encode(normalized.ToString(), ids);
    }

    public bool IsSpecial(int id) => _addedById.TryGetValue(id, out var a) && a.Special;

    public string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;

    public int? TokenToId(string token)
    {
        foreach (var a in _added) if (a.Content == token) return a.Id;
        return _bpe.Vocab.TryGetValue(token, out int id) ? id : null;
    }

    /// <summary>Decodes ids to text with HF semantics: "▁" to space, byte-fallback bytes joined as UTF-8 (invalid
    /// sequences become U+FFFD), one leading space removed.</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        var text = new StringBuilder();
        var bytes = new List<byte>();
        foreach (int id in ids)
        {
            if (skipSpecialTokens && IsSpecial(id)) continue;
            string? token = IdToToken(id) ?? throw new ArgumentOutOfRangeException(nameof(ids), id, "token id outside the vocabulary");
            if (IsByteToken(token, out byte b))
            {
                bytes.Add(b);
                continue;
            }
            FlushBytes(bytes, text);
            text.Append(token.Replace('▁', ' '));
        }
        FlushBytes(bytes, text);
        if (text.Length > 0 && text[0] == ' ') text.Remove(0, 1);
        return text.ToString();
    }

    /// <summary>A streaming decoder for one sequence.</summary>
    public IncrementalDecoder CreateIncrementalDecoder(bool skipSpecialTokens = true) => new(this, skipSpecialTokens);

    private static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: false);

    private static void FlushBytes(List<byte> bytes, StringBuilder text)
    {
        if (bytes.Count == 0) return;
        // HF ByteFallback: a run of byte tokens that is valid UTF-8 becomes its text, otherwise one U+FFFD per byte.
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes);
        if (System.Text.Unicode.Utf8.IsValid(span)) text.Append(StrictUtf8.GetString(span));
        else text.Append('\uFFFD', bytes.Count);
        bytes.Clear();
    }

    private static bool IsByteToken(string token, out byte value)
    {
        value = 0;
        return token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
            && byte.TryParse(token.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out value);
    }

    private sealed record AddedToken(int Id, string Content, bool Special, bool LStrip, bool RStrip);
}
