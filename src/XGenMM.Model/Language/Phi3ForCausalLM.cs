using TorchSharp;
using TorchSharp.Modules;
using XGenMM.Model.Configuration;
using XGenMM.Model.Modules;
using static TorchSharp.torch;

namespace XGenMM.Model.Language;

/// <summary>Phi-3 decoder stack ("model"): decoupled embedding, decoder layers, final RMSNorm.</summary>
public sealed class Phi3Model : nn.Module
{
    private readonly TextConfig _config;
    private readonly ModuleList<Phi3DecoderLayer> _layers;
    private readonly RmsNorm _norm;
    private readonly RotaryEmbedding _rope;

    public DecoupledEmbedding EmbedTokens { get; }

    public Phi3Model(TextConfig config, Device? device, ScalarType dtype) : base(nameof(Phi3Model))
    {
        _config = config;
        EmbedTokens = new DecoupledEmbedding(config, device, dtype);
        _layers = new ModuleList<Phi3DecoderLayer>();
        for (int i = 0; i < config.NumHiddenLayers; i++) _layers.Add(new Phi3DecoderLayer(config, i, device, dtype));
        _norm = new RmsNorm(config.HiddenSize, config.RmsNormEps, device, dtype);
        _rope = new RotaryEmbedding(config.HeadDim, config.RopeTheta, device?.type == DeviceType.META ? torch.CPU : device);
        register_module("embed_tokens", EmbedTokens);
        register_module("layers", _layers);
        register_module("norm", _norm);
    }

    /// <summary>Runs the decoder over this step's embeddings.</summary>
    /// <param name="inputsEmbeds">[B, T, D]</param>
    /// <param name="positionIds">[B, T] int64 RoPE positions.</param>
    /// <param name="attentionBias">[B, 1, T, S] additive bias (see <see cref="AttentionBias"/>); unused when <paramref name="cache"/> is an <see cref="IStepAttention"/>, which masks per sequence itself.</param>
    /// <param name="cache">KV cache to read and extend, or null for a single full pass.</param>
    /// <param name="hiddenStates">When given, receives the input embeddings and each layer's output except the last,
    /// then the final normed output (transformers' output_hidden_states convention).</param>
    /// <param name="layerInputs">When given (training read-outs), receives the input of each layer still attached to the
    /// graph, so that a loss on them reaches the layers below.</param>
    /// <returns>[B, T, D] final RMSNorm output (the lm_head input).</returns>
    public Tensor Forward(Tensor inputsEmbeds, Tensor positionIds, Tensor attentionBias, IKvCache? cache, List<Tensor>? hiddenStates = null,
        List<Tensor>? layerInputs = null)
    {
        using var scope = torch.NewDisposeScope();
        var (cos, sin) = _rope.CosSin(positionIds, inputsEmbeds.dtype);
        var h = inputsEmbeds;
        for (int i = 0; i < _layers.Count; i++)
        {
            if (hiddenStates is not null) hiddenStates.Add(h.detach().clone().MoveToOuterDisposeScope());
            layerInputs?.Add(h.alias().MoveToOuterDisposeScope());
            var next = _layers[i].Forward(h, cos, sin, attentionBias, cache);
            if (!ReferenceEquals(h, inputsEmbeds)) h.Dispose();
            h = next;
        }
        var output = _norm.forward(h);
        if (hiddenStates is not null) hiddenStates.Add(output.detach().clone().MoveToOuterDisposeScope());
        return output.MoveToOuterDisposeScope();
    }

    public int? SlidingWindow => _config.SlidingWindow;

    internal TextConfig Config => _config;
    internal IList<Phi3DecoderLayer> Layers => _layers;
    internal RmsNorm Norm => _norm;
    internal RotaryEmbedding Rope => _rope;

    protected override void Dispose(bool disposing)
    {
        if (disposing) _rope.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>Phi-3 causal LM as xGen-MM's "lang_model": the decoder plus the decoupled output head.</summary>
public sealed class Phi3ForCausalLM : nn.Module
{
    public Phi3Model Model { get; }
    public DecoupledLinear LmHead { get; }

    public Phi3ForCausalLM(TextConfig config, Device? device, ScalarType dtype) : base(nameof(Phi3ForCausalLM))
    {
        Model = new Phi3Model(config, device, dtype);
        LmHead = new DecoupledLinear(config, device, dtype);
        register_module("model", Model);
        register_module("lm_head", LmHead);
    }
}
