using TorchSharp;
using XGenMM.Model.Generation;
using XGenMM.Model.Imaging;
using XGenMM.Model.Language;
using XGenMM.Model.Modules;
using XGenMM.Model.Tokenization;
using static TorchSharp.torch;

namespace XGenMM.Model.Training;

/// <summary>
/// Turns examples into the training loss through the model's own modules (with gradients): SigLIP over all views of
/// all images at once, the resampler over all groups at once, splicing at the &lt;image&gt; positions, the Phi-3
/// decoder over right-padded sequences, and cross-entropy on the next-token targets of assistant tokens only.
/// </summary>
public sealed class TrainingBatch(XGenMMModel model, XGenMMTokenizer tokenizer)
{
    /// <summary>Target id of positions that carry no loss (cross_entropy's ignore_index).</summary>
    private const long IgnoreIndex = -100;
    private static readonly Scalar IgnoreTarget = IgnoreIndex.ToScalar();

    private readonly AnyResPreprocessor _preprocessor = new(model.Config.Preprocessor);

    /// <summary>Token ids of a conversation and, per id, whether it is a training target.</summary>
    public (int[] Ids, bool[] IsTarget) Tokenize(IReadOnlyList<ChatMessage> conversation)
    {
        var ids = new List<int>();
        var target = new List<bool>();
        void Add(string text, bool learn)
        {
            var piece = tokenizer.Encode(text);
            for (int i = 0; i < piece.Count; i++)
            {
                ids.Add(piece[i]);
                target.Add(learn && i > 0); // the role token itself is given, the reply after it is learnt
            }
        }
        if (conversation.Count == 0 || conversation[0].Role != "system")
            Add($"<|system|>\n{ChatTemplate.DefaultSystemPrompt}<|end|>\n", false);
        foreach (var m in conversation)
            Add(ChatTemplate.Render([m], addGenerationPrompt: false)[..^"<|endoftext|>".Length], m.Role == "assistant");
        return (ids.ToArray(), target.ToArray());
    }

