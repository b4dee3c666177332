using TorchSharp;
using XGenMM.Model;
using XGenMM.Model.Kernels;
using XGenMM.Model.Language;
using XGenMM.Model.Modules;
using XGenMM.Model.Tokenization;
using static TorchSharp.torch;

namespace XGenMM.Engine.Decoding;

/// <summary>
/// Carries out the tensor side of a <see cref="StepPlan"/>: owns the KV slots and the prompt embeddings of the
/// sequences being prefilled, and runs the model for prefill chunks and decode rows, handing back float logits on
/// the CPU for the <see cref="OutputProcessor"/> to sample from.
/// </summary>
internal sealed class ModelRunner : IDisposable
{
    private readonly XGenMMModel _model;
    private readonly KvSlotCache _cache;
    private readonly int _scratchPosition;
    // Keyed by sequence rather than slot: a slot freed by a cancellation can be handed out again in the same step.
    private readonly Dictionary<Sequence, Tensor> _embeddings = new(ReferenceEqualityComparer.Instance);
    // Mixed steps of a model whose decoder is packed for the CPU kernels run without libtorch between the products.
    private readonly CpuDecoderStep? _cpuStep;
    // The sampled rows' logits of the last CPU step; valid until the next step (the engine samples before it).
    private float[] _logits = [];

    /// <param name="cpuStep">Whether mixed steps may run in <see cref="CpuDecoderStep"/> when the model's decoder is
    /// packed (<see cref="DecodeEngineOptions.CpuStep"/>).</param>
    public ModelRunner(XGenMMModel model, int slots, int contextLength, bool cpuStep = true)
    {
        _model = model;
        var text = model.Config.Text;
        // One extra position per slot is scratch space that padding rows of a decode batch write to.
        _cache = new KvSlotCache(text.NumHiddenLayers, text.NumAttentionHeads, text.HeadDim, slots, contextLength + 1, model.DType, model.Device);
        _scratchPosition = contextLength;
        if (cpuStep && model.Device.type == DeviceType.CPU && KvSlotCache.SupportsCpuStep(model.DType))
            _cpuStep = CpuDecoderStep.TryCreate(model.LanguageModel.Model);
    }

    /// <summary>Whether mixed steps run in <see cref="CpuDecoderStep"/>.</summary>
    public bool UsesCpuStep => _cpuStep is not null;

    /// <summary>Decode rows a <see cref="Step"/> computes for <paramref name="running"/> rows over slots [0,
    /// <paramref name="width"/>): the running ones in <see cref="CpuDecoderStep"/>, which skips padding; every row up
    /// to the width, padding included, in libtorch.</summary>
    public int StepRows(int running, int width) => running == 0 ? 0 : _cpuStep is not null ? running : width;

    /// <summary>Bytes of one slot of <paramref name="positions"/> positions for <paramref name="model"/>.</summary>
    public static long BytesPerSlot(XGenMMModel model, int positions)
    {
        var text = model.Config.Text;
        return KvSlotCache.BytesPerSlotFor(text.NumHiddenLayers, text.NumAttentionHeads, text.HeadDim, positions, model.DType);
    }

    public long CacheBytes => _cache.Bytes;

    public void Copy(SlotCopy copy) => _cache.Copy(copy.From, copy.To, copy.Length);

