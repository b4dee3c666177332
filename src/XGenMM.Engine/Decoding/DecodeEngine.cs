using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using XGenMM.Model;
using XGenMM.Model.Generation;
using XGenMM.Model.Modules;
using XGenMM.Model.Tokenization;
using static TorchSharp.torch;

namespace XGenMM.Engine.Decoding;

/// <summary>
/// Continuous-batching decoder for one device. A dedicated thread owns the model and the KV slots; each iteration
/// admits waiting requests in weighted-fair order, runs one prefill chunk (bounded by
/// <see cref="DecodeEngineOptions.PrefillChunkTokens"/>) and then one decode step that produces a token for every
/// running sequence in a single batched forward pass. Callers get a stream of <see cref="DecodeEvent"/>s.
/// </summary>
public sealed partial class DecodeEngine : IDisposable
{
    private const int LatencySamples = 2048;

    private readonly XGenMMModel _model;
    private readonly XGenMMTokenizer _tokenizer;
    private readonly DecodeEngineOptions _options;
    private readonly ILogger _logger;
    private readonly KvSlotCache _cache;
    private volatile int _lastDecodeRows;
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly ConcurrentQueue<Sequence> _incoming = new();
    private readonly FairQueue<Sequence> _waiting;
    private readonly PrefixIndex _parked = new();
    private readonly SortedSet<int> _freeSlots = [];
    private readonly Sequence?[] _bySlot;
    private readonly object _admissionLock = new();
    private readonly int _scratchPosition;
    private readonly int _contextLength;
    private readonly int _embeddingDim;

    // Shared with other threads: admission counters and published statistics.
    private int _waitingCount;
    private long _waitingTokens;
    private volatile bool _draining;
    private volatile bool _stopped;
    private readonly object _statsLock = new();
    private readonly Queue<(long Timestamp, int Tokens)> _recentTokens = new();
    private readonly double[] _ttft = new double[LatencySamples];
    private readonly double[] _itl = new double[LatencySamples];
    private long _ttftCount, _itlCount, _generatedTotal, _reusedTotal;
    private volatile DecodeLoad _load;

    /// <summary>Raised on the engine thread when a request ends (not when it is rejected); keep handlers short.</summary>
    public event Action<DecodeCompletion>? Completed;

    public DecodeEngine(XGenMMModel model, XGenMMTokenizer tokenizer, DecodeEngineOptions options, ILogger<DecodeEngine>? logger = null)
    {
        options.Validate();
        _model = model;
        _tokenizer = tokenizer;
        _options = options;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        var text = model.Config.Text;
        _embeddingDim = text.HiddenSize;
        _contextLength = options.MaxSequenceLength > 0 ? Math.Min(options.MaxSequenceLength, text.MaxPositionEmbeddings) : text.MaxPositionEmbeddings;
        // One extra position per slot is scratch space that padding rows of a decode batch write to.
        long perSlot = KvSlotCache.BytesPerSlotFor(text.NumHiddenLayers, text.NumAttentionHeads, text.HeadDim, _contextLength + 1, model.DType);
        int slots = (int)Math.Min(options.MaxSlots, options.KvCacheBytes / perSlot);
        if (slots < 1)
            throw new ArgumentOutOfRangeException(nameof(options), $"KvCacheBytes {options.KvCacheBytes} is less than one slot of {perSlot} bytes ({_contextLength} positions); raise it or lower MaxSequenceLength.");
        _cache = new KvSlotCache(text.NumHiddenLayers, text.NumAttentionHeads, text.HeadDim, slots, _contextLength + 1, model.DType, model.Device);
        _scratchPosition = _contextLength;
        _bySlot = new Sequence?[slots];
        for (int i = 0; i < slots; i++) _freeSlots.Add(i);
        _waiting = new FairQueue<Sequence>(s => s.Cost, s => s.Request.Priority,
            t => options.TenantWeights.TryGetValue(t, out var w) ? w : 1.0);
        _load = Snapshot();
        LogStarted(options.Name, slots, _contextLength, _cache.Bytes / (1024.0 * 1024.0));
        _thread = new Thread(Loop) { IsBackground = true, Name = $"decode-{options.Name}" };
        _thread.Start();
    }

