using TorchSharp;
using TorchSharp.Modules;
using XGenMM.Model.Configuration;
using XGenMM.Model.Modules;
using LayerNorm = XGenMM.Model.Modules.LayerNorm;
using Linear = XGenMM.Model.Modules.Linear;
using static TorchSharp.torch;

namespace XGenMM.Model.Vision;

/// <summary>
/// SigLIP so400m vision tower (transformers SiglipVisionTransformer): patch embedding + learned positions, pre-LN
/// encoder layers, post_layernorm. Its output is <c>last_hidden_state</c>: all patch tokens after post_layernorm
/// (no CLS token; the attention-pooling head of the checkpoint is unused and not built).
/// </summary>
public sealed class SiglipVisionTransformer : nn.Module<Tensor, Tensor>
{
    private readonly SiglipVisionEmbeddings _embeddings;
    private readonly ModuleList<SiglipEncoderLayer> _layers;
    private readonly LayerNorm _postLayerNorm;

    public SiglipVisionTransformer(VisionTowerConfig config, Device? device = null, ScalarType dtype = ScalarType.Float32)
        : base(nameof(SiglipVisionTransformer))
    {
        _embeddings = new SiglipVisionEmbeddings(config, device, dtype);
        _layers = new ModuleList<SiglipEncoderLayer>();
        for (int i = 0; i < config.NumHiddenLayers; i++) _layers.Add(new SiglipEncoderLayer(config, device, dtype));
        _postLayerNorm = new LayerNorm(config.HiddenSize, config.LayerNormEps, device, dtype);

        register_module("embeddings", _embeddings);
        var encoder = new EncoderContainer(_layers);
        register_module("encoder", encoder);
        register_module("post_layernorm", _postLayerNorm);
    }

    // pixels: [N, 3, S, S] normalised -> [N, P, C] (P = (S/patch)^2 patches)
    public override Tensor forward(Tensor pixels) => ForwardWithHiddenStates(pixels, collectHiddenStates: null);

    /// <summary>Runs the tower; when <paramref name="collectHiddenStates"/> is given it receives the embeddings and
    /// each layer's output (before post_layernorm), HF <c>output_hidden_states</c> style.</summary>
    public Tensor ForwardWithHiddenStates(Tensor pixels, List<Tensor>? collectHiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        var h = _embeddings.forward(pixels);
        collectHiddenStates?.Add(h.detach().clone().MoveToOuterDisposeScope());
        foreach (var layer in _layers)
        {
            var next = layer.forward(h);
            h.Dispose();
            h = next;
            collectHiddenStates?.Add(h.detach().clone().MoveToOuterDisposeScope());
        }
        return _postLayerNorm.forward(h).MoveToOuterDisposeScope();
    }

    /// <summary>Holds the layer list under the checkpoint name "encoder.layers".</summary>
    private sealed class EncoderContainer : nn.Module
    {
        public EncoderContainer(ModuleList<SiglipEncoderLayer> layers) : base("SiglipEncoder") => register_module("layers", layers);
    }
}

/// <summary>Conv patch embedding (kernel = stride = patch) plus learned absolute position embeddings.</summary>
public sealed class SiglipVisionEmbeddings : nn.Module<Tensor, Tensor>
{
    private readonly long _patch;
    private readonly ParameterHolder _patchEmbedding;
    private readonly ParameterHolder _positionEmbedding;

    public SiglipVisionEmbeddings(VisionTowerConfig config, Device? device, ScalarType dtype) : base(nameof(SiglipVisionEmbeddings))
    {
        _patch = config.PatchSize;
        _patchEmbedding = new ParameterHolder("Conv2d")
            .Add("weight", torch.empty([config.HiddenSize, config.NumChannels, config.PatchSize, config.PatchSize], dtype, device))
            .Add("bias", torch.empty([config.HiddenSize], dtype, device));
        _positionEmbedding = new ParameterHolder("Embedding")
            .Add("weight", torch.empty([config.NumPatches, config.HiddenSize], dtype, device));
        register_module("patch_embedding", _patchEmbedding);
        register_module("position_embedding", _positionEmbedding);
    }

