using XGenMM.Model.Imaging;
using XGenMM.Model.Tokenization;

namespace XGenMM.Model.Training;

/// <summary>
/// One supervised conversation: images in order of their &lt;image&gt; placeholders, and the turns. The loss
/// covers the assistant turns only (their text and the closing &lt;|end|&gt;).
/// </summary>
/// <param name="LabelImages">Optional label maps of the images, same order (<see cref="Data.SceneRenderer.RenderLabels"/>),
/// for the patch-label loss.</param>
/// <param name="Mentions">Optional: the shapes the user's turns name, in order of appearance, for the mention loss
/// (<see cref="MentionHead"/>).</param>
public sealed record TrainingExample(IReadOnlyList<RgbImage> Images, IReadOnlyList<ChatMessage> Conversation, string Kind = "",
    IReadOnlyList<RgbImage>? LabelImages = null, IReadOnlyList<Mention>? Mentions = null);
