using System.Text.Json;
using System.Text.Json.Nodes;

namespace XGenMM.Model.Configuration;

/// <summary>SigLIP vision tower dimensions (defaults: google/siglip-so400m-patch14-384, spec §3.1).</summary>
public sealed record VisionTowerConfig
{
    public int HiddenSize { get; init; } = 1152;
    public int IntermediateSize { get; init; } = 4304;
    public int NumHiddenLayers { get; init; } = 27;
    public int NumAttentionHeads { get; init; } = 16;
    public int NumChannels { get; init; } = 3;
    public int ImageSize { get; init; } = 384;
    public int PatchSize { get; init; } = 14;
    public double LayerNormEps { get; init; } = 1e-6;
    public string HiddenAct { get; init; } = "gelu_pytorch_tanh";

    /// <summary>The patch conv uses "valid" padding: 384 / 14 gives 27 patches per side, the last 6 pixels unused.</summary>
    public int PatchesPerSide => ImageSize / PatchSize;
    public int NumPatches => PatchesPerSide * PatchesPerSide;
    public int HeadDim => HiddenSize / NumAttentionHeads;
}

/// <summary>Perceiver resampler dimensions (defaults: LAVIS PerceiverResampler for v1.5, spec §3.2).</summary>
public sealed record ResamplerConfig
{
    public int VisFeatureDim { get; init; } = 1152;
    public int LangEmbeddingDim { get; init; } = 3072;
    public int NumVisTokens { get; init; } = 128;
    public int Depth { get; init; } = 6;
    public int Heads { get; init; } = 16;
    public int DimHead { get; init; } = 96;
    public int FFMult { get; init; } = 4;

    public int InnerDim => Heads * DimHead;
}

/// <summary>Phi-3-mini decoder dimensions (defaults: transformers Phi3Config, spec §3.3).</summary>
public sealed record TextConfig
{
    public int VocabSize { get; init; } = 32064;
    public int HiddenSize { get; init; } = 3072;
    public int IntermediateSize { get; init; } = 8192;
    public int NumHiddenLayers { get; init; } = 32;
    public int NumAttentionHeads { get; init; } = 32;
    public int NumKeyValueHeads { get; init; } = 32;
    public int MaxPositionEmbeddings { get; init; } = 4096;
    public double RopeTheta { get; init; } = 10000.0;
    public double RmsNormEps { get; init; } = 1e-5;
    /// <summary>Phi-3's sliding window; query i ignores keys j with i - j &gt; window (transformers 4.41.1).</summary>
    public int? SlidingWindow { get; init; } = 2047;
    /// <summary>Rows of the main embedding/head that are real vocabulary; ids at or above it use the decoupled extras.</summary>
    public int InitialTokenizerLen { get; init; } = 32012;
    public int NumAdditionalTokens { get; init; } = 3;
    public int BosTokenId { get; init; } = 1;
    public int EosTokenId { get; init; } = 32000;
    public int PadTokenId { get; init; } = 32000;
    public string HiddenAct { get; init; } = "silu";
    public string TorchDtype { get; init; } = "float32";

    public int HeadDim => HiddenSize / NumAttentionHeads;
    /// <summary>Number of logits the model produces: initial vocabulary plus the decoupled extra tokens.</summary>
    public int OutputVocabSize => InitialTokenizerLen + NumAdditionalTokens;
}

/// <summary>Image preprocessing (Blip3ImageProcessor + anyres settings, spec §4-5).</summary>
public sealed record PreprocessorConfig
{
    public static readonly IReadOnlyList<(int Width, int Height)> DefaultAnyResGrids =
        [(384, 768), (768, 384), (768, 768), (1152, 384), (384, 1152)];

    public int ImageSize { get; init; } = 384;
    public float[] ImageMean { get; init; } = [0.5f, 0.5f, 0.5f];
    public float[] ImageStd { get; init; } = [0.5f, 0.5f, 0.5f];
    /// <summary>Anyres grid pinpoints (width, height) in pixels; null means one squashed 384x384 view per image.</summary>
    public IReadOnlyList<(int Width, int Height)>? AnyResGrids { get; init; } = DefaultAnyResGrids;
}

/// <summary>The whole model configuration as read from a Hugging Face checkpoint directory.</summary>
public sealed record XGenMMConfig
{
    public VisionTowerConfig Vision { get; init; } = new();
    public ResamplerConfig Resampler { get; init; } = new();
    public TextConfig Text { get; init; } = new();
    public PreprocessorConfig Preprocessor { get; init; } = new();
    /// <summary>True for the instruct path (anyres + unpad mask); false = one squashed view, no resampler mask.</summary>
    public bool AnyRes => Preprocessor.AnyResGrids is not null;
    public string TorchDtype { get; init; } = "float32";

