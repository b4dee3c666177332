using System.Diagnostics;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using XGenMM.Model;
using XGenMM.Model.Tokenization;

namespace XGenMM.Engine.Decoding;

/// <summary>
/// Continuous-batching decoder for one device: the serving generation loop (BatchGenerator in XGenMM.Model is the
/// simple reference loop that parity tests compare it with). A dedicated thread runs steps: the
/// <see cref="Scheduler"/> plans each one (admission in weighted-fair order, slots, prefix reuse, one decode row per
/// running sequence and a prefill budget for new prompts), the <see cref="ModelRunner"/> runs the model for it (by
/// default in one forward pass, <see cref="StepPolicy.Mixed"/>), and the <see cref="OutputProcessor"/> turns logits into tokens,
/// text and the stream of <see cref="DecodeEvent"/>s callers read.
/// </summary>
public sealed partial class DecodeEngine : IDisposable
{
    private readonly DecodeEngineOptions _options;
    private readonly ILogger _logger;
    private readonly RequestValidator _validator;
    private readonly Scheduler _scheduler;
    private readonly ModelRunner _runner;
    private readonly EngineStatistics _statistics = new();
    private readonly OutputProcessor _output;
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly int _contextLength;
    private volatile bool _stopped;
    private volatile bool _cancelAll;
    private volatile DecodeLoad _load;
    private readonly List<(Sequence Sequence, DecodeFinishReason Reason)> _ended = [];

    /// <summary>Raised on the engine thread when a request ends (not when it is rejected); keep handlers short.</summary>
    public event Action<DecodeCompletion>? Completed;

    public DecodeEngine(XGenMMModel model, XGenMMTokenizer tokenizer, DecodeEngineOptions options, ILogger<DecodeEngine>? logger = null)
    {
        options.Validate();
        Tokenizer = tokenizer;
        _options = options;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        var text = model.Config.Text;
        EmbeddingDim = text.HiddenSize;
        _contextLength = options.MaxSequenceLength > 0 ? Math.Min(options.MaxSequenceLength, text.MaxPositionEmbeddings) : text.MaxPositionEmbeddings;
        // One extra position per slot is scratch space that padding rows of a decode batch write to.
        long perSlot = ModelRunner.BytesPerSlot(model, _contextLength + 1);
        int slots = (int)Math.Min(options.MaxSlots, options.KvCacheBytes / perSlot);
        if (slots < 1)
            throw new ArgumentOutOfRangeException(nameof(options), $"KvCacheBytes {options.KvCacheBytes} is less than one slot of {perSlot} bytes ({_contextLength} positions); raise it or lower MaxSequenceLength.");
        _validator = new RequestValidator(text.VocabSize, EmbeddingDim, _contextLength);
        _scheduler = new Scheduler(slots, options, _statistics.PassSeconds, _statistics.PassLine);
        _runner = new ModelRunner(model, slots, _contextLength, options.CpuStep);
        _output = new OutputProcessor(tokenizer, _statistics, _logger, c => Completed?.Invoke(c));
        _load = _statistics.Snapshot(options.Name, _scheduler, _contextLength, _scheduler.PrefillBudget(0));
        LogStarted(options.Name, slots, _contextLength, _runner.CacheBytes / (1024.0 * 1024.0));
        _thread = new Thread(Loop) { IsBackground = true, Name = $"decode-{options.Name}" };
        _thread.Start();
    }

    public string Name => _options.Name;
    public int ContextLength => _contextLength;
    public int Slots => _scheduler.Slots;
    public XGenMMTokenizer Tokenizer { get; }
    public int EmbeddingDim { get; }

    /// <summary>The loop's last snapshot, with the queue counters and latency percentiles read live: a request that was just admitted, expired
    /// or cancelled shows at once (routing decisions and readiness must not lag a step behind).</summary>
    public DecodeLoad GetLoad()
    {
        var (waiting, tokens) = _scheduler.WaitingCounters;
        var (ttft50, ttft99, itl50, itl99) = _statistics.Latencies();
        return _load with
        {
            Waiting = waiting,
            WaitingTokens = tokens,
            TtftP50Seconds = ttft50,
            TtftP99Seconds = ttft99,
            ItlP50Seconds = itl50,
            ItlP99Seconds = itl99,
        };
    }

