using System.Text.Json;
using XGenMM.Model.Tokenization;

namespace XGenMM.Model.Tests.Tokenization;

public sealed class TokenizerGoldenTests
{
    private static readonly Lazy<XGenMMTokenizer> Tokenizer = new(() => XGenMMTokenizer.FromDirectory(Fixtures.Path("fixtures", "xgenmm-base-r-v1.5")));

    public sealed record GoldenCase(string Text, int[] Ids, string Decoded, string DecodedSkipSpecial, ChatMessage[]? Messages, bool? AddGenerationPrompt);

    private static readonly Lazy<List<GoldenCase>> Cases = new(() =>
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.Path("fixtures", "tokenizer", "golden.json")));
        return doc.RootElement.EnumerateArray().Select(e => new GoldenCase(
            e.GetProperty("text").GetString()!,
            e.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
            e.GetProperty("decoded").GetString()!,
            e.GetProperty("decoded_skip_special").GetString()!,
            e.TryGetProperty("messages", out var m) ? m.EnumerateArray().Select(x => new ChatMessage(x.GetProperty("role").GetString()!, x.GetProperty("content").GetString()!)).ToArray() : null,
            e.TryGetProperty("add_generation_prompt", out var g) ? g.GetBoolean() : null)).ToList();
    });

    public static TheoryData<int> CaseIndexes()
    {
        var data = new TheoryData<int>();
        for (int i = 0; i < Cases.Value.Count; i++) data.Add(i);
        return data;
    }

    [Fact]
    public void All_62_cases_are_present() => Assert.Equal(62, Cases.Value.Count);

    [Theory]
    [MemberData(nameof(CaseIndexes))]
    public void Ids_and_decoded_text_match(int index)
    {
        var c = Cases.Value[index];
        var tok = Tokenizer.Value;
        Assert.Equal(c.Ids, tok.Encode(c.Text));
        Assert.Equal(c.Decoded, tok.Decode(c.Ids));
        Assert.Equal(c.DecodedSkipSpecial, tok.Decode(c.Ids, skipSpecialTokens: true));
        if (c.Messages is not null)
            Assert.Equal(c.Text, ChatTemplate.Render(c.Messages, c.AddGenerationPrompt ?? false));
    }

    [Theory]
    [MemberData(nameof(CaseIndexes))]
    public void Incremental_decoding_equals_full_decoding(int index)
    {
        var c = Cases.Value[index];
        foreach (bool skip in new[] { true, false })
        {
            var decoder = Tokenizer.Value.CreateIncrementalDecoder(skip);
            var pieces = c.Ids.Select(decoder.Push).ToList();
            pieces.Add(decoder.Flush());
            Assert.Equal(skip ? c.DecodedSkipSpecial : c.Decoded, string.Concat(pieces));
            if (!(skip ? c.DecodedSkipSpecial : c.Decoded).Contains('\uFFFD'))
                Assert.All(pieces, p => Assert.DoesNotContain('\uFFFD', p));
        }
    }

    [Fact]
    public void The_multimodal_tokens_have_their_xgenmm_ids()
    {
        var tok = Tokenizer.Value;
        Assert.Equal(32015, tok.VocabSize);
        var ids = tok.Encode("Look <image> and <image placeholder><|endofchunk|>");
        Assert.Contains(SpecialTokens.Image, ids);
        Assert.Contains(SpecialTokens.ImagePlaceholder, ids);
        Assert.Contains(SpecialTokens.EndOfChunk, ids);
        Assert.Equal(2, tok.Encode("<image><image>").Count);
        Assert.True(tok.IsSpecial(SpecialTokens.Image));
        // Each text segment between added tokens gets its own "▁" prefix (HF Prepend normalizer), hence three spaces.
        Assert.Equal("Look   and ", tok.Decode(ids, skipSpecialTokens: true));
    }

    [Fact]
    public void A_split_multibyte_character_is_held_back_until_complete()
    {
        var tok = Tokenizer.Value;
        var ids = tok.Encode("🦙 ok");
        var decoder = tok.CreateIncrementalDecoder();
        var pieces = ids.Select(decoder.Push).ToList();
        Assert.Contains(pieces, p => p.Length == 0); // the emoji's first byte tokens produce nothing yet
        Assert.Equal("🦙 ok", string.Concat(pieces) + decoder.Flush());
    }

    [Fact]
    public void A_missing_tokenizer_file_is_named()
    {
        var ex = Assert.Throws<TokenizerException>(() => XGenMMTokenizer.FromDirectory(Path.GetTempPath()));
        Assert.Contains("tokenizer.json", ex.Message, StringComparison.Ordinal);
    }
}
