using XGenMM.Model.Imaging;
using XGenMM.Model.Tokenization;

namespace XGenMM.Model.Training;

/// <summary>
/// One supervised conversation: images in order of their &lt;image&gt; placeholders, and the turns. The loss
/// covers the assistant turns only (their text and the closing &lt;|end|&gt;).
/// </summary>
public sealed record TrainingExample(IReadOnlyList<RgbImage> Images, IReadOnlyList<ChatMessage> Conversation, string Kind = "");
