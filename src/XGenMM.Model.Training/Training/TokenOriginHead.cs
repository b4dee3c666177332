using TorchSharp;
using static TorchSharp.torch;

namespace XGenMM.Model.Training;

/// <summary>
/// Training-only read-out, never saved with the model: from the decoder's hidden state at each vision token, which image
/// of the conversation it came from (first or a later one) and whether it is of the global view or of a crop. Nothing in
/// a vision token says either (the groups are spliced in with no separators, spec §3), yet a two-image question needs
/// the first, and where-questions need the second (a crop's tokens know where they sit in the crop, not in the picture).
/// The decoder can work both out from where the token sits in the sequence, but from answers alone it did not (measured:
/// two-image, where and relation losses at chance through 5000 joint steps while colour and kind were read).
/// </summary>
public sealed class TokenOriginHead : nn.Module
{
    /// <summary>Decoder layers whose inputs are read: after the first and after the second layer, so that the two above
    /// them can use what these learnt to carry.</summary>
    public static readonly int[] ReadLayers = [1, 2];

    private readonly TorchSharp.Modules.Linear _read;

    public TokenOriginHead(int hiddenSize) : base(nameof(TokenOriginHead))
    {
        _read = nn.Linear(hiddenSize, 4);
        RegisterComponents();
    }

    /// <param name="hidden">[N, D] decoder hidden states at vision tokens.</param>
    /// <returns>[N, 2] later-image logits and [N, 2] global-view logits.</returns>
    public (Tensor Image, Tensor Global) Forward(Tensor hidden)
    {
        var logits = _read.forward(hidden);
        return (logits.narrow(1, 0, 2), logits.narrow(1, 2, 2));
    }
}