    /// <summary>Mean next-token cross-entropy over the assistant tokens of the examples.</summary>
    public Tensor Loss(IReadOnlyList<TrainingExample> examples)
    {
        using var scope = torch.NewDisposeScope();
        var text = model.Config.Text;
        int tokensPerSide = model.Config.Vision.PatchesPerSide;
        int p = tokensPerSide * tokensPerSide;

        // Vision: every view of every image through SigLIP in one batch, every group through the resampler in one batch.
        // Preprocessing is plain CPU work per image: spread it over the cores while the tensors wait.
        var images = examples.SelectMany(e => e.Images).AsParallel().AsOrdered().Select(_preprocessor.Process).ToList();
        var imageTokens = new List<Tensor>();
        if (images.Count > 0)
        {
            var pixels = torch.cat(images.Select(i => i.ToTensor()).ToList(), 0).to(model.Device).to_type(model.DType);
            var features = model.VisionEncoder.forward(pixels);                     // [ΣV, P, C]
            var flat = features.reshape(-1, features.shape[2]);
            var indexes = new List<long>();
            var masks = new List<byte>();
            int viewOffset = 0;
            foreach (var image in images)
            {
                var layout = AnyResLayout.Create(image.GridCols, image.GridRows, image.OriginalSize, tokensPerSide);
                indexes.AddRange(layout.GroupTokenIndex.Select(i => i + (long)viewOffset * p));
                masks.AddRange(layout.KeyMask);
                viewOffset += image.Views;
            }
            var groups = flat.index_select(0, torch.tensor(indexes.ToArray(), device: model.Device)).view(viewOffset, p, -1);
            Tensor? keyMask = model.Config.AnyRes ? torch.tensor(masks.ToArray(), [viewOffset, p], device: model.Device).to_type(ScalarType.Bool) : null;
            var resampled = model.VisionTokenizer.Forward(groups, keyMask);          // [ΣV, L, D]
            int start = 0;
            foreach (var image in images)
            {
                imageTokens.Add(resampled.narrow(0, start, image.Views).reshape(-1, resampled.shape[2]));
                start += image.Views;
            }
        }

        // Text and splicing, right-padded; targets[t] is the id at t+1 when that id is an assistant token.
        var rows = new List<Tensor>();
        var targets = new List<long[]>();
        int imageCursor = 0;
        foreach (var example in examples)
        {
            var (ids, isTarget) = Tokenize(example.Conversation);
            int placeholders = ids.Count(id => id == SpecialTokens.Image);
            if (placeholders != example.Images.Count)
                throw new PromptException($"A training example has {placeholders} <image> placeholder(s) but {example.Images.Count} image(s).");
            var embeds = model.LanguageModel.Model.EmbedTokens.forward(torch.tensor(ids.Select(i => (long)i).ToArray(), device: model.Device));
            var pieces = new List<Tensor>();
            var positionIds = new List<int>();   // the text id at each spliced position, or -1 for vision tokens
            var positionTarget = new List<bool>();
            int segment = 0;
            for (int i = 0; i <= ids.Length; i++)
            {
                if (i < ids.Length && ids[i] != SpecialTokens.Image) continue;
                if (i > segment)
                {
                    pieces.Add(embeds.narrow(0, segment, i - segment));
                    for (int k = segment; k < i; k++) { positionIds.Add(ids[k]); positionTarget.Add(isTarget[k]); }
                }
                if (i < ids.Length)
                {
                    var vision = imageTokens[imageCursor++];
                    pieces.Add(vision);
                    for (int k = 0; k < vision.shape[0]; k++) { positionIds.Add(-1); positionTarget.Add(false); }
                }
                segment = i + 1;
            }
            rows.Add(torch.cat(pieces, 0));
            var next = new long[positionIds.Count];
            for (int t = 0; t < next.Length; t++)
                next[t] = t + 1 < next.Length && positionTarget[t + 1] ? positionIds[t + 1] : IgnoreIndex;
            targets.Add(next);
        }
        int length = rows.Max(r => (int)r.shape[0]);
        if (length > text.MaxPositionEmbeddings)
            throw new PromptException($"A training example takes {length} positions; the context is {text.MaxPositionEmbeddings}.");
        var padded = torch.stack(rows.Select(r => nn.functional.pad(r, [0, 0, 0, length - r.shape[0]])).ToList(), 0); // [B, S, D]
        var mask = torch.zeros([rows.Count, length], ScalarType.Int64);
        var targetTensor = Scalars.Full([rows.Count, length], IgnoreIndex, ScalarType.Int64, null);
        for (int b = 0; b < rows.Count; b++)
        {
            mask[b].narrow(0, 0, rows[b].shape[0]).fill_(Scalars.One);
            targetTensor[b].narrow(0, 0, targets[b].Length).copy_(torch.tensor(targets[b]));
        }
        mask = mask.to(model.Device);
        targetTensor = targetTensor.to(model.Device);
        var positions = Scalars.Arange(0, length, model.Device).unsqueeze(0).expand(rows.Count, -1);
        var bias = AttentionBias.Build(mask, length, text.SlidingWindow, model.DType);
        var hidden = model.LanguageModel.Model.Forward(padded, positions, bias, cache: null);   // [B, S, D]

        // The head only on positions that have a target: the 32k-wide logits are the biggest tensor here.
        var flatTargets = targetTensor.view(-1);
        var selected = flatTargets.ne(IgnoreTarget).nonzero().squeeze(1);
        var logits = model.LanguageModel.LmHead.forward(hidden.reshape(-1, hidden.shape[2]).index_select(0, selected));
        var loss = nn.functional.cross_entropy(logits, flatTargets.index_select(0, selected));
        return loss.MoveToOuterDisposeScope();
    }
}
