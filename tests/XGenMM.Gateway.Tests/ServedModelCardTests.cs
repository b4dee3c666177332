using XGenMM.Gateway.Hosting;

namespace XGenMM.Gateway.Tests;

/// <summary>The one-line model card the chat page shows: where it comes from and what is kept of a README.</summary>
public sealed class ServedModelCardTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("xgenmm-card-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string Card(string readme)
    {
        File.WriteAllText(Path.Combine(_directory, "README.md"), readme);
        return ServedModel.ReadCard(_directory);
    }

    [Fact]
    public void The_card_is_the_first_paragraph_after_the_title_unwrapped_without_code_marks()
    {
        Assert.Equal("A tiny model of shapes: it knows colours.",
            Card("# tiny\n\nA tiny model of `shapes`:\nit knows colours.\n\nReproduce: run `train`.\n"));
    }

    [Fact]
    public void Hugging_Face_front_matter_and_headings_before_the_first_paragraph_are_skipped()
    {
        Assert.Equal("What it is.", Card("---\nlicense: apache-2.0\ntags: [vlm]\n---\n\n# Model\n## Summary\n\nWhat it is.\n## Next\n"));
    }

    [Fact]
    public void No_README_or_no_paragraph_gives_no_card()
    {
        Assert.Equal("", ServedModel.ReadCard(_directory));
        Assert.Equal("", Card("# only a title\n"));
        Assert.Equal("", Card("---\nunterminated: front matter\n"));
    }

    [Fact]
    public void A_long_paragraph_is_cut_to_the_limit()
    {
        string card = Card("# m\n\n" + string.Concat(Enumerable.Repeat("word ", 200)));
        Assert.Equal(ServedModel.MaxCardChars, card.Length);
        Assert.EndsWith("…", card, StringComparison.Ordinal);
    }

    [Fact]
    public void Gateway_ModelCard_wins_over_the_README()
    {
        string nano = NanoGatewayFixture.ResolveModel();
        Assert.StartsWith("A 10-million-parameter test model", new ServedModel(nano, "").Card, StringComparison.Ordinal);
        Assert.Equal("Knows shapes.", new ServedModel(nano, "", "  Knows shapes. ").Card);
    }
}