    // pixels: [N, 3, S, S] -> [N, P, C]
    public override Tensor forward(Tensor pixels)
    {
        using var scope = torch.NewDisposeScope();
        var weight = _patchEmbedding["weight"];
        var x = nn.functional.conv2d(pixels.to_type(weight.dtype), weight, _patchEmbedding["bias"], strides: [_patch, _patch]);
        x = x.flatten(2).transpose(1, 2);
        return x.add(_positionEmbedding["weight"], Scalars.One).MoveToOuterDisposeScope();
    }
}

/// <summary>Pre-LN transformer block: x + attn(LN1(x)); x + mlp(LN2(x)).</summary>
public sealed class SiglipEncoderLayer : nn.Module<Tensor, Tensor>
{
    private readonly LayerNorm _norm1;
    private readonly SiglipAttention _attention;
    private readonly LayerNorm _norm2;
    private readonly SiglipMlp _mlp;

    public SiglipEncoderLayer(VisionTowerConfig config, Device? device, ScalarType dtype) : base(nameof(SiglipEncoderLayer))
    {
        _norm1 = new LayerNorm(config.HiddenSize, config.LayerNormEps, device, dtype);
        _attention = new SiglipAttention(config, device, dtype);
        _norm2 = new LayerNorm(config.HiddenSize, config.LayerNormEps, device, dtype);
        _mlp = new SiglipMlp(config, device, dtype);
        register_module("layer_norm1", _norm1);
        register_module("self_attn", _attention);
        register_module("layer_norm2", _norm2);
        register_module("mlp", _mlp);
    }

    // x: [N, P, C] -> [N, P, C]
    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var h = x.add(_attention.forward(_norm1.forward(x)), Scalars.One);
        h = h.add(_mlp.forward(_norm2.forward(h)), Scalars.One);
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>Multi-head self-attention with biased q/k/v/out projections, scale head_dim^-0.5, no mask.</summary>
public sealed class SiglipAttention : nn.Module<Tensor, Tensor>
{
    private readonly long _heads;
    private readonly Linear _q, _k, _v, _out;

    public SiglipAttention(VisionTowerConfig config, Device? device, ScalarType dtype) : base(nameof(SiglipAttention))
    {
        _heads = config.NumAttentionHeads;
        _q = new Linear(config.HiddenSize, config.HiddenSize, true, device, dtype);
        _k = new Linear(config.HiddenSize, config.HiddenSize, true, device, dtype);
        _v = new Linear(config.HiddenSize, config.HiddenSize, true, device, dtype);
        _out = new Linear(config.HiddenSize, config.HiddenSize, true, device, dtype);
        register_module("q_proj", _q);
        register_module("k_proj", _k);
        register_module("v_proj", _v);
        register_module("out_proj", _out);
    }

    // x: [N, P, C] -> [N, P, C]
    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        long n = x.shape[0], p = x.shape[1], c = x.shape[2];
        Tensor Heads(Tensor t) => t.view(n, p, _heads, c / _heads).transpose(1, 2);
        var attended = nn.functional.scaled_dot_product_attention(Heads(_q.forward(x)), Heads(_k.forward(x)), Heads(_v.forward(x)));
        return _out.forward(attended.transpose(1, 2).reshape(n, p, c)).MoveToOuterDisposeScope();
    }
}

/// <summary>fc1 -> GELU (tanh approximation, "gelu_pytorch_tanh") -> fc2.</summary>
public sealed class SiglipMlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear _fc1, _fc2;
    private readonly bool _tanh;

    public SiglipMlp(VisionTowerConfig config, Device? device, ScalarType dtype) : base(nameof(SiglipMlp))
    {
        _tanh = config.HiddenAct == "gelu_pytorch_tanh";
        _fc1 = new Linear(config.HiddenSize, config.IntermediateSize, true, device, dtype);
        _fc2 = new Linear(config.IntermediateSize, config.HiddenSize, true, device, dtype);
        register_module("fc1", _fc1);
        register_module("fc2", _fc2);
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var h = _fc1.forward(x);
        h = _tanh ? nn.functional.gelu(h, GELU.Approximate.tanh) : nn.functional.gelu(h);
        return _fc2.forward(h).MoveToOuterDisposeScope();
    }
}
