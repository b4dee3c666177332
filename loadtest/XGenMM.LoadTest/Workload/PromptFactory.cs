using System.Text;

namespace XGenMM.LoadTest.Workload;

/// <summary>
/// Synthetic prompts with a controlled length in words (vLLM's random dataset draws token ids; we draw common English
/// words so that the tokenizer sees ordinary text, and report the server's prompt token counts beside the word count).
/// </summary>
public static class PromptFactory
{
    private static readonly string[] Words =
    [
        "the", "picture", "shows", "a", "red", "blue", "green", "yellow", "circle", "square", "triangle", "large", "small",
        "left", "right", "top", "bottom", "of", "and", "in", "on", "near", "next", "to", "what", "color", "is", "how",
        "many", "shapes", "are", "there", "describe", "scene", "briefly", "object", "middle", "corner", "background",
        "bright", "dark", "round", "edge", "line", "count", "please", "answer", "with", "one", "word", "two", "three",
        "image", "region", "above", "below", "between", "behind", "front", "which", "where", "why", "text", "label",
        "number", "orange", "purple", "white", "black", "gray", "striped", "dotted", "pattern", "tile", "row", "column",
    ];

    /// <summary>Words for one request: <paramref name="mean"/> ± <paramref name="range"/> (a ratio, as vLLM's random-range-ratio).</summary>
    public static int Length(Random random, int mean, double range)
    {
        if (range <= 0 || mean <= 1) return Math.Max(1, mean);
        int lo = Math.Max(1, (int)Math.Round(mean * (1 - range))), hi = Math.Max(lo, (int)Math.Round(mean * (1 + range)));
        return random.Next(lo, hi + 1);
    }

    /// <summary>A question of exactly <paramref name="words"/> words, the first being <paramref name="tag"/> (one word) so that no two prompts share a prefix by accident.</summary>
    public static string Text(Random random, int words, string tag)
    {
        var text = new StringBuilder(words * 7);
        text.Append(tag).Append(':');
        for (int i = 1; i < words; i++) text.Append(' ').Append(Words[random.Next(Words.Length)]);
        text.Append('?');
        return text.ToString();
    }
}
