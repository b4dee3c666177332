using TorchSharp;
using XGenMM.Model.Imaging;
using XGenMM.Model.Training.Data;
using static TorchSharp.torch;

namespace XGenMM.Model.Training;

/// <summary>
/// Dense supervision for a vision side trained from scratch. The real xGen-MM starts from a pretrained SigLIP; ours
/// has to learn its first features, and from answers alone it did not (measured on the 57% checkpoint: shape answers at
/// chance after 6500 steps, a red circle and a red star 2% apart in the resampled tokens against 130% for a red and a
/// blue circle, left/right questions at chance). These labels say, for every patch of every view, which shape kind and
/// colour it shows (read off a label map drawn with the scene, <see cref="SceneRenderer.RenderLabels"/>, at the places
/// the anyres preprocessing takes each patch from), and from those, for every perceiver group, which colour each kind
/// has there and which kind each colour has, and in the global view in which third across and down each kind sits.
/// </summary>
public static class PatchLabels
{
    /// <summary>Classes: 0 = background, then one per <see cref="ShapeKind"/> / per <see cref="ShapeColor.All"/> entry.</summary>
    public static readonly int KindClasses = Enum.GetValues<ShapeKind>().Length + 1, ColorClasses = ShapeColor.All.Length + 1;

    /// <summary>Target that carries no loss (cross_entropy's ignore_index).</summary>
    public const long NoTarget = -100;

    /// <summary>Sub-samples per patch side: a patch shows a shape when at least <see cref="MinCover"/> of the 16 points
    /// fall on it. Centre sampling alone missed shapes that the squashed global view of a wide image makes narrower than
    /// a patch.</summary>
    private const int SubSamples = 4, MinCover = 3;

    /// <summary>Kind and colour class of every patch, view-major (global view, then crops in raster order) then row-major:
    /// two arrays of Views * (S/patch)^2.</summary>
    /// <param name="labels">The label map, at the size of the original image.</param>
    /// <param name="geometry">The picture's preprocessing result: which views there are and how they were cut.</param>
    public static (long[] Kinds, long[] Colors) Read(RgbImage labels, PreprocessedImage geometry, int patchSize)
    {
        if ((labels.Width, labels.Height) != geometry.OriginalSize)
            throw new ArgumentException($"The label map is {labels.Width}x{labels.Height}, the picture {geometry.OriginalSize.Width}x{geometry.OriginalSize.Height}.", nameof(labels));
        int s = geometry.ImageSize, side = s / patchSize, patches = side * side;
        var (w, h) = geometry.OriginalSize;
        var fit = AnyResPreprocessor.FitInside(geometry.OriginalSize, geometry.BestResolution.Width, geometry.BestResolution.Height);
        var kinds = new long[geometry.Views * patches];
        var colors = new long[kinds.Length];
        var votes = new int[KindClasses];
        var colorOf = new long[KindClasses];
        for (int v = 0; v < geometry.Views; v++)
            for (int p = 0; p < patches; p++)
            {
                Array.Clear(votes);
                for (int a = 0; a < SubSamples; a++)
                    for (int b = 0; b < SubSamples; b++)
                    {
                        double px = (p % side + (b + 0.5) / SubSamples) * patchSize, py = (p / side + (a + 0.5) / SubSamples) * patchSize;
                        double ox, oy;
                        if (v == 0)
                        {
                            ox = px * w / s;       // the global view squashes the whole picture
                            oy = py * h / s;
                        }
                        else
                        {
                            int crop = v - 1, cols = Math.Max(1, geometry.GridCols);
                            double gx = crop % cols * s + px - fit.X0, gy = crop / cols * s + py - fit.Y0;
                            if (gx < 0 || gy < 0 || gx >= fit.Width || gy >= fit.Height) continue;   // black padding
                            ox = gx * w / fit.Width;
                            oy = gy * h / fit.Height;
                        }
                        int x = Math.Min(w - 1, (int)ox), y = Math.Min(h - 1, (int)oy), i = (y * w + x) * 3;
                        long kind = Math.Clamp(labels.Pixels[i] / SceneRenderer.KindStep, 0, KindClasses - 1);
                        votes[kind]++;
                        colorOf[kind] = Math.Clamp(labels.Pixels[i + 1] / SceneRenderer.ColorStep, 0, ColorClasses - 1);
                    }
                int best = 1;
                for (int k = 2; k < KindClasses; k++)
                    if (votes[k] > votes[best]) best = k;
                if (votes[best] < MinCover) best = 0;
                kinds[v * patches + p] = best;
                colors[v * patches + p] = best == 0 ? 0 : colorOf[best];
            }
        return (kinds, colors);
    }

    /// <summary>What each perceiver group shows, in the group layout the model uses (<see cref="AnyResLayout"/>).</summary>
    /// <param name="ColorOfKind">[Groups * kinds]: colour class of each kind in the group, 0 = not there.</param>
    /// <param name="KindOfColor">[Groups * colours]: kind class of each colour in the group, 0 = not there.</param>
    /// <param name="Column">[kinds]: third across the global view (0..2) where each kind's patches centre, or <see cref="NoTarget"/>.</param>
    /// <param name="Row">[kinds]: third down, likewise.</param>
    public sealed record GroupTargets(long[] ColorOfKind, long[] KindOfColor, long[] Column, long[] Row);

