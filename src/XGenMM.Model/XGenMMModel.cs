using TorchSharp;
using XGenMM.Model.Configuration;
using XGenMM.Model.Imaging;
using XGenMM.Model.Kernels;
using XGenMM.Model.Language;
using XGenMM.Model.Vision;
using static TorchSharp.torch;

namespace XGenMM.Model;

/// <summary>
/// xGen-MM v1.5: SigLIP vision tower -> perceiver resampler -> Phi-3 decoder with vision tokens spliced in place of
/// each &lt;image&gt; token. Parameter names equal the Hugging Face checkpoint's ("vlm.vision_encoder...", ...).
/// </summary>
public sealed class XGenMMModel : nn.Module
{
    private readonly Vlm _vlm;

    public XGenMMConfig Config { get; }
    public Device Device { get; }
    public ScalarType DType { get; }

    /// <summary>The halves this instance holds; the others were never built (see <see cref="ModelParts"/>).</summary>
    public ModelParts Parts { get; }

    public SiglipVisionTransformer VisionEncoder => _vlm.VisionEncoder ?? throw Absent(ModelParts.Vision);
    public PerceiverResampler VisionTokenizer => _vlm.VisionTokenizer ?? throw Absent(ModelParts.Vision);
    public Phi3ForCausalLM LanguageModel => _vlm.LangModel ?? throw Absent(ModelParts.Language);

    public XGenMMModel(XGenMMConfig config, Device? device = null, ScalarType dtype = ScalarType.Float32, ModelParts parts = ModelParts.All) : base(nameof(XGenMMModel))
    {
        if ((parts & ModelParts.All) == 0) throw new ArgumentOutOfRangeException(nameof(parts), parts, "A model needs at least one part.");
        Config = config;
        Device = device ?? torch.CPU;
        DType = dtype;
        Parts = parts & ModelParts.All;
        _vlm = new Vlm(config, Device, dtype, Parts);
        register_module("vlm", _vlm);
    }

    private InvalidOperationException Absent(ModelParts part) =>
        new($"This model was built with parts {Parts}, without {part}: a silo loads only what its roles use.");

    /// <summary>pixels [V, 3, S, S] (normalised) -> SigLIP last_hidden_state [V, P, C].</summary>
    public Tensor EncodeVision(Tensor pixels)
    {
        using var noGrad = torch.no_grad();
        return VisionEncoder.forward(pixels.to(Device).to_type(DType));
    }

    /// <summary>
    /// Turns one image's SigLIP features into its vision tokens: regroup (anyres bands), resample, flatten.
    /// </summary>
    /// <param name="features">[V, P, C] for the image's views (global first).</param>
    /// <param name="groupTokenIndex">[V, P] int64: index view*P+token of the token placed in each group slot.</param>
    /// <param name="keyMask">[V, P] bool/uint8 resampler key mask, or null (no mask, the base model's path).</param>
    /// <returns>[V * L, D] vision tokens, group order.</returns>
    public Tensor ResampleImage(Tensor features, Tensor groupTokenIndex, Tensor? keyMask)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        long v = features.shape[0], p = features.shape[1], c = features.shape[2];
        var flat = features.reshape(v * p, c);
        var groups = flat.index_select(0, groupTokenIndex.to(Device).to_type(ScalarType.Int64).flatten()).view(v, p, c);
        var tokens = VisionTokenizer.Forward(groups, keyMask?.to(Device));
        return tokens.reshape(-1, tokens.shape[2]).MoveToOuterDisposeScope();
    }

    /// <summary>One preprocessed image -> its vision tokens [n, D]: SigLIP over its views, anyres regrouping, resampling.</summary>
    public Tensor EncodeImage(PreprocessedImage image)
    {
        var layout = AnyResLayout.Create(image.GridCols, image.GridRows, image.OriginalSize, Config.Vision.PatchesPerSide);
        using var scope = torch.NewDisposeScope();
        var features = EncodeVision(image.ToTensor());
        var index = torch.tensor(layout.GroupTokenIndex, [layout.Views, layout.TokensPerView]);
        Tensor? mask = Config.AnyRes ? torch.tensor(layout.KeyMask, [layout.Views, layout.TokensPerView]).to_type(ScalarType.Bool) : null;
        return ResampleImage(features, index, mask).MoveToOuterDisposeScope();
    }

    /// <summary>ids [B, T] -> [B, T, D] input embeddings.</summary>
    public Tensor Embed(Tensor ids)
    {
        using var noGrad = torch.no_grad();
        return LanguageModel.Model.EmbedTokens.forward(ids.to(Device));
    }

    /// <summary>h [..., D] -> logits [..., 32015].</summary>
    public Tensor Logits(Tensor hidden)
    {
        using var noGrad = torch.no_grad();
        return LanguageModel.LmHead.forward(hidden);
    }

    /// <summary>
    /// Moves the decoder's linear layers and the output head into the CPU mat-mul kernels (<see cref="PackedWeight"/>)
    /// in <paramref name="format"/>, freeing their tensors. For inference only (no gradients through packed layers).
    /// Does nothing on a GPU or on a CPU without AVX2+FMA, and for a model without the language part.
    /// </summary>
    /// <returns>What was packed: layers and native bytes (0 when nothing was).</returns>
    public PackReport PackDecoder(WeightFormat format, int groupSize = PackedWeight.DefaultGroupSize)
    {
        if (!Parts.HasFlag(ModelParts.Language) || Device.type != DeviceType.CPU || !PackedWeight.IsSupported) return new PackReport(0, 0);
        int layers = 0;
        long bytes = 0;
        var head = LanguageModel.LmHead;
        if (head.Pack(format, groupSize)) { layers++; bytes += head.Packed!.ByteLength; }
        foreach (var module in LanguageModel.Model.modules())
            if (module is Modules.Linear linear && linear.Packed is null && linear.Pack(format, groupSize)) { layers++; bytes += linear.Packed!.ByteLength; }
        return new PackReport(layers, bytes);
    }

    private sealed class Vlm : nn.Module
    {
        public SiglipVisionTransformer? VisionEncoder { get; }
        public PerceiverResampler? VisionTokenizer { get; }
        public Phi3ForCausalLM? LangModel { get; }

        public Vlm(XGenMMConfig config, Device device, ScalarType dtype, ModelParts parts) : base("XGenMMPerceiver")
        {
            if (parts.HasFlag(ModelParts.Vision))
            {
                VisionEncoder = new SiglipVisionTransformer(config.Vision, device, dtype);
                VisionTokenizer = new PerceiverResampler(config.Resampler, device, dtype);
                register_module("vision_encoder", VisionEncoder);
                register_module("vision_tokenizer", VisionTokenizer);
            }
            if (parts.HasFlag(ModelParts.Language))
            {
                LangModel = new Phi3ForCausalLM(config.Text, device, dtype);
                register_module("lang_model", LangModel);
            }
        }
    }
}

/// <summary>Layers moved into the CPU kernels by <see cref="XGenMMModel.PackDecoder"/> and the native bytes they hold.</summary>
public readonly record struct PackReport(int Layers, long Bytes);
