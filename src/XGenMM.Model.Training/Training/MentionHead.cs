using TorchSharp;
using static TorchSharp.torch;

namespace XGenMM.Model.Training;

/// <summary>What a question names and where: "the red circle" in a question's text, at its last token.</summary>
/// <param name="Text">The words after the article as they stand in the user's turn ("red circle", "circle", "red object").</param>
/// <param name="Image">Which image of the conversation holds the shape (0-based).</param>
/// <param name="Column">Its third across that image (0..2).</param>
/// <param name="Row">Its third down (0..2).</param>
/// <param name="Color">Index in <see cref="Data.ShapeColor.All"/>.</param>
/// <param name="Kind">Index of its <see cref="Data.ShapeKind"/>.</param>
public sealed record Mention(string Text, int Image, int Column, int Row, int Color, int Kind);

/// <summary>
/// Training-only read-out, never saved with the model: from the decoder's hidden state at the last token of each shape
/// a question names, everything the image says about that shape (its third across and down, colour, kind and, in a
/// two-image conversation, which image has it). An answer about a named shape needs the decoder to look that shape up
/// in the vision tokens and carry what it found to the answer; from answers alone the look-up of place was never found
/// (where, relation and two-image losses at chance through 6000 joint steps, with the vision tokens holding the place
/// of each kind and the decoder knowing which tokens are the global view's). Here it is asked for at the name itself.
/// </summary>
public sealed class MentionHead : nn.Module
{
    /// <summary>Decoder layers whose inputs are read: the two upper ones, so that the two below can look the shape up
    /// and the two above can carry what they found to the answer.</summary>
    public static readonly int[] ReadLayers = [2, 3];

    /// <summary>Logit columns: column 3, row 3, colour, kind, image 2.</summary>
    public static readonly int[] Sizes = [3, 3, Data.ShapeColor.All.Length, Enum.GetValues<Data.ShapeKind>().Length, 2];
    public static readonly string[] Names = ["column", "row", "color", "kind", "image"];

    private readonly TorchSharp.Modules.Linear _read;

    public MentionHead(int hiddenSize) : base(nameof(MentionHead))
    {
        _read = nn.Linear(hiddenSize, Sizes.Sum());
        RegisterComponents();
    }

    /// <param name="hidden">[N, D] decoder hidden states at mention tokens.</param>
    /// <returns>One [N, size] logit tensor per entry of <see cref="Sizes"/>.</returns>
    public Tensor[] Forward(Tensor hidden)
    {
        return Split(_read.forward(hidden), 0);
    }

    /// <summary>The columns of <paramref name="logits"/> from <paramref name="offset"/> on, one [N, size] view per entry of <see cref="Sizes"/>.</summary>
    internal static Tensor[] Split(Tensor logits, int offset)
    {
        var result = new Tensor[Sizes.Length];
        for (int i = 0, at = offset; i < Sizes.Length; at += Sizes[i], i++) result[i] = logits.narrow(1, at, Sizes[i]);
        return result;
    }
}
