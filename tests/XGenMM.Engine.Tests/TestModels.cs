using XGenMM.Engine.Decoding;
using XGenMM.Model;
using XGenMM.Model.Tokenization;

namespace XGenMM.Engine.Tests;

/// <summary>The tiny golden checkpoint (real HF layout, random weights), loaded once per test run.</summary>
internal static class TestModels
{
    private static readonly Lazy<XGenMMPipeline> Tiny = new(() => XGenMMPipeline.Load(Fixtures.GoldenTinyAnyRes));

    public static XGenMMPipeline TinyPipeline => Tiny.Value;

    /// <summary>Another copy of the tiny checkpoint with its decoder packed in float32 for the CPU kernels.</summary>
    public static XGenMMPipeline TinyPackedPipeline => TinyPacked.Value;

    /// <summary>Another copy with its decoder packed in int8.</summary>
    public static XGenMMPipeline TinyInt8Pipeline => TinyInt8.Value;

    private static readonly Lazy<XGenMMPipeline> TinyPacked = new(() => Packed(XGenMM.Model.Kernels.WeightFormat.F32));
    private static readonly Lazy<XGenMMPipeline> TinyInt8 = new(() => Packed(XGenMM.Model.Kernels.WeightFormat.Q8));

    private static XGenMMPipeline Packed(XGenMM.Model.Kernels.WeightFormat format)
    {
        var pipeline = XGenMMPipeline.Load(Fixtures.GoldenTinyAnyRes);
        pipeline.Model.PackDecoder(format);
        return pipeline;
    }

    public static byte[] Image(string name) => File.ReadAllBytes(Path.Combine(Fixtures.GoldenTinyAnyRes, name));

    public static byte[] CocoJpeg => Image("COCO_val2014_000000486568.jpg");
    public static byte[] SyntheticPng => Image("synthetic_1000x300.png");

    public static DecodeEngine NewEngine(Action<DecodeEngineOptions>? configure = null)
    {
        var options = new DecodeEngineOptions { MaxSlots = 8, MaxSequenceLength = 1024, KvCacheBytes = 1L << 30 };
        configure?.Invoke(options);
        return new DecodeEngine(TinyPipeline.Model, TinyPipeline.Tokenizer, options);
    }

    /// <summary>Chat prompt ids for a question, with one &lt;image&gt; per image.</summary>
    public static IReadOnlyList<int> Prompt(string question, int images = 0)
    {
        string user = string.Concat(Enumerable.Repeat("<image>\n", images)) + question;
        return TinyPipeline.Tokenizer.Encode(ChatTemplate.Render([new ChatMessage("user", user)], addGenerationPrompt: true, addDefaultSystemPrompt: true));
    }

    /// <summary>Runs a request to its end: the completion's token ids and the final event.</summary>
    public static async Task<(List<int> Tokens, DecodeEvent Final, string Text)> Run(DecodeEngine engine, DecodeRequest request, CancellationToken cancellationToken = default)
    {
        var tokens = new List<int>();
        var text = new System.Text.StringBuilder();
        DecodeEvent? final = null;
        await foreach (var e in engine.Submit(request, cancellationToken))
        {
            if (e.IsFinal) final = e;
            else { tokens.Add(e.TokenId); text.Append(e.Text); }
        }
        Assert.NotNull(final);
        return (tokens, final!, text.ToString());
    }
}
