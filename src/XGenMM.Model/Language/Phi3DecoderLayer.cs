using TorchSharp;
using XGenMM.Model.Configuration;
using XGenMM.Model.Modules;
using static TorchSharp.torch;
using Linear = XGenMM.Model.Modules.Linear;

namespace XGenMM.Model.Language;

/// <summary>Pre-norm Phi-3 block: h = x + attn(RMSNorm(x)); h + mlp(RMSNorm(h)).</summary>
public sealed class Phi3DecoderLayer : nn.Module
{
    private readonly RmsNorm _inputNorm, _postAttentionNorm;
    private readonly Phi3Attention _attention;
    private readonly Phi3Mlp _mlp;

    public Phi3DecoderLayer(TextConfig config, int layerIndex, Device? device, ScalarType dtype) : base(nameof(Phi3DecoderLayer))
    {
        _attention = new Phi3Attention(config, layerIndex, device, dtype);
        _mlp = new Phi3Mlp(config, device, dtype);
        _inputNorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, device, dtype);
        _postAttentionNorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, device, dtype);
        register_module("self_attn", _attention);
        register_module("mlp", _mlp);
        register_module("input_layernorm", _inputNorm);
        register_module("post_attention_layernorm", _postAttentionNorm);
    }

    internal RmsNorm InputNorm => _inputNorm;
    internal RmsNorm PostAttentionNorm => _postAttentionNorm;
    internal Phi3Attention Attention => _attention;
    internal Phi3Mlp Mlp => _mlp;

    // x [B, T, D] -> [B, T, D]
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor attentionBias, IKvCache? cache)
    {
        using var scope = torch.NewDisposeScope();
        var h = x.add(_attention.Forward(_inputNorm.forward(x), cos, sin, attentionBias, cache), Scalars.One);
        h = h.add(_mlp.forward(_postAttentionNorm.forward(h)), Scalars.One);
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Multi-head attention with a fused qkv projection (rows [Q | K | V], no bias), RoPE on Q and K, no GQA,
/// scale head_dim^-0.5, o_proj without bias.
/// </summary>
public sealed class Phi3Attention : nn.Module
{
    private readonly int _layerIndex;
    private readonly long _heads, _headDim, _hidden;
    private readonly Linear _qkv, _out;

    public Phi3Attention(TextConfig config, int layerIndex, Device? device, ScalarType dtype) : base(nameof(Phi3Attention))
    {
        _layerIndex = layerIndex;
        _heads = config.NumAttentionHeads;
        _headDim = config.HeadDim;
        _hidden = config.HiddenSize;
        _qkv = new Linear(config.HiddenSize, 3L * config.HiddenSize, false, device, dtype);
        _out = new Linear(config.HiddenSize, config.HiddenSize, false, device, dtype);
        register_module("qkv_proj", _qkv);
        register_module("o_proj", _out);
    }

    internal Linear QkvProjection => _qkv;
    internal Linear OutProjection => _out;

    // x [B, T, D], cos/sin [B, 1, T, d], attentionBias [B, 1, T, S] -> [B, T, D]
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor attentionBias, IKvCache? cache)
    {
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var qkv = _qkv.forward(x).view(b, t, 3, _heads, _headDim).permute(2, 0, 3, 1, 4); // [3, B, H, T, d]
        var q = RotaryEmbedding.Apply(qkv[0], cos, sin);
        var k = RotaryEmbedding.Apply(qkv[1], cos, sin);
        var v = qkv[2];
        Tensor attended;
        if (cache is IStepAttention packed) attended = packed.Attend(_layerIndex, q, k, v);
        else
        {
            if (cache is not null) (k, v) = cache.Append(_layerIndex, k, v);
            attended = nn.functional.scaled_dot_product_attention(q, k, v, attentionBias);
        }
        return _out.forward(attended.transpose(1, 2).reshape(b, t, _hidden)).MoveToOuterDisposeScope();
    }
}

/// <summary>Fused gate_up projection (first half gate, second half up): down(up * silu(gate)).</summary>
public sealed class Phi3Mlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear _gateUp, _down;

    public Phi3Mlp(TextConfig config, Device? device, ScalarType dtype) : base(nameof(Phi3Mlp))
    {
        _gateUp = new Linear(config.HiddenSize, 2L * config.IntermediateSize, false, device, dtype);
        _down = new Linear(config.IntermediateSize, config.HiddenSize, false, device, dtype);
        register_module("gate_up_proj", _gateUp);
        register_module("down_proj", _down);
    }

    internal Linear GateUpProjection => _gateUp;
    internal Linear DownProjection => _down;

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var gateUp = _gateUp.forward(x).chunk(2, -1);
        var h = gateUp[1] * nn.functional.silu(gateUp[0]);
        return _down.forward(h).MoveToOuterDisposeScope();
    }
}