    /// <summary>The real xGen-MM v1.5 (phi3-mini) configuration.</summary>
    public static XGenMMConfig Default { get; } = new();

    /// <summary>Vision tokens produced for an image with the given number of crops (plus the global view).</summary>
    public int VisionTokensPerImage(int crops) => Resampler.NumVisTokens * (1 + crops);

    /// <summary>Reads config.json and, when present, preprocessor_config.json from a checkpoint directory.</summary>
    public static XGenMMConfig FromDirectory(string directory)
    {
        string configPath = Path.Combine(directory, "config.json");
        if (!File.Exists(configPath))
            throw new ConfigException("config.json", $"'{configPath}' does not exist; a checkpoint directory needs config.json.");
        string? preprocessorPath = Path.Combine(directory, "preprocessor_config.json");
        if (!File.Exists(preprocessorPath)) preprocessorPath = null;
        return Parse(File.ReadAllText(configPath), preprocessorPath is null ? null : File.ReadAllText(preprocessorPath));
    }

    public static XGenMMConfig Parse(string configJson, string? preprocessorJson = null)
    {
        var root = ParseObject(configJson, "config.json");
        var reader = new ConfigReader("config.json");

        string? modelType = reader.String(root, "model_type", null);
        if (modelType is not null && modelType != "xgenmm")
            throw new ConfigException("model_type", $"config.json: model_type '{modelType}' is not supported (expected 'xgenmm').");

        var visionEncoder = reader.Object(root, "vision_encoder_config");
        var siglip = visionEncoder is null ? null : reader.Object(visionEncoder, "siglip_vision_config", "vision_encoder_config.");
        var vision = new VisionTowerConfig();
        if (siglip is not null)
        {
            const string p = "vision_encoder_config.siglip_vision_config.";
            vision = new VisionTowerConfig
            {
                HiddenSize = reader.Int(siglip, "hidden_size", vision.HiddenSize, p),
                IntermediateSize = reader.Int(siglip, "intermediate_size", vision.IntermediateSize, p),
                NumHiddenLayers = reader.Int(siglip, "num_hidden_layers", vision.NumHiddenLayers, p),
                NumAttentionHeads = reader.Int(siglip, "num_attention_heads", vision.NumAttentionHeads, p),
                NumChannels = reader.Int(siglip, "num_channels", vision.NumChannels, p),
                ImageSize = reader.Int(siglip, "image_size", vision.ImageSize, p),
                PatchSize = reader.Int(siglip, "patch_size", vision.PatchSize, p),
                LayerNormEps = reader.Double(siglip, "layer_norm_eps", vision.LayerNormEps, p),
                HiddenAct = reader.String(siglip, "hidden_act", vision.HiddenAct, p)!,
            };
        }

        var tok = reader.Object(root, "vision_tokenizer_config");
        var resampler = new ResamplerConfig();
        if (tok is not null)
        {
            const string p = "vision_tokenizer_config.";
            resampler = new ResamplerConfig
            {
                VisFeatureDim = reader.Int(tok, "vis_feature_dim", vision.HiddenSize, p),
                LangEmbeddingDim = reader.Int(tok, "lang_embedding_dim", resampler.LangEmbeddingDim, p),
                NumVisTokens = reader.Int(tok, "num_vis_tokens", resampler.NumVisTokens, p),
                Depth = reader.Int(tok, "perceiver_depth", resampler.Depth, p),
                Heads = reader.Int(tok, "perceiver_heads", resampler.Heads, p),
                DimHead = reader.Int(tok, "perceiver_dim_head", resampler.DimHead, p),
                FFMult = reader.Int(tok, "perceiver_ff_mult", resampler.FFMult, p),
            };
        }

        var textNode = reader.Object(root, "text_config");
        var text = new TextConfig();
        if (textNode is not null)
        {
            const string p = "text_config.";
            string? textType = reader.String(textNode, "model_type", "phi3", p);
            if (textType != "phi3")
                throw new ConfigException(p + "model_type", $"config.json: text_config.model_type '{textType}' is not supported (expected 'phi3').");
            if (textNode["rope_scaling"] is JsonNode scaling && scaling.GetValueKind() != JsonValueKind.Null)
                throw new ConfigException(p + "rope_scaling", "config.json: text_config.rope_scaling is set; only plain RoPE (Phi-3-mini-4k, rope_scaling null) is supported.");
            if (textNode["tie_word_embeddings"] is JsonNode tie && tie.GetValueKind() == JsonValueKind.True)
                throw new ConfigException(p + "tie_word_embeddings", "config.json: text_config.tie_word_embeddings=true is not supported (xGen-MM's head is untied).");
            text = new TextConfig
            {
                VocabSize = reader.Int(textNode, "vocab_size", text.VocabSize, p),
                HiddenSize = reader.Int(textNode, "hidden_size", text.HiddenSize, p),
                IntermediateSize = reader.Int(textNode, "intermediate_size", text.IntermediateSize, p),
                NumHiddenLayers = reader.Int(textNode, "num_hidden_layers", text.NumHiddenLayers, p),
                NumAttentionHeads = reader.Int(textNode, "num_attention_heads", text.NumAttentionHeads, p),
                NumKeyValueHeads = reader.Int(textNode, "num_key_value_heads", reader.Int(textNode, "num_attention_heads", text.NumAttentionHeads, p), p),
                MaxPositionEmbeddings = reader.Int(textNode, "max_position_embeddings", text.MaxPositionEmbeddings, p),
                RopeTheta = reader.Double(textNode, "rope_theta", text.RopeTheta, p),
                RmsNormEps = reader.Double(textNode, "rms_norm_eps", text.RmsNormEps, p),
                SlidingWindow = reader.NullableInt(textNode, "sliding_window", text.SlidingWindow, p),
                InitialTokenizerLen = reader.Int(textNode, "initial_tokenizer_len", text.InitialTokenizerLen, p),
                BosTokenId = reader.Int(textNode, "bos_token_id", text.BosTokenId, p),
                EosTokenId = reader.Int(textNode, "eos_token_id", text.EosTokenId, p),
                PadTokenId = reader.Int(textNode, "pad_token_id", text.PadTokenId, p),
                HiddenAct = reader.String(textNode, "hidden_act", text.HiddenAct, p)!,
                TorchDtype = reader.String(textNode, "torch_dtype", text.TorchDtype, p)!,
            };
        }

        var preprocessor = new PreprocessorConfig();
        string? aspect = visionEncoder is null ? "anyres" : reader.String(visionEncoder, "image_aspect_ratio", "anyres", "vision_encoder_config.");
        IReadOnlyList<(int, int)>? grids = visionEncoder is null ? null : reader.Grids(visionEncoder, "anyres_grids", "vision_encoder_config.");
        if (preprocessorJson is not null)
        {
            var pre = ParseObject(preprocessorJson, "preprocessor_config.json");
            var preReader = new ConfigReader("preprocessor_config.json");
            grids = preReader.Grids(pre, "grids", "") ?? grids;
            int[] size = preReader.IntArray(pre, "size") ?? [preprocessor.ImageSize, preprocessor.ImageSize];
            if (size.Length != 2 || size[0] != size[1])
                throw new ConfigException("size", "preprocessor_config.json: size must be a square [n, n].");
            string resizeMode = preReader.String(pre, "resize_mode", "squash", "")!;
            if (resizeMode != "squash")
                throw new ConfigException("resize_mode", $"preprocessor_config.json: resize_mode '{resizeMode}' is not supported (expected 'squash').");
            preprocessor = preprocessor with
            {
                ImageSize = size[0],
                ImageMean = preReader.FloatArray(pre, "image_mean") ?? preprocessor.ImageMean,
                ImageStd = preReader.FloatArray(pre, "image_std") ?? preprocessor.ImageStd,
            };
        }
        preprocessor = aspect switch
        {
            "anyres" => preprocessor with { AnyResGrids = grids ?? PreprocessorConfig.DefaultAnyResGrids },
            "none" or "pad" or "square" or null => preprocessor with { AnyResGrids = null },
            _ => throw new ConfigException("vision_encoder_config.image_aspect_ratio",
                $"config.json: vision_encoder_config.image_aspect_ratio '{aspect}' is not supported (expected 'anyres' or 'none')."),
        };

        var config = new XGenMMConfig
        {
            Vision = vision,
            Resampler = resampler,
            Text = text,
            Preprocessor = preprocessor,
            TorchDtype = reader.String(root, "torch_dtype", "float32", "")!,
        };
        config.Validate();
        return config;
    }