    public static GroupTargets Groups(long[] kinds, long[] colors, AnyResLayout layout)
    {
        int groups = layout.Views, slots = layout.TokensPerView, nKinds = KindClasses - 1, nColors = ColorClasses - 1;
        int side = (int)Math.Round(Math.Sqrt(slots));
        var colorOfKind = new long[groups * nKinds];
        var kindOfColor = new long[groups * nColors];
        for (int g = 0; g < groups; g++)
            for (int i = 0; i < slots; i++)
            {
                long index = layout.GroupTokenIndex[g * slots + i];
                long kind = kinds[index], color = colors[index];
                if (kind == 0 || color == 0 || layout.KeyMask[g * slots + i] == 0) continue;
                // A scene's shapes differ in kind and in colour, so each kind has one colour and each colour one kind.
                colorOfKind[g * nKinds + kind - 1] = color;
                kindOfColor[g * nColors + color - 1] = kind;
            }
        var column = Enumerable.Repeat(NoTarget, nKinds).ToArray();
        var row = Enumerable.Repeat(NoTarget, nKinds).ToArray();
        for (int k = 1; k <= nKinds; k++)
        {
            int count = 0;
            double sumRow = 0, sumCol = 0;
            for (int p = 0; p < slots; p++)
            {
                if (kinds[p] != k) continue;   // view 0 is the global view, group 0 is that view unchanged
                count++;
                sumRow += p / side;
                sumCol += p % side;
            }
            if (count == 0) continue;
            column[k - 1] = Math.Min(2, (long)((sumCol / count + 0.5) * 3 / side));
            row[k - 1] = Math.Min(2, (long)((sumRow / count + 0.5) * 3 / side));
        }
        return new GroupTargets(colorOfKind, kindOfColor, column, row);
    }
}

/// <summary>
/// Training-only read-outs, never saved with the model. Per vision-tower token: shape kind, colour, and its own row and
/// column (so that the tower's outputs carry where they are: the perceiver has no position embeddings of its own). Per
/// perceiver group: one learned query per kind and one per colour attend over the group's tokens, as the decoder would
/// when asked "what color is the star?" or "what shape is the red object?", and read the answer (and, in the global
/// view, the kind's third across and down).
/// </summary>
public sealed class PatchLabelHead : nn.Module
{
    public static readonly int Kinds = PatchLabels.KindClasses - 1, Colors = PatchLabels.ColorClasses - 1;
    private readonly int _side;
    private readonly TorchSharp.Modules.Linear _patch, _keys, _kindRead, _colorRead;
    private readonly TorchSharp.Modules.Parameter _queries;

    public PatchLabelHead(int hiddenSize, int tokenSize, int patchesPerSide) : base(nameof(PatchLabelHead))
    {
        _side = patchesPerSide;
        _patch = nn.Linear(hiddenSize, PatchLabels.KindClasses + PatchLabels.ColorClasses + 2 * patchesPerSide);
        _queries = new TorchSharp.Modules.Parameter(torch.randn([Kinds + Colors, tokenSize]).mul(0.02));
        _keys = nn.Linear(tokenSize, tokenSize, hasBias: false);
        _kindRead = nn.Linear(tokenSize, PatchLabels.ColorClasses + 6);
        _colorRead = nn.Linear(tokenSize, PatchLabels.KindClasses);
        RegisterComponents();
    }

    /// <param name="features">[N, C] vision tower outputs.</param>
    /// <returns>[N, kind classes], [N, colour classes], [N, side] row and [N, side] column logits.</returns>
    public (Tensor Kinds, Tensor Colors, Tensor Rows, Tensor Columns) Patches(Tensor features)
    {
        var logits = _patch.forward(features);
        int k = PatchLabels.KindClasses, c = PatchLabels.ColorClasses;
        return (logits.narrow(1, 0, k), logits.narrow(1, k, c), logits.narrow(1, k + c, _side), logits.narrow(1, k + c + _side, _side));
    }

    /// <param name="groups">[G, L, D] resampled tokens.</param>
    /// <returns>[G * kinds, colour classes] colour of each kind, [G * kinds, 3] its third across, [G * kinds, 3] down,
    /// [G * colours, kind classes] kind of each colour.</returns>
    public (Tensor ColorOfKind, Tensor Column, Tensor Row, Tensor KindOfColor) Groups(Tensor groups)
    {
        var tokens = nn.functional.layer_norm(groups, [groups.shape[2]]);                       // [G, L, D]
        var scores = torch.einsum("qd,gld->gql", _queries, _keys.forward(tokens)).div(Math.Sqrt(groups.shape[2]));
        var read = torch.einsum("gql,gld->gqd", scores.softmax(-1), tokens);                    // [G, K + C, D]
        var byKind = _kindRead.forward(read.narrow(1, 0, Kinds)).reshape(-1, PatchLabels.ColorClasses + 6);
        var byColor = _colorRead.forward(read.narrow(1, Kinds, Colors)).reshape(-1, PatchLabels.KindClasses);
        int c = PatchLabels.ColorClasses;
        return (byKind.narrow(1, 0, c), byKind.narrow(1, c, 3), byKind.narrow(1, c + 3, 3), byColor);
    }
}
