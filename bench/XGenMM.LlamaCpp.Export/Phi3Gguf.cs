using XGenMM.Model.Configuration;

namespace XGenMM.LlamaCpp.Export;

/// <summary>One tensor of llama.cpp's phi3 layout: its GGUF name, our checkpoint name below the language model, and
/// its [rows, cols] (or [n] for a norm) as llama.cpp expects it (vocabulary-wide matrices cut to the vocabulary).</summary>
internal readonly record struct Phi3Tensor(string GgufName, string OurName, long[] Shape)
{
    public bool IsNorm => Shape.Length == 1;
}

/// <summary>What every phi3 GGUF of this exporter shares: the hyperparameters and the tensor list, for the small bench
/// model (Program.cs) and the real-size random one (<see cref="RealSize"/>).</summary>
internal static class Phi3Gguf
{
    public static void AddMetadata(GgufWriter gguf, TextConfig text, GgmlType type, string name)
    {
        gguf.Add("general.architecture", "phi3");
        gguf.Add("general.name", name);
        gguf.Add("general.file_type", type switch { GgmlType.F32 => 0u, GgmlType.F16 => 1u, GgmlType.Q8_0 => 7u, _ => 32u });
        gguf.Add("phi3.context_length", (uint)text.MaxPositionEmbeddings);
        gguf.Add("phi3.embedding_length", (uint)text.HiddenSize);
        gguf.Add("phi3.feed_forward_length", (uint)text.IntermediateSize);
        gguf.Add("phi3.block_count", (uint)text.NumHiddenLayers);
        gguf.Add("phi3.attention.head_count", (uint)text.NumAttentionHeads);
        gguf.Add("phi3.attention.head_count_kv", (uint)text.NumKeyValueHeads);
        gguf.Add("phi3.attention.layer_norm_rms_epsilon", (float)text.RmsNormEps);
        gguf.Add("phi3.rope.dimension_count", (uint)text.HeadDim);
        gguf.Add("phi3.rope.freq_base", (float)text.RopeTheta);
        // Phi-3's window (llama.cpp of early 2025 refuses a phi3 model that is not 32/40 layers with 4k context without it).
        if (text.SlidingWindow is int window) gguf.Add("phi3.attention.sliding_window", (uint)window);
        // No tokenizer: the benches feed token ids; llama.cpp then makes vocab_size placeholder tokens.
        gguf.Add("tokenizer.ggml.model", "no_vocab");
        gguf.Add("phi3.vocab_size", (uint)text.VocabSize);
    }

    /// <summary>The tensors in file order; gate_up stays fused ([gate | up], the split llama.cpp's phi3 expects).</summary>
    public static IEnumerable<Phi3Tensor> Tensors(TextConfig text)
    {
        long d = text.HiddenSize, f = text.IntermediateSize, v = text.VocabSize;
        yield return new("token_embd.weight", "model.embed_tokens.weight", [v, d]);
        yield return new("output_norm.weight", "model.norm.weight", [d]);
        yield return new("output.weight", "lm_head.weight", [v, d]);
        for (int i = 0; i < text.NumHiddenLayers; i++)
        {
            string l = $"model.layers.{i}.";
            yield return new($"blk.{i}.attn_norm.weight", l + "input_layernorm.weight", [d]);
            yield return new($"blk.{i}.attn_qkv.weight", l + "self_attn.qkv_proj.weight", [3 * d, d]);
            yield return new($"blk.{i}.attn_output.weight", l + "self_attn.o_proj.weight", [d, d]);
            yield return new($"blk.{i}.ffn_norm.weight", l + "post_attention_layernorm.weight", [d]);
            yield return new($"blk.{i}.ffn_up.weight", l + "mlp.gate_up_proj.weight", [2 * f, d]);
            yield return new($"blk.{i}.ffn_down.weight", l + "mlp.down_proj.weight", [d, f]);
        }
    }

    public static string TypeName(GgmlType t) => t switch { GgmlType.F32 => "f32", GgmlType.F16 => "f16", GgmlType.BF16 => "bf16", _ => "q8_0" };
}
