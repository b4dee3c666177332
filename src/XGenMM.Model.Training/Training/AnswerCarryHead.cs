using TorchSharp;
using static TorchSharp.torch;

namespace XGenMM.Model.Training;

/// <summary>
/// Training-only read-out, never saved with the model: at every position that predicts a token of an answer, what the
/// question of that turn named (its first and second <see cref="Mention"/>: third across and down, colour, kind, which
/// image), from the input of the decoder's last layer. <see cref="MentionHead"/> asks for that at the name itself, and
/// was learnt there (which image 0.001 at layer 3's input) while the "which image has ..." answers stayed at chance
/// (0.175, ln 2 on their one deciding token): what the name knows was never carried to the answer. Here the layers
/// below the last are asked to carry it, so that the last has only to turn it into the words.
/// </summary>
public sealed class AnswerCarryHead : nn.Module
{
    /// <summary>The decoder layer whose input is read: the last, so that every layer below may do the carrying.</summary>
    public static int ReadLayer(int layers) => layers - 1;

    /// <summary>Mentions of a turn read back at its answer: a relation names two shapes, the other questions one.</summary>
    public const int Slots = 2;

    private readonly TorchSharp.Modules.Linear _read;

    public AnswerCarryHead(int hiddenSize) : base(nameof(AnswerCarryHead))
    {
        _read = nn.Linear(hiddenSize, Slots * MentionHead.Sizes.Sum());
        RegisterComponents();
    }

    /// <param name="hidden">[N, D] decoder hidden states at answer positions.</param>
    /// <returns>Per slot, one [N, size] logit tensor per entry of <see cref="MentionHead.Sizes"/>.</returns>
    public Tensor[][] Forward(Tensor hidden)
    {
        var logits = _read.forward(hidden);
        return Enumerable.Range(0, Slots).Select(slot => MentionHead.Split(logits, slot * MentionHead.Sizes.Sum())).ToArray();
    }
}
