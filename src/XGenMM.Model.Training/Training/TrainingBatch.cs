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
/// <param name="patchLabels">When given, examples with label images also train it on the vision tower's outputs
/// (<see cref="PatchLabels"/>), its loss added with <paramref name="patchLabelWeight"/>.</param>
/// <param name="lossPerExample">Average the tokens of each example first, then the examples, so that a one-word answer
/// ("left") counts as much as a fifteen-token description; otherwise every answer token counts the same.</param>
/// <param name="origins">When given, also trains it to read, at the vision tokens of the decoder's early layers, which
/// image and which view each came from (<see cref="TokenOriginHead"/>), its loss added with <paramref name="originWeight"/>.</param>
/// <param name="mentions">When given, examples with <see cref="TrainingExample.Mentions"/> also train it on the decoder's
/// hidden states at each named shape (<see cref="MentionHead"/>), its loss added with <paramref name="mentionWeight"/>.</param>
/// <param name="carry">When given, examples with <see cref="TrainingExample.Mentions"/> also train it to read, at every
/// position that predicts an answer token, what that turn's question named (<see cref="AnswerCarryHead"/>), its loss added
/// with <paramref name="carryWeight"/>.</param>
public sealed class TrainingBatch(XGenMMModel model, XGenMMTokenizer tokenizer, PatchLabelHead? patchLabels = null, double patchLabelWeight = 0,
    bool lossPerExample = false, TokenOriginHead? origins = null, double originWeight = 0, MentionHead? mentions = null, double mentionWeight = 0,
    AnswerCarryHead? carry = null, double carryWeight = 0)
{
    private readonly Dictionary<string, int[]> _mentionIds = new(StringComparer.Ordinal);

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

    /// <summary>
    /// The patch-label losses (<see cref="PatchLabels"/>) of the images that have label maps: kind, colour and place of
    /// every vision-tower token, and per perceiver group the colour of each kind, the kind of each colour and, in the
    /// global view, each kind's third across and down.
    /// </summary>
    /// <param name="features">[ΣV * P, C] vision tower outputs of <paramref name="images"/>, in order.</param>
    /// <param name="resampled">[ΣV, L, D] resampled tokens, same groups.</param>
    private Tensor PatchLabelLoss(Tensor features, Tensor resampled, List<RgbImage> images, List<PreprocessedImage> views, List<AnyResLayout> layouts,
        Dictionary<RgbImage, RgbImage> labelImages, IDictionary<string, (double Sum, int Tokens)>? byKind)
    {
        int patches = model.Config.Vision.NumPatches, side = model.Config.Vision.PatchesPerSide;
        var labelled = new List<(int Image, long FirstView)>();
        long view = 0;
        for (int i = 0; i < images.Count; i++)
        {
            if (labelImages.ContainsKey(images[i])) labelled.Add((i, view));
            view += views[i].Views;
        }
        var read = labelled.AsParallel().AsOrdered().Select(x =>
        {
            var (kinds, colors) = PatchLabels.Read(labelImages[images[x.Image]], views[x.Image], model.Config.Vision.PatchSize);
            return (Kinds: kinds, Colors: colors, Groups: PatchLabels.Groups(kinds, colors, layouts[x.Image]));
        }).ToList();
        var viewRows = labelled.SelectMany(x => Enumerable.Range(0, views[x.Image].Views).Select(r => x.FirstView + r)).ToArray();
        var patchRows = viewRows.SelectMany(v => Enumerable.Range(0, patches).Select(p => v * patches + p)).ToArray();
        Tensor Targets(IEnumerable<long> values) => torch.tensor(values.ToArray(), device: model.Device);
        Tensor Rows(long[] rows) => torch.tensor(rows, device: model.Device);

        var (kindLogits, colorLogits, rowLogits, columnLogits) = patchLabels!.Patches(features.index_select(0, Rows(patchRows)));
        var allKinds = read.SelectMany(x => x.Kinds).ToArray();
        var onShape = Enumerable.Range(0, allKinds.Length).Where(i => allKinds[i] != 0).Select(i => (long)i).ToArray();
        var kindTargets = Targets(allKinds);
        // Kind and colour as means over the shape patches and, apart, over the background: nine patches in ten are
        // background, and a mean over all of them was low while the tower still could not tell a star's patch from a
        // circle's.
        Tensor Split(Tensor logits, Tensor targets, string name)
        {
            var all = nn.functional.cross_entropy(logits, targets, reduction: nn.Reduction.None);
            var shapeMask = kindTargets.ne(Scalars.Zero);
            var shape = onShape.Length == 0 ? torch.zeros([], device: model.Device) : all.masked_select(shapeMask).mean();
            var background = onShape.Length == allKinds.Length ? torch.zeros([], device: model.Device) : all.masked_select(shapeMask.logical_not()).mean();
            if (byKind is not null)
            {
                Accumulate(byKind, name + "_shape", shape.item<float>(), onShape.Length);
                Accumulate(byKind, name + "_background", background.item<float>(), allKinds.Length - onShape.Length);
            }
            return shape.add(background);
        }
        var kindLoss = Split(kindLogits, kindTargets, "patch_kind");
        var colorLoss = Split(colorLogits, Targets(read.SelectMany(x => x.Colors)), "patch_color");
        // Place on the patches that show a shape: background patches keep their position embedding anyway, while a
        // saturated shape patch's content drowns it (measured: the centre patch of a circle moved across the view
        // changed by 5% at the tower's output, a background patch by 88%), and then no token the perceiver takes
        // from a shape knows where it was.
        var patchPlaceLoss = onShape.Length == 0 ? torch.zeros([], device: model.Device)
            : nn.functional.cross_entropy(rowLogits.index_select(0, Rows(onShape)), Targets(onShape.Select(i => i % patches / side)))
                .add(nn.functional.cross_entropy(columnLogits.index_select(0, Rows(onShape)), Targets(onShape.Select(i => i % patches % side))));

        var (colorOfKind, column, row, kindOfColor) = patchLabels.Groups(resampled.index_select(0, Rows(viewRows)));
        var groupColorLoss = nn.functional.cross_entropy(colorOfKind, Targets(read.SelectMany(x => x.Groups.ColorOfKind)));
        var groupKindLoss = nn.functional.cross_entropy(kindOfColor, Targets(read.SelectMany(x => x.Groups.KindOfColor)));
        // Place only for the global view (group 0 of each image): the rows of the first group's kinds.
        int kinds = PatchLabelHead.Kinds;
        var globalRows = labelled.Select((x, i) => (long)read.Take(i).Sum(r => r.Groups.ColorOfKind.Length / kinds)).SelectMany(g => Enumerable.Range(0, kinds).Select(k => g * kinds + k)).ToArray();
        var columns = read.SelectMany(x => x.Groups.Column).ToArray();
        var globalPlaceLoss = columns.All(c => c == PatchLabels.NoTarget)
            ? torch.zeros([], device: model.Device)   // cross_entropy of nothing but ignored targets is NaN
            : nn.functional.cross_entropy(column.index_select(0, Rows(globalRows)), Targets(columns), ignore_index: PatchLabels.NoTarget)
                .add(nn.functional.cross_entropy(row.index_select(0, Rows(globalRows)), Targets(read.SelectMany(x => x.Groups.Row)), ignore_index: PatchLabels.NoTarget));
        if (byKind is not null)
        {
            Accumulate(byKind, "patch_place", patchPlaceLoss.item<float>(), onShape.Length);
            Accumulate(byKind, "group_color", groupColorLoss.item<float>(), viewRows.Length);
            Accumulate(byKind, "group_kind", groupKindLoss.item<float>(), viewRows.Length);
            Accumulate(byKind, "global_place", globalPlaceLoss.item<float>(), labelled.Count);
        }
        return kindLoss.add(colorLoss).add(patchPlaceLoss).add(groupColorLoss).add(groupKindLoss).add(globalPlaceLoss);
    }

    private static void Accumulate(IDictionary<string, (double Sum, int Tokens)> byKind, string kind, double meanLoss, int count)
    {
        var (sum, tokens) = byKind.TryGetValue(kind, out var v) ? v : (0, 0);
        byKind[kind] = (sum + meanLoss * count, tokens + count);
    }

    /// <summary>Mean next-token cross-entropy over the assistant tokens of the examples.</summary>
    /// <param name="byKind">When given, receives per <see cref="TrainingExample.Kind"/> the summed loss and the number of
    /// target tokens (which question types the model has learnt, and which not yet).</param>
    public Tensor Loss(IReadOnlyList<TrainingExample> examples, IDictionary<string, (double Sum, int Tokens)>? byKind = null)
    {
        using var scope = torch.NewDisposeScope();
        var text = model.Config.Text;
        int tokensPerSide = model.Config.Vision.PatchesPerSide;
        int p = tokensPerSide * tokensPerSide;

        // Vision: every view of every image through SigLIP in one batch, every group through the resampler in one batch.
        // Preprocessing is plain CPU work per image: spread it over the cores while the tensors wait.
        // An image object shared by several examples (questions about one scene) is encoded once and spliced into each.
        var unique = examples.SelectMany(e => e.Images).Distinct(ReferenceEqualityComparer.Instance).Cast<RgbImage>().ToList();
        var images = unique.AsParallel().AsOrdered().Select(_preprocessor.Process).ToList();
        var labelImages = new Dictionary<RgbImage, RgbImage>(ReferenceEqualityComparer.Instance);
        if (patchLabels is not null)
            foreach (var e in examples.Where(e => e.LabelImages is not null))
                for (int i = 0; i < e.Images.Count; i++) labelImages.TryAdd(e.Images[i], e.LabelImages![i]);
        var imageTokens = new List<Tensor>();
        Tensor? patchLoss = null;
        if (images.Count > 0)
        {
            var pixels = torch.cat(images.Select(i => i.ToTensor()).ToList(), 0).to(model.Device).to_type(model.DType);
            var features = model.VisionEncoder.forward(pixels);                     // [ΣV, P, C]
            var flat = features.reshape(-1, features.shape[2]);
            var indexes = new List<long>();
            var masks = new List<byte>();
            var layouts = new List<AnyResLayout>();
            int viewOffset = 0;
            foreach (var image in images)
            {
                var layout = AnyResLayout.Create(image.GridCols, image.GridRows, image.OriginalSize, tokensPerSide);
                layouts.Add(layout);
                indexes.AddRange(layout.GroupTokenIndex.Select(i => i + (long)viewOffset * p));
                masks.AddRange(layout.KeyMask);
                viewOffset += image.Views;
            }
            var groups = flat.index_select(0, torch.tensor(indexes.ToArray(), device: model.Device)).view(viewOffset, p, -1);
            Tensor? keyMask = model.Config.AnyRes ? torch.tensor(masks.ToArray(), [viewOffset, p], device: model.Device).to_type(ScalarType.Bool) : null;
            var resampled = model.VisionTokenizer.Forward(groups, keyMask);          // [ΣV, L, D]
            if (patchLabels is not null && labelImages.Count > 0)
                patchLoss = PatchLabelLoss(flat, resampled, unique, images, layouts, labelImages, byKind);
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
        var laterImage = new List<long>();   // per position of every row: 1 = of a later image, 0 = of the first, IgnoreIndex = text
        var globalView = new List<long>();   // likewise: 1 = of the global view, 0 = of a crop
        var mentionAt = new List<(int Row, int Position, Mention Mention, bool ManyImages)>();
        var carryAt = new List<(int Row, int Position, int Slot, Mention Mention, bool ManyImages)>();
        var tokensOf = new Dictionary<RgbImage, Tensor>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < unique.Count; i++) tokensOf[unique[i]] = imageTokens[i];
        foreach (var example in examples)
        {
            var (ids, isTarget) = Tokenize(example.Conversation);
            int placeholders = ids.Count(id => id == SpecialTokens.Image);
            if (placeholders != example.Images.Count)
                throw new PromptException($"A training example has {placeholders} <image> placeholder(s) but {example.Images.Count} image(s).");
            var embeds = model.LanguageModel.Model.EmbedTokens.forward(torch.tensor(ids.Select(i => (long)i).ToArray(), device: model.Device));
            var textPosition = new int[ids.Length];   // where each text id lands once the vision tokens are spliced in
            var pieces = new List<Tensor>();
            var positionIds = new List<int>();   // the text id at each spliced position, or -1 for vision tokens
            var positionTarget = new List<bool>();
            int segment = 0, imageIndex = 0;
            for (int i = 0; i <= ids.Length; i++)
            {
                if (i < ids.Length && ids[i] != SpecialTokens.Image) continue;
                if (i > segment)
                {
                    pieces.Add(embeds.narrow(0, segment, i - segment));
                    for (int k = segment; k < i; k++) { textPosition[k] = positionIds.Count; positionIds.Add(ids[k]); positionTarget.Add(isTarget[k]); }
                    laterImage.AddRange(Enumerable.Repeat(IgnoreIndex, i - segment));
                    globalView.AddRange(Enumerable.Repeat(IgnoreIndex, i - segment));
                }
                if (i < ids.Length)
                {
                    var vision = tokensOf[example.Images[imageIndex++]];
                    pieces.Add(vision);
                    for (int k = 0; k < vision.shape[0]; k++) { positionIds.Add(-1); positionTarget.Add(false); }
                    // Which image only where there is more than one: otherwise "the first" is a constant, learnt by the bias.
                    laterImage.AddRange(Enumerable.Repeat(example.Images.Count > 1 ? Math.Min(1, imageIndex - 1) : IgnoreIndex, (int)vision.shape[0]));
                    globalView.AddRange(Enumerable.Range(0, (int)vision.shape[0]).Select(k => k < model.Config.Resampler.NumVisTokens ? 1L : 0L));
                }
                segment = i + 1;
            }
            var named = (mentions is not null || carry is not null) && example.Mentions is not null
                ? FindMentions(ids, isTarget, example.Mentions).ToList() : null;
            if (mentions is not null && named is not null)
                foreach (var (id, m) in named) mentionAt.Add((rows.Count, textPosition[id], m, example.Images.Count > 1));
            if (carry is not null && named is not null)
                foreach (var (position, slot, m) in CarryPositions(ids, isTarget, textPosition, named))
                    carryAt.Add((rows.Count, position, slot, m, example.Images.Count > 1));
            rows.Add(torch.cat(pieces, 0));
            laterImage.Add(long.MinValue);   // row end: the row's labels are padded to the common length below
            globalView.Add(long.MinValue);
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
        var layerInputs = origins is null && mentions is null && carry is null ? null : new List<Tensor>();
        var hidden = model.LanguageModel.Model.Forward(padded, positions, bias, cache: null, layerInputs: layerInputs);   // [B, S, D]
        Tensor? originLoss = origins is null ? null : OriginLoss(layerInputs!, PadRows(laterImage, length), PadRows(globalView, length), byKind);
        Tensor? mentionLoss = mentions is null || mentionAt.Count == 0 ? null
            : MentionLoss(layerInputs!, mentionAt.Select(m => ((long)m.Row * length + m.Position, m.Mention, m.ManyImages)).ToList(), byKind);
        Tensor? carryLoss = carry is null || carryAt.Count == 0 ? null
            : CarryLoss(layerInputs![AnswerCarryHead.ReadLayer(layerInputs.Count)], carryAt.Select(c => ((long)c.Row * length + c.Position, c.Slot, c.Mention, c.ManyImages)).ToList(), byKind);

        // The head only on positions that have a target: the 32k-wide logits are the biggest tensor here.
        var flatTargets = targetTensor.view(-1);
        var selected = flatTargets.ne(IgnoreTarget).nonzero().squeeze(1);
        var logits = model.LanguageModel.LmHead.forward(hidden.reshape(-1, hidden.shape[2]).index_select(0, selected));
        var perToken = nn.functional.cross_entropy(logits, flatTargets.index_select(0, selected), reduction: nn.Reduction.None);
        if (byKind is not null)
        {
            var rowOf = selected.div(length, rounding_mode: RoundingMode.floor).data<long>().ToArray();
            var values = perToken.detach().to(ScalarType.Float32).cpu().data<float>().ToArray();
            for (int i = 0; i < values.Length; i++) Accumulate(byKind, examples[(int)rowOf[i]].Kind, values[i], 1);
        }
        Tensor loss;
        if (lossPerExample)
        {
            // selected runs row by row, so the weights are each row's 1 / (its target count * rows), in that order.
            var weights = targets.SelectMany(t =>
            {
                int n = t.Count(id => id != IgnoreIndex);
                return Enumerable.Repeat(1f / (n * targets.Count), n);
            }).ToArray();
            loss = perToken.mul(torch.tensor(weights, device: model.Device).to_type(perToken.dtype)).sum();
        }
        else loss = perToken.mean();
        if (patchLoss is not null) loss = loss.add(patchLoss.mul(patchLabelWeight.ToScalar()));
        if (originLoss is not null) loss = loss.add(originLoss.mul(originWeight.ToScalar()));
        if (mentionLoss is not null) loss = loss.add(mentionLoss.mul(mentionWeight.ToScalar()));
        if (carryLoss is not null) loss = loss.add(carryLoss.mul(carryWeight.ToScalar()));
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>The id index of the last token of each mention, searched in the user's text in order of appearance.</summary>
    private IEnumerable<(int Id, Mention Mention)> FindMentions(int[] ids, bool[] isTarget, IReadOnlyList<Mention> found)
    {
        int cursor = 0;
        foreach (var m in found)
        {
            if (!_mentionIds.TryGetValue(m.Text, out var words))
                // "the " first: a word's tokens depend on the space before it, and the article is always there.
                _mentionIds[m.Text] = words = tokenizer.Encode("the " + m.Text).Skip(1).ToArray();
            int at = -1;
            for (int i = cursor; i + words.Length <= ids.Length && at < 0; i++)
                if (!isTarget[i] && ids.AsSpan(i, words.Length).SequenceEqual(words)) at = i;
            if (at < 0) throw new ArgumentException($"The mention '{m.Text}' is not in the user's text of its example.", nameof(found));
            cursor = at + words.Length;
            yield return (cursor - 1, m);
        }
    }

    /// <summary>For each answer of a conversation (a run of target ids), the positions that predict its tokens, each with
    /// the mentions of the user's text between the previous answer and it (slot 0, 1 in order; more are not read).</summary>
    private static IEnumerable<(int Position, int Slot, Mention Mention)> CarryPositions(int[] ids, bool[] isTarget, int[] textPosition,
        List<(int Id, Mention Mention)> named)
    {
        int previousEnd = 0;
        for (int start = 0; start < ids.Length; start++)
        {
            if (!isTarget[start] || (start > 0 && isTarget[start - 1])) continue;
            int end = start;
            while (end < ids.Length && isTarget[end]) end++;
            var asked = named.Where(n => n.Id >= previousEnd && n.Id < start).Take(AnswerCarryHead.Slots).ToList();
            for (int t = start; t < end; t++)
                for (int slot = 0; slot < asked.Count; slot++)
                    yield return (textPosition[t] - 1, slot, asked[slot].Mention);
            previousEnd = end;
        }
    }

    /// <summary>Per entry of <see cref="MentionHead.Sizes"/>, the labels of <paramref name="at"/> (which image only for
    /// multi-image examples: in a one-image conversation it is a constant, learnt by the bias).</summary>
    private static long[][] MentionLabels(IReadOnlyList<(Mention Mention, bool ManyImages)> at) =>
    [
        at.Select(a => (long)a.Mention.Column).ToArray(), at.Select(a => (long)a.Mention.Row).ToArray(),
        at.Select(a => (long)a.Mention.Color).ToArray(), at.Select(a => (long)a.Mention.Kind).ToArray(),
        at.Select(a => a.ManyImages ? a.Mention.Image : IgnoreIndex).ToArray(),
    ];

    /// <summary>The sum over labels of each label's mean cross-entropy, reported as <paramref name="prefix"/>_name_<paramref name="suffix"/>.</summary>
    private Tensor LabelLosses(Tensor[] logits, long[][] labels, string prefix, int suffix, IDictionary<string, (double Sum, int Tokens)>? byKind)
    {
        var total = torch.zeros([], device: model.Device);
        for (int i = 0; i < logits.Length; i++)
        {
            int counted = labels[i].Count(l => l != IgnoreIndex);
            if (counted == 0) continue;   // cross_entropy of nothing but ignored targets is NaN
            var part = nn.functional.cross_entropy(logits[i].to_type(ScalarType.Float32), torch.tensor(labels[i], device: model.Device), ignore_index: IgnoreIndex);
            total = total.add(part);
            if (byKind is not null) Accumulate(byKind, $"{prefix}_{MentionHead.Names[i]}_{suffix}", part.item<float>(), counted);
        }
        return total;
    }

    /// <summary>The <see cref="MentionHead"/> losses on the inputs of its read layers at every mention: each label a
    /// mean over the mentions (which image only over those of multi-image examples).</summary>
    private Tensor MentionLoss(List<Tensor> layerInputs, List<(long Flat, Mention Mention, bool ManyImages)> at, IDictionary<string, (double Sum, int Tokens)>? byKind)
    {
        var index = torch.tensor(at.Select(a => a.Flat).ToArray(), device: model.Device);
        var labels = MentionLabels(at.Select(a => (a.Mention, a.ManyImages)).ToList());
        var total = torch.zeros([], device: model.Device);
        foreach (int layer in MentionHead.ReadLayers.Where(l => l < layerInputs.Count))
        {
            var h = layerInputs[layer];
            total = total.add(LabelLosses(mentions!.Forward(h.reshape(-1, h.shape[2]).index_select(0, index)), labels, "mention", layer, byKind));
        }
        return total;
    }

    /// <summary>The <see cref="AnswerCarryHead"/> losses on <paramref name="hidden"/> ([B, S, D], the input of its read
    /// layer) at every answer position, per slot: each label a mean over the positions that have that slot.</summary>
    private Tensor CarryLoss(Tensor hidden, List<(long Flat, int Slot, Mention Mention, bool ManyImages)> at, IDictionary<string, (double Sum, int Tokens)>? byKind)
    {
        var flat = hidden.reshape(-1, hidden.shape[2]);
        var total = torch.zeros([], device: model.Device);
        for (int slot = 0; slot < AnswerCarryHead.Slots; slot++)
        {
            var mine = at.Where(a => a.Slot == slot).ToList();
            if (mine.Count == 0) continue;
            var logits = carry!.Forward(flat.index_select(0, torch.tensor(mine.Select(a => a.Flat).ToArray(), device: model.Device)))[slot];
            total = total.add(LabelLosses(logits, MentionLabels(mine.Select(a => (a.Mention, a.ManyImages)).ToList()), "carry", slot, byKind));
        }
        return total;
    }

    /// <summary>Labels listed row after row, each row closed by long.MinValue, as [rows * length] with padding ignored.</summary>
    private static long[] PadRows(List<long> labels, int length)
    {
        var result = new List<long>();
        int start = 0;
        for (int i = 0; i < labels.Count; i++)
        {
            if (labels[i] != long.MinValue) continue;
            result.AddRange(labels.Skip(start).Take(i - start));
            result.AddRange(Enumerable.Repeat(IgnoreIndex, length - (i - start)));
            start = i + 1;
        }
        return result.ToArray();
    }

    /// <summary>The <see cref="TokenOriginHead"/> losses on the inputs of its read layers: later image (of the
    /// multi-image examples) and global view, each a mean over the vision positions.</summary>
    private Tensor OriginLoss(List<Tensor> layerInputs, long[] laterImage, long[] globalView, IDictionary<string, (double Sum, int Tokens)>? byKind)
    {
        var imageRows = Enumerable.Range(0, laterImage.Length).Where(i => laterImage[i] != IgnoreIndex).Select(i => (long)i).ToArray();
        var viewRows = Enumerable.Range(0, globalView.Length).Where(i => globalView[i] != IgnoreIndex).Select(i => (long)i).ToArray();
        var total = torch.zeros([], device: model.Device);
        if (viewRows.Length == 0) return total;
        var imageIndex = torch.tensor(imageRows, device: model.Device);
        var viewIndex = torch.tensor(viewRows, device: model.Device);
        var imageTargets = torch.tensor(imageRows.Select(i => laterImage[i]).ToArray(), device: model.Device);
        var viewTargets = torch.tensor(viewRows.Select(i => globalView[i]).ToArray(), device: model.Device);
        foreach (int layer in TokenOriginHead.ReadLayers.Where(l => l < layerInputs.Count))
        {
            var h = layerInputs[layer];
            var flat = h.reshape(-1, h.shape[2]);
            var (_, global) = origins!.Forward(flat.index_select(0, viewIndex));
            var viewLoss = nn.functional.cross_entropy(global.to_type(ScalarType.Float32), viewTargets);
            total = total.add(viewLoss);
            if (byKind is not null) Accumulate(byKind, $"origin_view_{layer}", viewLoss.item<float>(), viewRows.Length);
            if (imageRows.Length == 0) continue;
            var (later, _) = origins.Forward(flat.index_select(0, imageIndex));
            var imageLoss = nn.functional.cross_entropy(later.to_type(ScalarType.Float32), imageTargets);
            total = total.add(imageLoss);
            if (byKind is not null) Accumulate(byKind, $"origin_image_{layer}", imageLoss.item<float>(), imageRows.Length);
        }
        return total;
    }
}
