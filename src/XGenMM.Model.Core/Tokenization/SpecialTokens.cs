namespace XGenMM.Model.Tokenization;

/// <summary>Token ids of the Phi-3 tokenizer plus the three multimodal tokens xGen-MM adds.</summary>
public static class SpecialTokens
{
    public const int EndOfText = 32000;
    public const int Assistant = 32001;
    public const int System = 32006;
    public const int End = 32007;
    public const int User = 32010;
    public const int Pad = 32011;
    public const int Image = 32012;
    public const int ImagePlaceholder = 32013;
    public const int EndOfChunk = 32014;
    public const string ImageText = "<image>";
}