    /// <summary>Checks that the dimensions fit together; throws <see cref="ConfigException"/> naming the key.</summary>
    public void Validate()
    {
        static void Positive(int value, string key)
        {
            if (value <= 0) throw new ConfigException(key, $"config.json: {key} must be positive (got {value}).");
        }
        Positive(Vision.HiddenSize, "vision_encoder_config.siglip_vision_config.hidden_size");
        Positive(Vision.IntermediateSize, "vision_encoder_config.siglip_vision_config.intermediate_size");
        Positive(Vision.NumHiddenLayers, "vision_encoder_config.siglip_vision_config.num_hidden_layers");
        Positive(Vision.NumAttentionHeads, "vision_encoder_config.siglip_vision_config.num_attention_heads");
        Positive(Vision.PatchSize, "vision_encoder_config.siglip_vision_config.patch_size");
        if (Vision.HiddenSize % Vision.NumAttentionHeads != 0)
            throw new ConfigException("vision_encoder_config.siglip_vision_config.num_attention_heads", "config.json: siglip hidden_size must be divisible by num_attention_heads.");
        if (Vision.PatchSize > Vision.ImageSize)
            throw new ConfigException("vision_encoder_config.siglip_vision_config.patch_size", "config.json: siglip patch_size must not exceed image_size.");
        if (Vision.HiddenAct is not ("gelu_pytorch_tanh" or "gelu"))
            throw new ConfigException("vision_encoder_config.siglip_vision_config.hidden_act", $"config.json: siglip hidden_act '{Vision.HiddenAct}' is not supported (expected gelu_pytorch_tanh).");
        if (Vision.NumChannels != 3)
            throw new ConfigException("vision_encoder_config.siglip_vision_config.num_channels", "config.json: only RGB (num_channels 3) is supported.");
        if (Resampler.VisFeatureDim != Vision.HiddenSize)
            throw new ConfigException("vision_tokenizer_config.vis_feature_dim", $"config.json: vision_tokenizer_config.vis_feature_dim ({Resampler.VisFeatureDim}) must equal the SigLIP hidden_size ({Vision.HiddenSize}).");
        if (Resampler.LangEmbeddingDim != Text.HiddenSize)
            throw new ConfigException("vision_tokenizer_config.lang_embedding_dim", $"config.json: vision_tokenizer_config.lang_embedding_dim ({Resampler.LangEmbeddingDim}) must equal text_config.hidden_size ({Text.HiddenSize}).");
        Positive(Resampler.NumVisTokens, "vision_tokenizer_config.num_vis_tokens");
        Positive(Resampler.Depth, "vision_tokenizer_config.perceiver_depth");
        Positive(Resampler.Heads, "vision_tokenizer_config.perceiver_heads");
        Positive(Resampler.DimHead, "vision_tokenizer_config.perceiver_dim_head");
        Positive(Resampler.FFMult, "vision_tokenizer_config.perceiver_ff_mult");
        Positive(Text.HiddenSize, "text_config.hidden_size");
        Positive(Text.NumHiddenLayers, "text_config.num_hidden_layers");
        Positive(Text.NumAttentionHeads, "text_config.num_attention_heads");
        Positive(Text.IntermediateSize, "text_config.intermediate_size");
        if (Text.HiddenSize % Text.NumAttentionHeads != 0 || Text.HeadDim % 2 != 0)
            throw new ConfigException("text_config.num_attention_heads", "config.json: text_config.hidden_size / num_attention_heads must be an even integer (RoPE rotates halves).");
        if (Text.NumKeyValueHeads != Text.NumAttentionHeads)
            throw new ConfigException("text_config.num_key_value_heads", $"config.json: text_config.num_key_value_heads ({Text.NumKeyValueHeads}) must equal num_attention_heads: Phi-3-mini has no grouped-query attention.");
        if (Text.HiddenAct != "silu")
            throw new ConfigException("text_config.hidden_act", $"config.json: text_config.hidden_act '{Text.HiddenAct}' is not supported (expected silu).");
        if (Text.InitialTokenizerLen <= 0 || Text.InitialTokenizerLen > Text.VocabSize)
            throw new ConfigException("text_config.initial_tokenizer_len", $"config.json: text_config.initial_tokenizer_len ({Text.InitialTokenizerLen}) must be in 1..vocab_size ({Text.VocabSize}).");
        if (Text.SlidingWindow is <= 0)
            throw new ConfigException("text_config.sliding_window", "config.json: text_config.sliding_window must be positive or null.");
        if (Preprocessor.ImageSize != Vision.ImageSize)
            throw new ConfigException("size", $"preprocessor_config.json: size ({Preprocessor.ImageSize}) must equal the SigLIP image_size ({Vision.ImageSize}).");
        if (Preprocessor.ImageMean.Length != 3 || Preprocessor.ImageStd.Length != 3 || Preprocessor.ImageStd.Any(s => s <= 0))
            throw new ConfigException("image_mean", "preprocessor_config.json: image_mean and image_std need 3 values, std positive.");
        if (Preprocessor.AnyResGrids is { } grids)
        {
            if (grids.Count == 0)
                throw new ConfigException("grids", "preprocessor_config.json: grids is empty.");
            foreach (var (w, h) in grids)
            {
                if (w <= 0 || h <= 0 || w % Vision.ImageSize != 0 || h % Vision.ImageSize != 0)
                    throw new ConfigException("grids", $"preprocessor_config.json: grid [{w}, {h}] must be positive multiples of {Vision.ImageSize}.");
            }
        }
    }

