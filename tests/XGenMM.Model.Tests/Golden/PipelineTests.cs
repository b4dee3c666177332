using XGenMM.Model.Generation;
using XGenMM.Model.Tokenization;

namespace XGenMM.Model.Tests.Golden;

public sealed class PipelineTests
{
    private static readonly Lazy<XGenMMPipeline> Pipeline = new(() => XGenMMPipeline.Load(Fixtures.GoldenTinyAnyRes));

    private static byte[] Image(string name) => File.ReadAllBytes(Path.Combine(Fixtures.GoldenTinyAnyRes, name));

    [Fact]
    public void The_golden_prompt_through_the_whole_pipeline_gives_the_reference_tokens()
    {
        // Same chat as inputs.json prompt 0: real files in, tokenizer, chat template, anyres, splice, greedy.
        var messages = new[] { new ChatMessage("user", "<image>\nWhat is shown in this photo? <image>\nAnd how is the second picture different?") };
        var options = new GenerationOptions { MaxNewTokens = 8, StopTokenIds = [32000] };
        var tokens = Pipeline.Value.Chat(messages, [Image("COCO_val2014_000000486568.jpg"), Image("synthetic_1000x300.png")], options)
            .Select(d => d.TokenId).ToArray();
        Assert.Equal([1198, 4808, 2452, 29778, 17684, 9486, 19253, 29172], tokens);
    }

    [Fact]
    public void More_images_than_placeholders_is_a_prompt_error()
    {
        var ex = Assert.Throws<PromptException>(() => Pipeline.Value.Chat([new ChatMessage("user", "<image>\nHi")],
            [Image("synthetic_1000x300.png"), Image("synthetic_1000x300.png")], new GenerationOptions()).ToList());
        Assert.Contains("1 <image> placeholder(s) but 2 image(s)", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Fewer_images_than_placeholders_is_a_prompt_error() =>
        Assert.Throws<PromptException>(() => Pipeline.Value.Chat([new ChatMessage("user", "<image> and <image>")],
            [Image("synthetic_1000x300.png")], new GenerationOptions()).ToList());

    [Fact]
    public void A_prompt_longer_than_the_context_is_refused_before_generating()
    {
        string longText = string.Join(' ', Enumerable.Repeat("word", 5000));
        var ex = Assert.Throws<PromptException>(() => Pipeline.Value.Chat([new ChatMessage("user", longText)], [], new GenerationOptions { MaxNewTokens = 16 }).ToList());
        Assert.Contains("exceeds the model's context of 4096", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Corrupt_image_bytes_are_a_typed_image_error()
    {
        var bytes = Image("COCO_val2014_000000486568.jpg")[..2000];
        var ex = Assert.Throws<XGenMM.Model.Imaging.ImageDecodeException>(() => Pipeline.Value.Chat([new ChatMessage("user", "<image>")], [bytes], new GenerationOptions()).ToList());
        Assert.Equal(XGenMM.Model.Imaging.ImageErrorReason.Corrupt, ex.Reason);
    }

    [Fact]
    public void Seeded_sampling_is_reproducible_and_the_seed_matters()
    {
        var messages = new[] { new ChatMessage("user", "Tell me something.") };
        int[] Run(ulong seed) => Pipeline.Value.Chat(messages, [], new GenerationOptions
        {
            MaxNewTokens = 12,
            StopTokenIds = [],
            Sampling = new SamplingOptions { Temperature = 1.5f, TopP = 0.95f, TopK = 50, Seed = seed },
        }).Select(d => d.TokenId).ToArray();
        Assert.Equal(Run(42), Run(42));
        Assert.NotEqual(Run(42), Run(43));
    }
}