    /// <summary>Builds the [P, D] prompt embeddings of an admitted sequence, each image's vision tokens spliced at its
    /// placeholder; kept until its prompt is prefilled.</summary>
    public void Admit(Sequence s)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var request = s.Request;
        var ids = request.PromptIds.Concat(request.ResumeTokenIds).Select(i => (long)i).ToArray();
        var embeds = _model.Embed(torch.tensor(ids, ScalarType.Int64));
        var pieces = new List<Tensor>();
        int start = 0, image = 0;
        for (int i = 0; i < ids.Length; i++)
        {
            if (ids[i] != SpecialTokens.Image || i >= request.PromptIds.Count) continue;
            if (i > start) pieces.Add(embeds.narrow(0, start, i - start));
            pieces.Add(request.Images[image++].ToTensor(_model.Device, _model.DType));
            start = i + 1;
        }
        if (start < ids.Length) pieces.Add(embeds.narrow(0, start, ids.Length - start));
        _embeddings[s] = torch.cat(pieces, 0).DetachFromDisposeScope();
    }

    /// <summary>Drops what the runner keeps for a sequence that ended.</summary>
    public void Forget(Sequence s)
    {
        if (_embeddings.Remove(s, out var embeddings)) embeddings.Dispose();
    }

    /// <summary>Runs one prefill chunk; returns the logits of the prompt's last position when the chunk completes it.</summary>
    public float[]? Prefill(PrefillChunk chunk)
    {
        var embeddings = _embeddings[chunk.Sequence];
        int start = chunk.Start, count = chunk.Count;
        float[]? result = null;
        using (var scope = torch.NewDisposeScope())
        using (torch.no_grad())
        {
            var x = embeddings.narrow(0, start, count).unsqueeze(0);                              // [1, T, D]
            var positions = Scalars.Arange(start, start + count, _model.Device).unsqueeze(0);   // [1, T]
            var bias = CausalBias(positions, start + count);                                     // [1, 1, T, S]
            var hidden = _model.LanguageModel.Model.Forward(x, positions, bias, _cache.Prefill(chunk.Slot, start));
            if (chunk.Completes)
                result = _model.Logits(hidden.narrow(1, count - 1, 1).reshape(1, -1)).to_type(ScalarType.Float32).cpu().data<float>().ToArray();
        }
        if (chunk.Completes) Forget(chunk.Sequence);
        return result;
    }

    /// <summary>One token for every decode row in one forward pass over slots [0, <paramref name="width"/>); rows of
    /// other slots (free, parked, prefilling) are padding that writes only to its scratch position. Returns [width, V]
    /// logits, row = slot.</summary>
    public (float[] Logits, int Vocab) Decode(IReadOnlyList<DecodeRow> rows, int width)
    {
        var inputs = new long[width];
        var writeAt = new long[width];
        var ropePositions = new long[width];
        long keyLength = FillDecodeRows(rows, inputs, writeAt, ropePositions);

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var ids = torch.tensor(inputs, [width, 1], ScalarType.Int64).to(_model.Device);
        var x = _model.Embed(ids);                                                               // [B, 1, D]
        var slotIndex = Scalars.Arange(0, width, _model.Device);
        var write = torch.tensor(writeAt, ScalarType.Int64).to(_model.Device);
        var positions = torch.tensor(ropePositions, [width, 1], ScalarType.Int64).to(_model.Device);
        var bias = CausalBias(write.view(width, 1), keyLength);                                  // [B, 1, 1, S]
        var hidden = _model.LanguageModel.Model.Forward(x, positions, bias, _cache.Decode(width, slotIndex, write, keyLength));
        var output = _model.Logits(hidden.squeeze(1)).to_type(ScalarType.Float32).cpu();        // [B, V]
        return (output.data<float>().ToArray(), (int)output.shape[1]);
    }

    /// <summary>Fills the decode rows' token, cache write position and RoPE position at their slots; other slots are
    /// padding (pad token, written to the scratch position). Returns the key length the rows attend over.</summary>
    private long FillDecodeRows(IReadOnlyList<DecodeRow> rows, long[] inputs, long[] writeAt, long[] positions)
    {
        Array.Fill(inputs, _model.Config.Text.PadTokenId);
        Array.Fill(writeAt, _scratchPosition);
        long keyLength = 1;
        foreach (var row in rows)
        {
            inputs[row.Slot] = row.Sequence.PendingToken;
            writeAt[row.Slot] = row.Position;
            positions[row.Slot] = row.Position;
            keyLength = Math.Max(keyLength, row.Position + 1);
        }
        return keyLength;
    }

    /// <summary>
    /// Runs a whole step in one forward pass (<see cref="StepPolicy.Mixed"/>): the decode rows over slots
    /// [0, <paramref name="width"/>) (padding rows as in <see cref="Decode"/>), then every prefill chunk, packed as one
    /// [1, N] batch that <see cref="MixedStepAttention"/> splits per sequence for attention. Only the rows that are
    /// sampled go through the head: the decode rows, in <paramref name="rows"/> order, then the last position of each
    /// chunk that completes its prompt, in <paramref name="chunks"/> order. Returns those logits, [rows, V], valid until
    /// the next step.
    /// </summary>
    public (ArraySegment<float> Logits, int Vocab) Step(IReadOnlyList<DecodeRow> rows, int width, IReadOnlyList<PrefillChunk> chunks)
    {
        if (_cpuStep is not null) return CpuStep(_cpuStep, rows, chunks);
        int decodeWidth = rows.Count > 0 ? width : 0;
        var inputs = new long[decodeWidth];
        var writeAt = new long[decodeWidth];
        var positions = new long[decodeWidth + chunks.Sum(c => c.Count)];   // RoPE positions; padding rows at 0
        long keyLength = FillDecodeRows(rows, inputs, writeAt, positions);
        var sampled = new List<long>(rows.Select(r => (long)r.Slot));
        int offset = decodeWidth;
        foreach (var chunk in chunks)
        {
            for (int i = 0; i < chunk.Count; i++) positions[offset + i] = chunk.Start + i;
            offset += chunk.Count;
            if (chunk.Completes) sampled.Add(offset - 1);
        }

        float[] logits = [];
        int vocab = 0;
        using (var scope = torch.NewDisposeScope())
        using (torch.no_grad())
        {
            var device = _model.Device;
            var pieces = new List<Tensor>(chunks.Count + 1);
            MixedStepAttention attention;
            if (decodeWidth > 0)
            {
                pieces.Add(_model.Embed(torch.tensor(inputs, ScalarType.Int64).to(device)));              // [width, D]
                var write = torch.tensor(writeAt, ScalarType.Int64).to(device);
                var bias = CausalBias(write.view(decodeWidth, 1), keyLength).DetachFromDisposeScope();   // [width, 1, 1, S]
                attention = new MixedStepAttention(decodeWidth, _cache.Decode(decodeWidth, Scalars.Arange(0, decodeWidth, device), write, keyLength), bias);
            }
            else attention = new MixedStepAttention(0, null, null);
            using (attention)
            {
                int at = decodeWidth;
                foreach (var chunk in chunks)
                {
                    pieces.Add(_embeddings[chunk.Sequence].narrow(0, chunk.Start, chunk.Count));
                    var chunkPositions = Scalars.Arange(chunk.Start, chunk.Start + chunk.Count, device).unsqueeze(0);
                    attention.AddChunk(at, chunk.Count, _cache.Prefill(chunk.Slot, chunk.Start), CausalBias(chunkPositions, chunk.Start + chunk.Count).DetachFromDisposeScope());
                    at += chunk.Count;
                }
                var x = (pieces.Count == 1 ? pieces[0] : torch.cat(pieces, 0)).unsqueeze(0);                   // [1, N, D]
                var rope = torch.tensor(positions, [1, positions.Length], ScalarType.Int64).to(device);
                // The bias argument is unused: MixedStepAttention masks per sequence.
                var hidden = _model.LanguageModel.Model.Forward(x, rope, torch.empty(0, dtype: _model.DType, device: device), attention);
                if (sampled.Count > 0)
                {
                    var picked = hidden.squeeze(0).index_select(0, torch.tensor(sampled.ToArray(), ScalarType.Int64).to(device));
                    var output = _model.Logits(picked).to_type(ScalarType.Float32).cpu();                      // [rows, V]
                    logits = output.data<float>().ToArray();
                    vocab = (int)output.shape[1];
                }
            }
        }
        foreach (var chunk in chunks)
            if (chunk.Completes) Forget(chunk.Sequence);
        return (logits, vocab);
    }

    /// <summary><see cref="Step"/> in <see cref="CpuDecoderStep"/>: only the real decode rows (no padding rows), then
    /// each chunk's positions; the same sampled rows in the same order.</summary>
    private (ArraySegment<float> Logits, int Vocab) CpuStep(CpuDecoderStep step, IReadOnlyList<DecodeRow> rows, IReadOnlyList<PrefillChunk> chunks)
    {
        int count = rows.Count + chunks.Sum(c => c.Count);
        var tokens = new StepToken[count];
        var sampled = new List<int>(rows.Count + chunks.Count);
        var inputs = new long[rows.Count];
        for (int i = 0; i < rows.Count; i++)
        {
            tokens[i] = new StepToken(rows[i].Slot, rows[i].Position);
            inputs[i] = rows[i].Sequence.PendingToken;
            sampled.Add(i);
        }
        int at = rows.Count;
        foreach (var chunk in chunks)
        {
            for (int i = 0; i < chunk.Count; i++) tokens[at + i] = new StepToken(chunk.Slot, chunk.Start + i);
            at += chunk.Count;
            if (chunk.Completes) sampled.Add(at - 1);
        }

        ArraySegment<float> logits = [];
        int vocab = 0;
        using (var scope = torch.NewDisposeScope())
        using (torch.no_grad())
        {
            var pieces = new List<Tensor>(chunks.Count + 1);
            if (rows.Count > 0) pieces.Add(_model.Embed(torch.tensor(inputs, ScalarType.Int64)));                   // [rows, D]
            foreach (var chunk in chunks) pieces.Add(_embeddings[chunk.Sequence].narrow(0, chunk.Start, chunk.Count));
            var x = pieces.Count == 1 ? pieces[0] : torch.cat(pieces, 0);                                         // [N, D]
            var hidden = step.Forward(x, tokens, _cache.Keys, _cache.Values, sampled.ToArray());                  // [sampled, D] float32
            if (sampled.Count > 0)
            {
                var output = _model.Logits(hidden.to_type(_model.DType)).to_type(ScalarType.Float32).contiguous(); // [sampled, V]
                // One block copy (TorchSharp's accessor ToArray walks the elements one index at a time) into a buffer
                // kept across steps: a fresh [rows, V] array each step is a large-object allocation (128 KB a row).
                int length = checked((int)output.numel());
                if (_logits.Length < length) _logits = GC.AllocateUninitializedArray<float>(length);
                unsafe { new ReadOnlySpan<float>(TensorMemory.Floats(output), length).CopyTo(_logits); }
                logits = new ArraySegment<float>(_logits, 0, length);
                vocab = (int)output.shape[1];
            }
        }
        foreach (var chunk in chunks)
            if (chunk.Completes) Forget(chunk.Sequence);
        return (logits, vocab);
    }

    /// <summary>Additive bias [B, 1, T, S]: query at position p sees keys j &lt;= p within the sliding window.</summary>
    private Tensor CausalBias(Tensor queryPositions, long keyLength)
    {
        using var scope = torch.NewDisposeScope();
        var q = queryPositions.unsqueeze(-1);                                                    // [B, T, 1]
        var k = Scalars.Arange(0, keyLength, queryPositions.device).view(1, 1, -1);             // [1, 1, S]
        var allowed = k.le(q);
        if (_model.Config.Text.SlidingWindow is int w)
            allowed = allowed.logical_and(k.add(torch.tensor((long)w, device: queryPositions.device), Scalars.One).ge(q));
        double min = _model.DType switch
        {
            ScalarType.Float16 => -65504.0,
            ScalarType.BFloat16 => -3.3895313892515355e38,
            _ => float.MinValue,
        };
        var bias = Scalars.MaskedFill(torch.zeros(allowed.shape, _model.DType, queryPositions.device), allowed.logical_not(), min);
        return bias.unsqueeze(1).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        foreach (var t in _embeddings.Values) t.Dispose();
        _embeddings.Clear();
        _cache.Dispose();
    }
}
