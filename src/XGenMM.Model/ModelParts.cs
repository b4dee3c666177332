namespace XGenMM.Model;

/// <summary>
/// Which halves of xGen-MM a process builds and loads. A vision silo runs only the vision tower and the resampler; a
/// decoder silo receives finished vision tokens and runs only the language model (embeddings, Phi-3, head); a silo of
/// both roles loads both. The checkpoint tensors of an absent part are skipped, never read.
/// </summary>
[Flags]
public enum ModelParts
{
    /// <summary>SigLIP vision tower and perceiver resampler (<c>vlm.vision_encoder.*</c>, <c>vlm.vision_tokenizer.*</c>).</summary>
    Vision = 1,
    /// <summary>Phi-3 with its embeddings and LM head (<c>vlm.lang_model.*</c>).</summary>
    Language = 2,
    All = Vision | Language,
}

public static class ModelPartsExtensions
{
    /// <summary>The part a checkpoint tensor belongs to, by its Hugging Face name.</summary>
    public static ModelParts PartOf(string checkpointName) =>
        checkpointName.StartsWith("vlm.lang_model.", StringComparison.Ordinal) ? ModelParts.Language : ModelParts.Vision;

    /// <summary>True when the tensor named <paramref name="checkpointName"/> belongs to a part in <paramref name="parts"/>.</summary>
    public static bool Holds(this ModelParts parts, string checkpointName) => (parts & PartOf(checkpointName)) != 0;
}
