using TorchSharp;
using TorchSharp.Modules;
using XGenMM.Model.Configuration;
using XGenMM.Model.Modules;
using LayerNorm = XGenMM.Model.Modules.LayerNorm;
using Linear = XGenMM.Model.Modules.Linear;
using static TorchSharp.torch;

namespace XGenMM.Model.Vision;

/// <summary>
/// The perceiver resampler ("vision tokenizer", LAVIS PerceiverResampler): 128 learned latents cross-attend to one
/// group of 729 SigLIP tokens through <c>depth</c> layers (attention + feed-forward, both residual), then a final
/// LayerNorm and a biased projection to the language model's width. No positional embeddings: only which tokens
/// are in a group (and the unpad mask) matters.
/// </summary>
public sealed class PerceiverResampler : nn.Module
{
    private readonly Parameter _latents;
    private readonly ModuleList<PerceiverLayer> _layers;
    private readonly LayerNorm _norm;
    private readonly Linear _projection;

    public PerceiverResampler(ResamplerConfig config, Device? device = null, ScalarType dtype = ScalarType.Float32)
        : base(nameof(PerceiverResampler))
    {
        _latents = new Parameter(torch.empty([config.NumVisTokens, config.VisFeatureDim], dtype, device));
        _layers = new ModuleList<PerceiverLayer>();
        for (int i = 0; i < config.Depth; i++) _layers.Add(new PerceiverLayer(config, device, dtype));
        _norm = new LayerNorm(config.VisFeatureDim, 1e-5, device, dtype);
        _projection = new Linear(config.VisFeatureDim, config.LangEmbeddingDim, true, device, dtype);
        register_parameter("latents", _latents);
        register_module("layers", _layers);
        register_module("norm", _norm);
        register_module("projection", _projection);
    }

    /// <summary>Resamples each group independently.</summary>
    /// <param name="groups">[G, n, C] vision tokens, one group per row.</param>
    /// <param name="keyMask">[G, n] bool, true = the token is visible as a key; null = all visible.</param>
    /// <returns>[G, L, D] with L latents and D the language model width.</returns>
    public Tensor Forward(Tensor groups, Tensor? keyMask)
    {
        using var scope = torch.NewDisposeScope();
        long g = groups.shape[0];
        var latents = _latents.unsqueeze(0).expand(g, -1, -1);
        Tensor? attnMask = null;
        if (keyMask is not null)
        {
            // Latent keys are always visible, so even a fully padded group has a finite softmax.
            var latentKeys = torch.ones([g, _latents.shape[0]], ScalarType.Bool, groups.device);
            attnMask = torch.cat([keyMask.to_type(ScalarType.Bool), latentKeys], 1).view(g, 1, 1, -1);
        }
        foreach (var layer in _layers) latents = layer.Forward(groups, latents, attnMask);
        return _projection.forward(_norm.forward(latents)).MoveToOuterDisposeScope();
    }
}

/// <summary>One resampler layer; checkpoint names "N.0" (attention) and "N.1" (feed-forward).</summary>
public sealed class PerceiverLayer : nn.Module
{
    private readonly PerceiverAttention _attention;
    private readonly PerceiverFeedForward _feedForward;

    public PerceiverLayer(ResamplerConfig config, Device? device, ScalarType dtype) : base(nameof(PerceiverLayer))
    {
        _attention = new PerceiverAttention(config, device, dtype);
        _feedForward = new PerceiverFeedForward(config, device, dtype);
        register_module("0", _attention);
        register_module("1", _feedForward);
    }

    // media [G, n, C], latents [G, L, C] -> [G, L, C]
    public Tensor Forward(Tensor media, Tensor latents, Tensor? attnMask)
    {
        using var scope = torch.NewDisposeScope();
        var h = _attention.Forward(media, latents, attnMask).add(latents, Scalars.One);
        h = _feedForward.forward(h).add(h, Scalars.One);
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Latents attend to concat(LN(media), LN(latents)); K and V come from one fused projection (K rows first).
/// No biases; scale dim_head^-0.5 (applied by scaled_dot_product_attention).
/// </summary>
public sealed class PerceiverAttention : nn.Module
{
    private readonly long _heads, _dimHead;
    private readonly LayerNorm _normMedia, _normLatents;
    private readonly Linear _toQ, _toKv, _toOut;

    public PerceiverAttention(ResamplerConfig config, Device? device, ScalarType dtype) : base(nameof(PerceiverAttention))
    {
        _heads = config.Heads;
        _dimHead = config.DimHead;
        _normMedia = new LayerNorm(config.VisFeatureDim, 1e-5, device, dtype);
        _normLatents = new LayerNorm(config.VisFeatureDim, 1e-5, device, dtype);
        _toQ = new Linear(config.VisFeatureDim, config.InnerDim, false, device, dtype);
        _toKv = new Linear(config.VisFeatureDim, 2L * config.InnerDim, false, device, dtype);
        _toOut = new Linear(config.InnerDim, config.VisFeatureDim, false, device, dtype);
        register_module("norm_media", _normMedia);
        register_module("norm_latents", _normLatents);
        register_module("to_q", _toQ);
        register_module("to_kv", _toKv);
        register_module("to_out", _toOut);
    }

    // media [G, n, C], latents [G, L, C], attnMask [G, 1, 1, n+L] bool or null -> [G, L, C]
    public Tensor Forward(Tensor media, Tensor latents, Tensor? attnMask)
    {
        using var scope = torch.NewDisposeScope();
        long g = media.shape[0], l = latents.shape[0 + 1];
        var x = _normMedia.forward(media);
        var lat = _normLatents.forward(latents);
        var q = _toQ.forward(lat);
        var kv = _toKv.forward(torch.cat([x, lat], 1)).chunk(2, -1);
        Tensor Heads(Tensor t) => t.view(g, -1, _heads, _dimHead).transpose(1, 2);
        var attended = nn.functional.scaled_dot_product_attention(Heads(q), Heads(kv[0]), Heads(kv[1]), attnMask);
        return _toOut.forward(attended.transpose(1, 2).reshape(g, l, _heads * _dimHead)).MoveToOuterDisposeScope();
    }
}

/// <summary>LayerNorm -> Linear(C, 4C) -> exact-erf GELU -> Linear(4C, C); names "0", "1", "3" (index 2 is the GELU).</summary>
public sealed class PerceiverFeedForward : nn.Module<Tensor, Tensor>
{
    private readonly LayerNorm _norm;
    private readonly Linear _up, _down;

    public PerceiverFeedForward(ResamplerConfig config, Device? device, ScalarType dtype) : base(nameof(PerceiverFeedForward))
    {
        long inner = (long)config.VisFeatureDim * config.FFMult;
        _norm = new LayerNorm(config.VisFeatureDim, 1e-5, device, dtype);
        _up = new Linear(config.VisFeatureDim, inner, false, device, dtype);
        _down = new Linear(inner, config.VisFeatureDim, false, device, dtype);
        register_module("0", _norm);
        register_module("1", _up);
        register_module("3", _down);
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return _down.forward(nn.functional.gelu(_up.forward(_norm.forward(x)))).MoveToOuterDisposeScope();
    }
}