    public string Name => _options.Name;
    public int ContextLength => _contextLength;
    public int Slots => _cache.Slots;
    public XGenMMTokenizer Tokenizer => _tokenizer;
    public int EmbeddingDim => _embeddingDim;

    /// <summary>The latest load snapshot (updated every engine iteration).</summary>
    /// <summary>The loop's last snapshot, with the queue counters read live: a request that was just admitted, expired
    /// or cancelled shows at once (routing decisions and readiness must not lag a step behind).</summary>
    public DecodeLoad GetLoad()
    {
        var load = _load;
        lock (_admissionLock) return load with { Waiting = _waitingCount, WaitingTokens = _waitingTokens };
    }

    /// <summary>
    /// Validates and queues a request. Throws <see cref="EngineRejectedException"/> at once when it can never run
    /// (too long, invalid) or the queue is full; later rejections (expired, shutting down) end the stream with it.
    /// Cancelling <paramref name="cancellationToken"/> stops the sequence within one step and frees its slot.
    /// </summary>
    public IAsyncEnumerable<DecodeEvent> Submit(DecodeRequest request, CancellationToken cancellationToken = default)
    {
        var sequence = Prepare(request);
        lock (_admissionLock)
        {
            if (_draining || _stopped) throw new EngineRejectedException(RejectionReason.ShuttingDown, $"Decoder '{Name}' is shutting down.");
            if (_waitingCount >= _options.MaxWaitingRequests)
                throw new EngineRejectedException(RejectionReason.Overloaded, $"Decoder '{Name}' has {_waitingCount} requests waiting (limit {_options.MaxWaitingRequests}).");
            if (_waitingTokens + sequence.PromptPositions > _options.MaxWaitingTokens)
                throw new EngineRejectedException(RejectionReason.Overloaded, $"Decoder '{Name}' has {_waitingTokens} prompt tokens waiting (limit {_options.MaxWaitingTokens}).");
            _waitingCount++;
            _waitingTokens += sequence.PromptPositions;
        }
        if (cancellationToken.CanBeCanceled)
            sequence.Registration = cancellationToken.UnsafeRegister(static (s, _) =>
            {
                var (seq, wake) = ((Sequence, ManualResetEventSlim))s!;
                seq.Cancelled = true;
                wake.Set();
            }, (sequence, _wake));
        _incoming.Enqueue(sequence);
        _wake.Set();
        return Read(sequence, cancellationToken);
    }

