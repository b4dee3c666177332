using TorchSharp;
using XGenMM.Model.Checkpoints;
using XGenMM.Model.Configuration;
using XGenMM.Model.Generation;
using XGenMM.Model.Imaging;
using XGenMM.Model.Tokenization;
using static TorchSharp.torch;

namespace XGenMM.Model;

/// <summary>A streamed piece of an answer.</summary>
public sealed record AnswerDelta(string Text, int TokenId, FinishReason Finish);

/// <summary>
/// The model with everything around it for one process: checkpoint directory in, streamed answer out.
/// Images are decoded, preprocessed (anyres), encoded and spliced at the &lt;image&gt; placeholders of the chat.
/// </summary>
public sealed class XGenMMPipeline : IDisposable
{
    public XGenMMModel Model { get; }
    public XGenMMTokenizer Tokenizer { get; }
    public AnyResPreprocessor Preprocessor { get; }
    public ImageLimits ImageLimits { get; init; } = ImageLimits.Default;
    /// <summary>The checkpoint's chat template (the hard-coded Phi-3 one when it ships none).</summary>
    public ChatTemplate ChatTemplate { get; init; } = ChatTemplate.Phi3;

    /// <summary>Apply the EXIF orientation tag before preprocessing (off: the original implementation never does).</summary>
    public bool ApplyExifOrientation { get; init; }

    public XGenMMPipeline(XGenMMModel model, XGenMMTokenizer tokenizer)
    {
        Model = model;
        Tokenizer = tokenizer;
        Preprocessor = new AnyResPreprocessor(model.Config.Preprocessor);
    }

    /// <summary>Loads config, weights and tokenizer from a Hugging Face checkpoint directory; with
    /// <paramref name="parts"/>, only those halves of the model (the other half's tensors are never read).</summary>
    public static XGenMMPipeline Load(string directory, Device? device = null, ScalarType dtype = ScalarType.Float32, IProgress<CheckpointLoadProgress>? progress = null,
        ModelParts parts = ModelParts.All)
    {
        var config = XGenMMConfig.FromDirectory(directory);
        var tokenizer = XGenMMTokenizer.FromDirectory(directory);
        var template = ChatTemplate.FromDirectory(directory);
        var model = new XGenMMModel(config, device, dtype, parts);
        try
        {
            CheckpointLoader.Load(model, directory, progress, skip: name => !model.Parts.Holds(name));
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        return new XGenMMPipeline(model, tokenizer) { ChatTemplate = template };
    }

    /// <summary>Vision tokens [n, D] of one encoded image file.</summary>
    public Tensor EncodeImage(ReadOnlySpan<byte> imageBytes)
    {
        return Model.EncodeImage(Preprocessor.Process(ImageDecoder.Decode(imageBytes, ImageLimits, ApplyExifOrientation)));
    }

    /// <summary>Streams the answer to a chat whose user turns hold one &lt;image&gt; per image, in order.</summary>
    public IEnumerable<AnswerDelta> Chat(IReadOnlyList<ChatMessage> messages, IReadOnlyList<byte[]> images, GenerationOptions options,
        CancellationToken cancellationToken = default)
    {
        var prompt = Tokenizer.Encode(ChatTemplate.Apply(messages, addGenerationPrompt: true, addDefaultSystemPrompt: true));
        int placeholders = prompt.Count(id => id == SpecialTokens.Image);
        if (placeholders != images.Count)
            throw new PromptException($"The conversation has {placeholders} <image> placeholder(s) but {images.Count} image(s) were attached.");
        var visionTokens = new List<Tensor>();
        try
        {
            foreach (var bytes in images) visionTokens.Add(EncodeImage(bytes));
            using var batch = MultimodalInputs.Build(Model, [prompt], [visionTokens]);
            var decoder = Tokenizer.CreateIncrementalDecoder(skipSpecialTokens: true);
            var stops = new StopStringMatcher(options.StopStrings);
            foreach (var step in new BatchGenerator(Model).Generate(batch, [prompt], [options], cancellationToken: cancellationToken))
            {
                int token = step.Tokens[0];
                var finish = step.Finished[0];
                string text = options.StopTokenIds.Contains(token) ? "" : stops.Push(decoder.Push(token));
                if (stops.Stopped) finish = FinishReason.Stop;
                if (finish != FinishReason.None) text += stops.Push(decoder.Flush()) + stops.Flush();
                yield return new AnswerDelta(text, token, finish);
                if (stops.Stopped) yield break;
            }
        }
        finally
        {
            foreach (var t in visionTokens) t.Dispose();
        }
    }

    public void Dispose() => Model.Dispose();
}