    /// <summary>A Hugging Face style config.json with every dimension explicit (the form of our own checkpoints).</summary>
    public string ToJson()
    {
        var grids = Preprocessor.AnyResGrids is { } g ? new JsonArray(g.Select(x => (JsonNode)new JsonArray(x.Width, x.Height)).ToArray()) : null;
        var root = new JsonObject
        {
            ["architectures"] = new JsonArray("XGenMMModelForConditionalGeneration"),
            ["model_type"] = "xgenmm",
            ["torch_dtype"] = TorchDtype,
            ["text_config"] = new JsonObject
            {
                ["model_type"] = "phi3",
                ["initial_tokenizer_len"] = Text.InitialTokenizerLen,
                ["sliding_window"] = Text.SlidingWindow,
                ["torch_dtype"] = Text.TorchDtype,
                ["vocab_size"] = Text.VocabSize,
                ["hidden_size"] = Text.HiddenSize,
                ["intermediate_size"] = Text.IntermediateSize,
                ["num_hidden_layers"] = Text.NumHiddenLayers,
                ["num_attention_heads"] = Text.NumAttentionHeads,
                ["num_key_value_heads"] = Text.NumKeyValueHeads,
                ["hidden_act"] = Text.HiddenAct,
                ["max_position_embeddings"] = Text.MaxPositionEmbeddings,
                ["rope_theta"] = Text.RopeTheta,
                ["rope_scaling"] = null,
                ["rms_norm_eps"] = Text.RmsNormEps,
                ["tie_word_embeddings"] = false,
                ["bos_token_id"] = Text.BosTokenId,
                ["eos_token_id"] = Text.EosTokenId,
                ["pad_token_id"] = Text.PadTokenId,
            },
            ["vision_encoder_config"] = new JsonObject
            {
                ["model_type"] = "xgenmm_vision_encoder",
                ["anyres_patch_sampling"] = true,
                ["image_aspect_ratio"] = AnyRes ? "anyres" : "none",
                ["anyres_grids"] = grids,
                ["siglip_vision_config"] = new JsonObject
                {
                    ["model_type"] = "siglip_vision_model",
                    ["hidden_size"] = Vision.HiddenSize,
                    ["intermediate_size"] = Vision.IntermediateSize,
                    ["num_hidden_layers"] = Vision.NumHiddenLayers,
                    ["num_attention_heads"] = Vision.NumAttentionHeads,
                    ["num_channels"] = Vision.NumChannels,
                    ["image_size"] = Vision.ImageSize,
                    ["patch_size"] = Vision.PatchSize,
                    ["hidden_act"] = Vision.HiddenAct,
                    ["layer_norm_eps"] = Vision.LayerNormEps,
                },
            },
            ["vision_tokenizer_config"] = new JsonObject
            {
                ["model_type"] = "xgenmm_vision_tokenizer",
                ["vis_feature_dim"] = Resampler.VisFeatureDim,
                ["lang_embedding_dim"] = Resampler.LangEmbeddingDim,
                ["num_vis_tokens"] = Resampler.NumVisTokens,
                ["perceiver_depth"] = Resampler.Depth,
                ["perceiver_heads"] = Resampler.Heads,
                ["perceiver_dim_head"] = Resampler.DimHead,
                ["perceiver_ff_mult"] = Resampler.FFMult,
            },
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static JsonObject ParseObject(string json, string file)
    {
        try
        {
            return JsonNode.Parse(json) as JsonObject
                ?? throw new ConfigException("", $"{file} must contain a JSON object.");
        }
        catch (JsonException ex)
        {
            throw new ConfigException("", $"{file} is not valid JSON: {ex.Message}", ex);
        }
    }
}