    private static async IAsyncEnumerable<DecodeEvent> Read(Sequence sequence, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var e in sequence.Events.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                // ReadAllAsync hands out events already buffered without looking at the token: once the consumer has
                // cancelled it gets none of them, whatever the engine produced meanwhile.
                cancellationToken.ThrowIfCancellationRequested();
                yield return e;
            }
        }
        finally
        {
            // An abandoned enumeration (consumer stopped early) must free the slot just like a cancellation.
            sequence.Cancelled = true;
        }
    }

    /// <summary>Stops admitting new requests; those queued or running continue.</summary>
    public void BeginDrain()
    {
        lock (_admissionLock) _draining = true;
        _wake.Set();
    }

    /// <summary>Waits until nothing is queued or running (or <paramref name="timeout"/>), then cancels what is left.
    /// Returns true when everything finished in time.</summary>
    public async Task<bool> DrainAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        BeginDrain();
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            var load = _load;
            if (load.Waiting == 0 && load.Running == 0 && _incoming.IsEmpty) return true;
            await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }
        _cancelAll = true;
        _wake.Set();
        return false;
    }

    private volatile bool _cancelAll;

    // ---------------------------------------------------------------- request preparation (caller's thread)

    private Sequence Prepare(DecodeRequest request)
    {
        if (string.IsNullOrEmpty(request.RequestId)) throw new EngineRejectedException(RejectionReason.Invalid, "A request id is required.");
        if (request.PromptIds.Count == 0) throw new EngineRejectedException(RejectionReason.Invalid, "The prompt is empty.");
        if (request.MaxNewTokens < 1) throw new EngineRejectedException(RejectionReason.Invalid, $"max new tokens must be at least 1 (got {request.MaxNewTokens}).");
        try { request.Sampling.Validate(); }
        catch (ArgumentOutOfRangeException e) { throw new EngineRejectedException(RejectionReason.Invalid, e.Message); }
        int vocab = _model.Config.Text.VocabSize;
        foreach (int id in request.PromptIds.Concat(request.ResumeTokenIds))
            if ((uint)id >= (uint)vocab) throw new EngineRejectedException(RejectionReason.Invalid, $"Token id {id} is outside the vocabulary (0..{vocab - 1}).");
        if (request.ResumeTokenIds.Count >= request.MaxNewTokens)
            throw new EngineRejectedException(RejectionReason.Invalid, $"{request.ResumeTokenIds.Count} resumed tokens leave nothing of max new tokens {request.MaxNewTokens}.");
        int placeholders = request.PromptIds.Count(id => id == SpecialTokens.Image);
        if (placeholders != request.Images.Count)
            throw new EngineRejectedException(RejectionReason.Invalid, $"The prompt has {placeholders} <image> token(s) but {request.Images.Count} image(s) were supplied.");
        foreach (var tokensOfImage in request.Images)
        {
            try { tokensOfImage.Validate(_embeddingDim); }
            catch (ArgumentException e) { throw new EngineRejectedException(RejectionReason.Invalid, e.Message); }
        }

        var ids = new List<long>(request.PromptIds.Count + request.Images.Sum(i => i.Rows) + request.ResumeTokenIds.Count);
        int image = 0, textTokens = 0, imageTokens = 0;
        foreach (int id in request.PromptIds)
        {
            if (id != SpecialTokens.Image) { ids.Add(id); textTokens++; continue; }
            var tokens = request.Images[image++];
            for (int k = 0; k < tokens.Rows; k++) ids.Add(PrefixIndex.VisionId(tokens.ContentKey, k));
            imageTokens += tokens.Rows;
        }
        foreach (int id in request.ResumeTokenIds) ids.Add(id);
        int remaining = request.MaxNewTokens - request.ResumeTokenIds.Count;
        if (ids.Count + remaining > _contextLength)
            throw new EngineRejectedException(RejectionReason.TooLong,
                $"The prompt takes {ids.Count} positions ({imageTokens} of them vision tokens); with {remaining} new tokens that exceeds the context of {_contextLength}.");
        return new Sequence(request, textTokens, imageTokens, ids.ToArray(), Stopwatch.GetTimestamp());
    }

    // ---------------------------------------------------------------- the engine thread

    private void Loop()
    {
        while (!_stopped)
        {
            _wake.Reset();
            bool worked;
            try
            {
                AcceptIncoming();
                DropCancelledAndExpired();
                Admit();
                worked = PrefillStep();
                worked |= DecodeStep();
            }
            catch (Exception e) when (!_stopped)
            {
                LogLoopFailed(e, Name);
                FailActive(e);
                worked = true;
            }
            _load = Snapshot();
            if (!worked) _wake.Wait(NextWakeDelay());
        }
    }

    private void AcceptIncoming()
    {
        while (_incoming.TryDequeue(out var s))
        {
            _waiting.Enqueue(s, s.Request.Tenant);
        }
    }

    private void DropCancelledAndExpired()
    {
        bool cancelAll = _cancelAll;
        long now = Stopwatch.GetTimestamp();
        List<Sequence>? drop = null;
        foreach (var s in _waiting.Items)
            if (s.Cancelled || cancelAll || Stopwatch.GetElapsedTime(s.ArrivalTimestamp, now) > _options.QueueTimeToLive)
                (drop ??= []).Add(s);
        if (drop is not null)
            foreach (var s in drop)
            {
                _waiting.Remove(s);
                LeaveWaiting(s);
                if (s.Cancelled) Complete(s, null);
                else if (cancelAll) Complete(s, new EngineRejectedException(RejectionReason.ShuttingDown, $"Decoder '{Name}' shut down before the request was admitted."));
                else
                {
                    LogExpired(s.Request.RequestId, s.Request.Tenant);
                    Complete(s, new EngineRejectedException(RejectionReason.Expired,
                        $"The request waited longer than the queue time-to-live of {_options.QueueTimeToLive.TotalSeconds:0.###} s on decoder '{Name}'."));
                }
            }
        for (int slot = 0; slot < _bySlot.Length; slot++)
        {
            var s = _bySlot[slot];
            if (s is null) continue;
            if (s.Cancelled) Finish(s, DecodeFinishReason.Cancelled);
            // Cut by the engine, not by its caller: say so, so that a cluster moves the generation instead of ending it.
            else if (cancelAll) Finish(s, DecodeFinishReason.Cancelled, new EngineRejectedException(RejectionReason.ShuttingDown,
                $"Decoder '{Name}' stopped {s.Completion.Count} token(s) into the generation (drain time-out)."));
        }
    }

    private void Admit()
    {
        while (_waiting.Count > 0 && (_freeSlots.Count > 0 || _parked.Count > 0))
        {
            var s = _waiting.Dequeue()!;
            LeaveWaiting(s);
            int slot;
            int reuse = 0;
            var match = _options.PrefixReuse ? _parked.TakeBestMatch(s.ContentIds, _options.MinPrefixReuseTokens) : null;
            if (match is { } m)
            {
                reuse = Math.Min(m.Common, s.PromptPositions - 1); // at least one position is prefilled for the logits
                slot = PackLowReused(m.Slot, reuse);
            }
            else
            {
                if (_freeSlots.Count > 0)
                {
                    slot = _freeSlots.Min;
                    _freeSlots.Remove(slot);
                }
                else slot = _parked.Evict()!.Value;
                slot = PackLow(slot);
            }

            s.Slot = slot;
            _bySlot[slot] = s;
            s.Length = reuse;
            s.ReusedTokens = reuse;
            s.State = Sequence.Phase.Prefilling;
            s.AdmittedTimestamp = Stopwatch.GetTimestamp();
            s.Sampler = new TokenSampler(s.Request.Sampling, s.Request.PromptIds);
            s.Decoder = _tokenizer.CreateIncrementalDecoder(skipSpecialTokens: true);
            s.Stops = new StopStringMatcher(s.Request.StopStrings);
            foreach (int t in s.Request.ResumeTokenIds)
            {
                // Replayed tokens were streamed by the earlier attempt: prime the text state, emit nothing.
                s.Sampler.Observe(t);
                s.Stops.Push(s.Decoder.Push(t));
                s.Completion.Add(t);
            }
            s.Embeddings = BuildEmbeddings(s);
            if (reuse > 0)
            {
                Interlocked.Add(ref _reusedTotal, reuse);
                LogPrefixReused(s.Request.RequestId, reuse, s.PromptPositions);
            }
        }
    }

    /// <summary>
    /// Keeps running sequences in the lowest slots. A decode step computes rows 0..(highest running slot), so a sequence
    /// admitted behind parked slots makes every step pay for padding rows: with one user and prefix reuse on, each
    /// finished turn parked its slot and the next request took the next one, until every step ran all slots wide.
    /// Given a slot whose KV may be overwritten, moves the lowest parked prefix below it up into it (one copy of that
    /// prefix) and returns the freed lower slot instead.
    /// </summary>
    private int PackLow(int disposable)
    {
        if (_parked.LowestSlot is not int low || low > disposable) return disposable;
        _cache.Copy(low, disposable, _parked.Move(low, disposable));
        return low;
    }

    /// <summary>
    /// The same for a slot taken over for its prefix: brings its <paramref name="reuse"/> positions down to the lowest
    /// free slot, or, when a parked prefix sits lower, moves that one up to a free slot and takes its place.
    /// </summary>
    private int PackLowReused(int matched, int reuse)
    {
        if (_freeSlots.Count == 0) return matched;
        int free = _freeSlots.Min;
        int? parked = _parked.LowestSlot;
        if (parked is int p && p < matched && p < free)
        {
            _freeSlots.Remove(free);
            _cache.Copy(p, free, _parked.Move(p, free));
            _cache.Copy(matched, p, reuse);
            _freeSlots.Add(matched);
            return p;
        }
        if (free > matched) return matched;
        _freeSlots.Remove(free);
        _cache.Copy(matched, free, reuse);
        _freeSlots.Add(matched);
        return free;
    }

    /// <summary>[P, D] prompt embeddings with each image's vision tokens spliced at its placeholder.</summary>
    private Tensor BuildEmbeddings(Sequence s)
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
        return torch.cat(pieces, 0).MoveToOuterDisposeScope();
    }

    /// <summary>One chunk of prompt for the earliest admitted sequence still prefilling.</summary>
    private bool PrefillStep()
    {
        int budget = _options.PrefillChunkTokens;
        bool worked = false;
        while (budget > 0)
        {
            Sequence? s = null;
            foreach (var candidate in _bySlot)
                if (candidate is { State: Sequence.Phase.Prefilling } && (s is null || candidate.AdmittedTimestamp < s.AdmittedTimestamp))
                    s = candidate;
            if (s is null) break;
            if (s.PrefillStartTimestamp == 0) s.PrefillStartTimestamp = Stopwatch.GetTimestamp();
            int start = s.Length;
            int count = Math.Min(budget, s.PromptPositions - start);
            budget -= count;
            worked = true;
            int? first = null;
            using (var scope = torch.NewDisposeScope())
            using (torch.no_grad())
            {
                var x = s.Embeddings!.narrow(0, start, count).unsqueeze(0);                          // [1, T, D]
                var positions = Scalars.Arange(start, start + count, _model.Device).unsqueeze(0); // [1, T]
                var bias = CausalBias(positions, start + count);                                       // [1, 1, T, S]
                var hidden = _model.LanguageModel.Model.Forward(x, positions, bias, _cache.Prefill(s.Slot, start));
                s.Length = start + count;
                if (s.Length == s.PromptPositions)
                {
                    var logits = _model.Logits(hidden.narrow(1, count - 1, 1).reshape(1, -1)).to_type(ScalarType.Float32).cpu();
                    first = s.Sampler!.Next(logits.data<float>().ToArray());
                }
            }
            if (first is int token)
            {
                s.Embeddings!.Dispose();
                s.Embeddings = null;
                s.PrefillEndTimestamp = Stopwatch.GetTimestamp();
                s.State = Sequence.Phase.Running;
                Emit(s, token);
            }
        }
        return worked;
    }

    /// <summary>One token for every running sequence, in one forward pass over the slot range that holds them.</summary>
    private bool DecodeStep()
    {
        int rows = 0;
        for (int i = 0; i < _bySlot.Length; i++)
            if (_bySlot[i] is { State: Sequence.Phase.Running }) rows = i + 1;
        if (rows == 0) return false;
        _lastDecodeRows = rows;

        var inputs = new long[rows];
        var writeAt = new long[rows];
        var ropePositions = new long[rows];
        long keyLength = 1;
        for (int i = 0; i < rows; i++)
        {
            var s = _bySlot[i];
            if (s is { State: Sequence.Phase.Running })
            {
                inputs[i] = s.PendingToken;
                writeAt[i] = s.Length;
                ropePositions[i] = s.Length;
                keyLength = Math.Max(keyLength, s.Length + 1);
            }
            else
            {
                // Padding row (free, parked or prefilling slot): writes only to its scratch position.
                inputs[i] = _model.Config.Text.PadTokenId;
                writeAt[i] = _scratchPosition;
                ropePositions[i] = 0;
            }
        }

        float[] logits;
        int vocab;
        using (var scope = torch.NewDisposeScope())
        using (torch.no_grad())
        {
            var ids = torch.tensor(inputs, [rows, 1], ScalarType.Int64).to(_model.Device);
            var x = _model.Embed(ids);                                                               // [B, 1, D]
            var slotIndex = Scalars.Arange(0, rows, _model.Device);
            var write = torch.tensor(writeAt, ScalarType.Int64).to(_model.Device);
            var positions = torch.tensor(ropePositions, [rows, 1], ScalarType.Int64).to(_model.Device);
            var bias = CausalBias(write.view(rows, 1), keyLength);                                   // [B, 1, 1, S]
            var hidden = _model.LanguageModel.Model.Forward(x, positions, bias, _cache.Decode(rows, slotIndex, write, keyLength));
            var output = _model.Logits(hidden.squeeze(1)).to_type(ScalarType.Float32).cpu();        // [B, V]
            vocab = (int)output.shape[1];
            logits = output.data<float>().ToArray();
        }

        for (int i = 0; i < rows; i++)
        {
            var s = _bySlot[i];
            if (s is not { State: Sequence.Phase.Running }) continue;
            s.Length++;
            int token = s.Sampler!.Next(logits.AsSpan(i * vocab, vocab));
            Emit(s, token);
        }
        return true;
    }

    /// <summary>Additive bias [B, 1, T, S]: query at position p sees keys j &lt;= p within the sliding window.</summary>
    private Tensor CausalBias(Tensor queryPositions, long keyLength)
    {
        using var scope = torch.NewDisposeScope();
        var q = queryPositions.unsqueeze(-1);                                                          // [B, T, 1]
        var k = Scalars.Arange(0, keyLength, queryPositions.device).view(1, 1, -1); // [1, 1, S]
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

    /// <summary>Records a sampled token, streams it, and finishes the sequence when a stop rule fires.</summary>
    private void Emit(Sequence s, int token)
    {
        long now = Stopwatch.GetTimestamp();
        bool first = s.FirstTokenTimestamp == 0;
        if (first)
        {
            s.FirstTokenTimestamp = now;
            RecordTtft(Sequence.Seconds(s.ArrivalTimestamp, now));
        }
        else RecordItl(Sequence.Seconds(s.LastTokenTimestamp, now));
        s.LastTokenTimestamp = now;
        s.ItlSamples.Add(first ? 0 : Sequence.Seconds(s.ItlPrevious, now));
        s.ItlPrevious = now;
        CountToken();

        int index = s.Completion.Count;
        s.Completion.Add(token);
        s.PendingToken = token;
        DecodeFinishReason? finish = null;
        string text;
        if (s.Request.StopTokenIds.Contains(token))
        {
            text = "";
            finish = DecodeFinishReason.Stop;
        }
        else
        {
            text = s.Stops!.Push(s.Decoder!.Push(token));
            if (s.Stops.Stopped) finish = DecodeFinishReason.Stop;
        }
        if (finish is null && s.Completion.Count >= s.Request.MaxNewTokens) finish = DecodeFinishReason.Length;
        if (finish is not null) text += s.Stops!.Push(s.Decoder!.Flush()) + s.Stops.Flush();
        s.Events.Writer.TryWrite(new DecodeEvent { TokenId = token, Text = text, Index = index });
        if (finish is DecodeFinishReason reason) Finish(s, reason);
    }

    private void Finish(Sequence s, DecodeFinishReason reason, EngineRejectedException? error = null)
    {
        long now = Stopwatch.GetTimestamp();
        int slot = s.Slot;
        int generated = s.Completion.Count - s.Request.ResumeTokenIds.Count;
        var usage = new DecodeUsage(s.PromptTextTokens, s.ImageTokens, s.Completion.Count, s.ReusedTokens);
        var timings = new DecodeTimings(
            Sequence.Seconds(s.ArrivalTimestamp, s.AdmittedTimestamp),
            s.FirstTokenTimestamp == 0 ? 0 : Sequence.Seconds(s.ArrivalTimestamp, s.FirstTokenTimestamp),
            Sequence.Seconds(s.ArrivalTimestamp, now),
            s.PrefillStartTimestamp == 0 ? 0 : Sequence.Seconds(s.PrefillStartTimestamp, s.PrefillEndTimestamp == 0 ? now : s.PrefillEndTimestamp));
        if (slot >= 0)
        {
            _bySlot[slot] = null;
            // The KV holds the prompt and every generated token that was fed back (all but the last sampled one).
            int valid = s.State == Sequence.Phase.Running ? s.Length : 0;
            if (_options.PrefixReuse && reason != DecodeFinishReason.Cancelled && valid >= _options.MinPrefixReuseTokens)
            {
                var ids = new long[valid];
                int fromPrompt = Math.Min(valid, s.PromptPositions);
                Array.Copy(s.ContentIds, ids, fromPrompt);
                int resumed = s.Request.ResumeTokenIds.Count;
                for (int i = fromPrompt; i < valid; i++) ids[i] = s.Completion[resumed + i - fromPrompt];
                _parked.Park(slot, ids);
            }
            else _freeSlots.Add(slot);
        }
        s.Embeddings?.Dispose();
        s.Embeddings = null;
        s.State = Sequence.Phase.Done;
        if (reason != DecodeFinishReason.Cancelled)
            s.Events.Writer.TryWrite(new DecodeEvent { Finish = reason, Usage = usage, Timings = timings, Index = s.Completion.Count });
        Complete(s, error);
        LogFinished(s.Request.RequestId, s.Request.Tenant, reason, generated, timings.TimeToFirstTokenSeconds * 1000, timings.EndToEndSeconds * 1000);
        try
        {
            Completed?.Invoke(new DecodeCompletion(s.Request.RequestId, s.Request.Tenant, reason, usage, timings, s.ItlSamples.Skip(1).ToArray()));
        }
#pragma warning disable CA1031 // a metrics handler must never take the engine down
        catch (Exception e) { LogHandlerFailed(e); }
#pragma warning restore CA1031
    }

    private static void Complete(Sequence s, Exception? error)
    {
        s.Events.Writer.TryComplete(error);
        s.Registration.Dispose();
    }

    private void LeaveWaiting(Sequence s)
    {
        lock (_admissionLock)
        {
            _waitingCount--;
            _waitingTokens -= s.PromptPositions;
        }
    }

    private void FailActive(Exception e)
    {
        for (int slot = 0; slot < _bySlot.Length; slot++)
        {
            var s = _bySlot[slot];
            if (s is null) continue;
            _bySlot[slot] = null;
            _freeSlots.Add(slot);
            s.Embeddings?.Dispose();
            s.Embeddings = null;
            s.State = Sequence.Phase.Done;
            Complete(s, new InvalidOperationException($"Decoder '{Name}' failed while generating: {e.Message}", e));
        }
    }

    private TimeSpan NextWakeDelay()
    {
        if (_waiting.Count == 0) return TimeSpan.FromMilliseconds(250);
        long now = Stopwatch.GetTimestamp();
        var soonest = _waiting.Items.Min(s => _options.QueueTimeToLive - Stopwatch.GetElapsedTime(s.ArrivalTimestamp, now));
        return soonest < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : soonest > TimeSpan.FromMilliseconds(250) ? TimeSpan.FromMilliseconds(250) : soonest;
    }

    // ---------------------------------------------------------------- statistics

    private void RecordTtft(double seconds)
    {
        lock (_statsLock) _ttft[_ttftCount++ % LatencySamples] = seconds;
    }

    private void RecordItl(double seconds)
    {
        lock (_statsLock) _itl[_itlCount++ % LatencySamples] = seconds;
    }

    private void CountToken()
    {
        long now = Stopwatch.GetTimestamp();
        lock (_statsLock)
        {
            _generatedTotal++;
            _recentTokens.Enqueue((now, 1));
        }
    }

    private DecodeLoad Snapshot()
    {
        int running = 0;
        long kvTokens = 0;
        foreach (var s in _bySlot)
        {
            if (s is null) continue;
            running++;
            kvTokens += s.Length;
        }
        double tps, ttft50, ttft99, itl50, itl99;
        long generated;
        lock (_statsLock)
        {
            long now = Stopwatch.GetTimestamp();
            while (_recentTokens.Count > 0 && Stopwatch.GetElapsedTime(_recentTokens.Peek().Timestamp, now) > TimeSpan.FromSeconds(5)) _recentTokens.Dequeue();
            double window = _recentTokens.Count == 0 ? 1 : Math.Max(1, Stopwatch.GetElapsedTime(_recentTokens.Peek().Timestamp, now).TotalSeconds);
            tps = _recentTokens.Count / window;
            (ttft50, ttft99) = Percentiles(_ttft, _ttftCount);
            (itl50, itl99) = Percentiles(_itl, _itlCount);
            generated = _generatedTotal;
        }
        int waiting;
        long waitingTokens;
        lock (_admissionLock) (waiting, waitingTokens) = (_waitingCount, _waitingTokens);
        return new DecodeLoad
        {
            Name = Name,
            Waiting = waiting,
            Running = running,
            WaitingTokens = waitingTokens,
            KvUsage = _bySlot.Length == 0 ? 0 : (double)running / _bySlot.Length,
            KvTokens = kvTokens,
            TotalSlots = _bySlot.Length,
            ParkedSlots = _parked.Count,
            DecodeRows = _lastDecodeRows,
            ContextLength = _contextLength,
            TokensPerSecond = tps,
            TtftP50Seconds = ttft50,
            TtftP99Seconds = ttft99,
            ItlP50Seconds = itl50,
            ItlP99Seconds = itl99,
            GeneratedTokensTotal = generated,
            PrefixReusedTokensTotal = Interlocked.Read(ref _reusedTotal),
            Draining = _draining,
        };
    }

    private static (double P50, double P99) Percentiles(double[] ring, long count)
    {
        int n = (int)Math.Min(count, ring.Length);
        if (n == 0) return (0, 0);
        var sorted = ring.AsSpan(0, n).ToArray();
        Array.Sort(sorted);
        return (sorted[(int)(0.50 * (n - 1))], sorted[(int)(0.99 * (n - 1))]);
    }

    public void Dispose()
    {
        lock (_admissionLock) { _draining = true; _stopped = true; }
        _wake.Set();
        _thread.Join();
        foreach (var s in _incoming) Complete(s, new EngineRejectedException(RejectionReason.ShuttingDown, $"Decoder '{Name}' stopped."));
        foreach (var s in _waiting.Items.ToList()) Complete(s, new EngineRejectedException(RejectionReason.ShuttingDown, $"Decoder '{Name}' stopped."));
        for (int slot = 0; slot < _bySlot.Length; slot++)
        {
            if (_bySlot[slot] is not { } s) continue;
            s.Embeddings?.Dispose();
            Complete(s, new EngineRejectedException(RejectionReason.ShuttingDown, $"Decoder '{Name}' stopped during generation."));
        }
        _cache.Dispose();
        _wake.Dispose();
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Decoder {Name}: {Slots} KV slots of {Context} positions ({Megabytes:F0} MiB)")]
    private partial void LogStarted(string name, int slots, int context, double megabytes);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "Request {RequestId} of {Tenant} finished ({Reason}): {Tokens} tokens, TTFT {TtftMs:F1} ms, total {TotalMs:F1} ms")]
    private partial void LogFinished(string requestId, string tenant, DecodeFinishReason reason, int tokens, double ttftMs, double totalMs);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "Request {RequestId} reuses {Reused} of {Prompt} prompt positions from a cached prefix")]
    private partial void LogPrefixReused(string requestId, int reused, int prompt);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "Request {RequestId} of {Tenant} expired in the queue")]
    private partial void LogExpired(string requestId, string tenant);

    [LoggerMessage(EventId = 5, Level = LogLevel.Error, Message = "Decoder {Name} failed an iteration; its running requests were ended with an error")]
    private partial void LogLoopFailed(Exception exception, string name);

    [LoggerMessage(EventId = 6, Level = LogLevel.Warning, Message = "A completion handler threw")]
    private partial void LogHandlerFailed(Exception exception);
}