    /// <summary>
    /// Validates and queues a request. Throws <see cref="EngineRejectedException"/> at once when it can never run
    /// (too long, invalid) or the queue is full; later rejections (expired, shutting down) end the stream with it.
    /// Cancelling <paramref name="cancellationToken"/> stops the sequence within one step and frees its slot.
    /// </summary>
    public IAsyncEnumerable<DecodeEvent> Submit(DecodeRequest request, CancellationToken cancellationToken = default)
    {
        var sequence = _validator.Prepare(request);
        _scheduler.Reserve(sequence);
        if (cancellationToken.CanBeCanceled)
            sequence.Registration = cancellationToken.UnsafeRegister(static (s, _) =>
            {
                var (seq, wake) = ((Sequence, ManualResetEventSlim))s!;
                seq.Cancelled = true;
                wake.Set();
            }, (sequence, _wake));
        _scheduler.Enqueue(sequence);
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
        _scheduler.BeginDrain();
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
            if (load.Waiting == 0 && load.Running == 0 && !_scheduler.HasIncoming) return true;
            await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }
        _cancelAll = true;
        _wake.Set();
        return false;
    }

    /// <summary>The engine thread: plan a step, carry it out, publish the load; sleep when there is nothing to run.</summary>
    private void Loop()
    {
        while (!_stopped)
        {
            _wake.Reset();
            bool worked;
            try
            {
                worked = Step(_scheduler.Schedule(Stopwatch.GetTimestamp(), _cancelAll));
            }
            catch (Exception e) when (!_stopped)
            {
                LogLoopFailed(e, Name);
                foreach (var s in _scheduler.ReleaseAll())
                {
                    _runner.Forget(s);
                    _output.Reject(s, new InvalidOperationException($"Decoder '{Name}' failed while generating: {e.Message}", e));
                }
                worked = true;
            }
            _load = _statistics.Snapshot(Name, _scheduler, _contextLength, _scheduler.PrefillBudget(_scheduler.LastDecodeWidth));
            // Ended streams end after the load is out: a caller that sees its end finds its tokens counted there.
            foreach (var (s, reason) in _ended) _output.Finish(s, reason);
            _ended.Clear();
            if (!worked) _wake.Wait(_scheduler.NextWakeDelay(Stopwatch.GetTimestamp()));
        }
    }

    private bool Step(StepPlan plan)
    {
        foreach (var (s, reason) in plan.Dropped)
            _output.Reject(s, reason switch
            {
                null => null,
                RejectionReason.ShuttingDown => new EngineRejectedException(RejectionReason.ShuttingDown, $"Decoder '{Name}' shut down before the request was admitted."),
                _ => new EngineRejectedException(RejectionReason.Expired,
                    $"The request waited longer than the queue time-to-live of {_options.QueueTimeToLive.TotalSeconds:0.###} s on decoder '{Name}'."),
            });
        foreach (var (s, byShutdown) in plan.Stopped)
        {
            _runner.Forget(s);
            _output.Finish(s, DecodeFinishReason.Cancelled, byShutdown
                ? new EngineRejectedException(RejectionReason.ShuttingDown, $"Decoder '{Name}' stopped {s.Completion.Count} token(s) into the generation (drain time-out).")
                : null);
        }
        foreach (var copy in plan.Copies) _runner.Copy(copy);
        foreach (var s in plan.Admitted)
        {
            _output.Start(s);
            _runner.Admit(s);
            _statistics.RecordAdmission(s.ReusedTokens, s.PromptPositions);
            if (s.ReusedTokens > 0) LogPrefixReused(s.Request.RequestId, s.ReusedTokens, s.PromptPositions);
        }
        if (_options.StepPolicy == StepPolicy.Mixed) RunMixed(plan);
        else RunSeparate(plan);
        if (plan.HasModelWork && _scheduler.ProtectingLight) _statistics.RecordProtectedStep(_scheduler.RowLimitNow);
        return plan.HasModelWork;
    }

    /// <summary>The <see cref="StepPolicy.Separate"/> step: each prefill chunk in a pass of its own, then one decode pass.</summary>
    private void RunSeparate(StepPlan plan)
    {
        // Timed for admission control: routers predict a new request's wait from these costs.
        foreach (var chunk in plan.Prefills)
        {
            long started = Stopwatch.GetTimestamp();
            if (_runner.Prefill(chunk) is { } logits && _output.Accept(chunk.Sequence, logits) is { } reason)
                End(chunk.Sequence, reason);
            double chunkSeconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            _statistics.RecordPrefill(chunkSeconds, chunk.Count);
            _statistics.RecordPass(chunkSeconds, 0, chunk.Count);
        }
        if (plan.Decodes.Count > 0)
        {
            long started = Stopwatch.GetTimestamp();
            var (logits, vocab) = _runner.Decode(plan.Decodes, plan.DecodeWidth);
            foreach (var row in plan.Decodes)
                if (_output.Accept(row.Sequence, logits.AsSpan(row.Slot * vocab, vocab)) is { } reason)
                    End(row.Sequence, reason);
            double stepSeconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            _statistics.RecordDecodeStep(stepSeconds);
            // A decode pass computes every row up to the highest running slot, padding included.
            _statistics.RecordPass(stepSeconds, plan.DecodeWidth, 0);
        }
    }

    /// <summary>
    /// The <see cref="StepPolicy.Mixed"/> step: decode rows and prefill chunks in one forward pass. Every running
    /// stream waits for the whole pass, so it is recorded as the decode step time; the prefill cost per position is
    /// the pass's time shared out by tokens (what routers use to predict a new request's wait).
    /// </summary>
    private void RunMixed(StepPlan plan)
    {
        if (!plan.HasModelWork) return;
        long started = Stopwatch.GetTimestamp();
        var (logits, vocab) = _runner.Step(plan.Decodes, plan.DecodeWidth, plan.Prefills);
        int row = 0;
        foreach (var decode in plan.Decodes)
            if (_output.Accept(decode.Sequence, logits.AsSpan(row++ * vocab, vocab)) is { } reason)
                End(decode.Sequence, reason);
        foreach (var chunk in plan.Prefills)
        {
            if (!chunk.Completes) continue;
            if (_output.Accept(chunk.Sequence, logits.AsSpan(row++ * vocab, vocab)) is { } reason)
                End(chunk.Sequence, reason);
        }
        double seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        int prefillTokens = plan.PrefillTokens;
        if (plan.Decodes.Count > 0) _statistics.RecordDecodeStep(seconds);
        _statistics.RecordPrefill(seconds * prefillTokens / (prefillTokens + plan.Decodes.Count), prefillTokens);
        // Fitted by the rows the pass computes: by the padded width, a CPU step (which skips padding) taught the fit
        // the cost of a padding row whenever running rows sat in high slots (a tenant's 2 streams in a 28-row pass),
        // and the row limit that protects a light tenant let a burst's real rows in at that price.
        _statistics.RecordPass(seconds, _runner.StepRows(plan.Decodes.Count, plan.DecodeWidth), prefillTokens);
    }

    /// <summary>Frees the sequence's slot now; its stream ends once the step's load is published (see the loop).</summary>
    private void End(Sequence s, DecodeFinishReason reason)
    {
        _scheduler.Release(s, reason);
        _runner.Forget(s);
        _ended.Add((s, reason));
    }



    public void Dispose()
    {
        _scheduler.Stop();
        _stopped = true;
        _wake.Set();
        _thread.Join();
        var (notAdmitted, admitted) = _scheduler.TakeAll();
        foreach (var s in notAdmitted) _output.Reject(s, new EngineRejectedException(RejectionReason.ShuttingDown, $"Decoder '{Name}' stopped."));
        foreach (var s in admitted)
        {
            _runner.Forget(s);
            _output.Reject(s, new EngineRejectedException(RejectionReason.ShuttingDown, $"Decoder '{Name}' stopped during generation."));
        }
        _runner.Dispose();
        _wake.Dispose();
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Decoder {Name}: {Slots} KV slots of {Context} positions ({Megabytes:F0} MiB)")]
    private partial void LogStarted(string name, int slots, int context, double megabytes);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "Request {RequestId} reuses {Reused} of {Prompt} prompt positions from a cached prefix")]
    private partial void LogPrefixReused(string requestId, int reused, int prompt);

    [LoggerMessage(EventId = 5, Level = LogLevel.Error, Message = "Decoder {Name} failed an iteration; its running requests were ended with an error")]
    private partial void LogLoopFailed(Exception exception, string name);
}
