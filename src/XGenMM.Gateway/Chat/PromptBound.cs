using System.Text;
using XGenMM.Model.Tokenization;

namespace XGenMM.Gateway.Chat;

/// <summary>
/// A lower bound of the tokens a prompt's texts cost, in one pass over their characters and without tokenising, so a
/// prompt far over the token limit is refused in microseconds: BPE over a 20 MB text took 22 s of CPU and 1.4 GB
/// before its count could be compared with the limit.
/// </summary>
/// <remarks>
/// Why it is a bound: the tokenizer only replaces ' ' by '▁' and prepends '▁' (normalisation), then splits the
/// normalised text into tokens, each of which is a vocabulary entry (or an added token, or one byte-fallback byte).
/// So every UTF-8 byte of the normalised text lies in exactly one token, and no token covers more bytes than its own
/// string has: <see cref="MaxBytesPerToken"/>, the longest entry of this vocabulary in UTF-8 (computed from the
/// tokenizer, not assumed: 48 for Phi-3's, sixteen '▁'). The one thing the tokenizer drops is whitespace next to an
/// added token that strips it (<c>&lt;|end|&gt;</c> and the role tags eat any whitespace after them), so whitespace
/// at either end of a text and beside '&lt;' or '&gt;' weighs nothing here; everything else weighs its normalised
/// UTF-8 bytes. Then tokens ≥ ⌈weight / MaxBytesPerToken⌉, summed over all texts of a prompt, because the texts are
/// disjoint pieces of the rendered prompt. Tests check it against the real tokenizer on adversarial text.
/// </remarks>
public sealed class PromptBound
{
    public PromptBound(XGenMMTokenizer tokenizer)
    {
        int longest = 1;
        for (int id = 0; id < tokenizer.VocabSize; id++)
            if (tokenizer.IdToToken(id) is { } token) longest = Math.Max(longest, Encoding.UTF8.GetByteCount(token));
        MaxBytesPerToken = longest;
    }

    /// <summary>The most normalised UTF-8 bytes one token of this vocabulary can stand for.</summary>
    public int MaxBytesPerToken { get; }

    /// <summary>The fewest tokens that texts of total <paramref name="weight"/> (<see cref="Weight"/>) can encode to.</summary>
    public long MinTokens(long weight) => (weight + MaxBytesPerToken - 1) / MaxBytesPerToken;

    /// <summary>The fewest tokens that <paramref name="text"/> can encode to, wherever it sits in a prompt.</summary>
    public long MinTokens(string text) => MinTokens(Weight(text));

    /// <summary>The normalised UTF-8 bytes of <paramref name="text"/> that some token must cover (see the remarks).</summary>
    public static long Weight(string text)
    {
        long weight = 0;
        int i = 0;
        while (i < text.Length)
        {
            char c = text[i];
            if (char.IsWhiteSpace(c))
            {
                int start = i;
                long run = 0;
                while (i < text.Length && char.IsWhiteSpace(text[i])) run += CharBytes(text[i++]);
                bool strippable = start == 0 || i == text.Length || text[start - 1] == '>' || text[i] == '<';
                if (!strippable) weight += run;
                continue;
            }
            weight += CharBytes(c);
            i++;
        }
        return weight;
    }

    // A surrogate counts 2 (a pair is 4 bytes); ' ' becomes '▁', 3 bytes.
    private static int CharBytes(char c) => c switch
    {
        ' ' => 3,
        < '\u0080' => 1,
        < '\u0800' => 2,
        _ when char.IsSurrogate(c) => 2,
        _ => 3,
    };
}
