using TorchSharp;
using TorchSharp.Modules;
using XGenMM.Model.Configuration;
using XGenMM.Model.Kernels;
using XGenMM.Model.Modules;
using static TorchSharp.torch;

namespace XGenMM.Model.Language;

/// <summary>
/// Input embedding of xGen-MM (LAVIS DecoupledEmbedding): ids below initial_tokenizer_len (32012) read the Phi-3
/// table, ids 32012.. (the multimodal tokens) read the small "additional_embedding" table.
/// </summary>
public sealed class DecoupledEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly long _initial;
    private readonly Parameter _weight;
    private readonly ParameterHolder _additional;
    // Held for the module's lifetime so the native calls below never see a finalised temporary (see Scalars).
    private readonly Scalar _initialScalar, _lastMain, _lastAdditional;

    public DecoupledEmbedding(TextConfig config, Device? device, ScalarType dtype) : base(nameof(DecoupledEmbedding))
    {
        _initial = config.InitialTokenizerLen;
        _weight = new Parameter(torch.empty([config.VocabSize, config.HiddenSize], dtype, device));
        register_parameter("weight", _weight);
        _additional = new ParameterHolder("Embedding").Add("weight", torch.empty([config.NumAdditionalTokens, config.HiddenSize], dtype, device));
        register_module("additional_embedding", _additional);
        _initialScalar = config.InitialTokenizerLen.ToScalar();
        _lastMain = (config.InitialTokenizerLen - 1L).ToScalar();
        _lastAdditional = Math.Max(0L, config.NumAdditionalTokens - 1L).ToScalar();
    }

    // ids [B, T] int64 -> [B, T, D]
    public override Tensor forward(Tensor ids)
    {
        using var scope = torch.NewDisposeScope();
        var isAdditional = ids.ge(_initialScalar);
        var main = Lookup(_weight, ids.clamp_max(_lastMain));
        if (!isAdditional.any().item<bool>()) return main.MoveToOuterDisposeScope();
        var table = _additional["weight"];
        var extra = Lookup(table, ids.sub(_initialScalar).clamp(Scalars.Zero, _lastAdditional));
        return torch.where(isAdditional.unsqueeze(-1), extra, main).MoveToOuterDisposeScope();
    }

    private static Tensor Lookup(Tensor table, Tensor ids)
    {
        var shape = ids.shape.Append(table.shape[1]).ToArray();
        return table.index_select(0, ids.flatten()).view(shape);
    }
}

/// <summary>
/// Output head of xGen-MM (LAVIS DecoupledLinear): <c>(h W + b)[..., :32012]</c> followed by the 3 logits of
/// <c>additional_fc</c>, so 32015 classes. The bias is real (trained) and must be applied.
/// </summary>
public sealed class DecoupledLinear : nn.Module<Tensor, Tensor>, ITransposedWeight
{
    private readonly long _initial;
    private readonly Parameter _weight; // [D, vocab], stored transposed like Linear
    private readonly Parameter _bias;   // [vocab]
    private readonly Modules.Linear _additional;

    public DecoupledLinear(TextConfig config, Device? device, ScalarType dtype) : base(nameof(DecoupledLinear))
    {
        _initial = config.InitialTokenizerLen;
        _weight = new Parameter(torch.empty([config.HiddenSize, config.VocabSize], dtype, device));
        _bias = new Parameter(torch.empty([config.VocabSize], dtype, device));
        _additional = new Modules.Linear(config.HiddenSize, config.NumAdditionalTokens, true, device, dtype);
        register_parameter("weight", _weight);
        register_parameter("bias", _bias);
        register_module("additional_fc", _additional);
    }

    /// <summary>Both halves of the head (the predicted columns of the main weight and additional_fc) as one packed
    /// weight, biases included, once <see cref="Pack"/> ran.</summary>
    public PackedWeight? Packed { get; private set; }

    /// <summary>Moves the head into one <see cref="PackedWeight"/> of 32015 outputs and frees its tensors (CPU with
    /// AVX2+FMA only; returns false and changes nothing elsewhere). The never-predicted columns are dropped.</summary>
    public bool Pack(WeightFormat format, int groupSize = PackedWeight.DefaultGroupSize)
    {
        if (Packed is not null) throw new InvalidOperationException("This head is already packed.");
        if (!PackedLinear.CanPack(_weight) || _additional.Packed is not null) return false;
        var extra = _additional.Weight;
        long hidden = _weight.shape[0], vocab = _weight.shape[1], extraColumns = extra.shape[1];
        using (var scope = torch.NewDisposeScope())
        {
            var main = PackedLinear.AsFloat32(_weight);
            var added = PackedLinear.AsFloat32(extra);
            var bias = PackedLinear.AsFloat32(torch.cat([_bias.narrow(0, 0, _initial), _additional.Bias!], 0));
            unsafe
            {
                WeightSource[] sources = [new(TensorMemory.Floats(main), vocab, (int)_initial), new(TensorMemory.Floats(added), extraColumns, (int)extraColumns)];
                Packed = PackedWeight.Pack((int)hidden, sources, new ReadOnlySpan<float>(TensorMemory.Floats(bias), (int)(_initial + extraColumns)), format, groupSize);
            }
        }
        PackedLinear.Release(_weight);
        PackedLinear.Release(_bias);
        PackedLinear.Release(_additional.Weight);
        PackedLinear.Release(_additional.Bias!);
        return true;
    }

    // h [..., D] -> [..., initial + additional]
    public override Tensor forward(Tensor h)
    {
        if (Packed is not null) return PackedLinear.Forward(Packed, h);
        using var scope = torch.NewDisposeScope();
        // Columns at or above initial_tokenizer_len are never predicted: skip them instead of computing and slicing.
        var main = torch.matmul(h, _weight.narrow(1, 0, _initial)).add_(_bias.narrow(0, 0, _initial), Scalars.One);
        return torch.cat([main, _additional.forward(h)], -1).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Packed?.Dispose();
            Packed = null;
        }
        base.Dispose(disposing);
    }
}
