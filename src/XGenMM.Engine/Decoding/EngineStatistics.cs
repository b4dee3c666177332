using System.Diagnostics;

namespace XGenMM.Engine.Decoding;

/// <summary>Latency samples and token counters of one engine, written on the engine thread and read by
/// <see cref="DecodeEngine.GetLoad"/> callers.</summary>
internal sealed class EngineStatistics
{
    private const int LatencySamples = 2048;

    private readonly object _lock = new();
    private readonly Queue<long> _recentTokens = new();
    private readonly double[] _ttft = new double[LatencySamples];
    private readonly double[] _itl = new double[LatencySamples];
    private long _ttftCount, _itlCount, _generatedTotal;
    private double _decodeStepSeconds, _prefillSecondsPerToken;
    private int _decodeSamples, _prefillSamples;
    private double _reuseFraction;
    private bool _admitted;
    private readonly StepCostFit _passes = new();
    private long _passesTotal, _passRowsTotal, _passPrefillTotal, _protectedSteps, _protectedRowLimit;
    private double _passSecondsTotal;
    /// <summary>The latest percentiles and when they were taken (see <see cref="Latencies"/>).</summary>
    private (double TtftP50, double TtftP99, double ItlP50, double ItlP99) _latencies;
    private long _latenciesAt;

    /// <summary>How long computed latency percentiles are served before they are sorted again.</summary>
    internal static readonly TimeSpan LatencyRefresh = TimeSpan.FromMilliseconds(100);

    /// <summary>Weight of the newest sample in the step-time averages: about the last ten steps count, so the figure
    /// follows a batch that grows or shrinks within a second or two without jumping on one slow step.</summary>
    internal const double EwmaWeight = 0.2;

    /// <summary>Seconds of one decode forward pass (with its sampling), averaged over recent steps.</summary>
    public void RecordDecodeStep(double seconds)
    {
        lock (_lock) _decodeStepSeconds = ++_decodeSamples <= 2 ? seconds : Ewma(_decodeStepSeconds, seconds);
    }

    /// <summary>Predicted seconds of a forward pass of <paramref name="rows"/> decode rows and
    /// <paramref name="prefillTokens"/> prompt positions (0 until fitted).</summary>
    public double PassSeconds(int rows, int prefillTokens)
    {
        lock (_lock) return _passes.Fitted ? _passes.Measured(rows) + _passes.SecondsPerPrefillToken * prefillTokens : 0;
    }

    /// <summary>The same from the fitted line alone (<see cref="StepCostFit.Predict"/>; 0 until fitted): smooth in
    /// the rows, where the per-count averages behind <see cref="PassSeconds"/> may be stale at a count not run lately.</summary>
    public double PassLine(int rows, int prefillTokens)
    {
        lock (_lock) return _passes.Fitted ? _passes.Predict(rows, prefillTokens) : 0;
    }

    /// <summary>An admitted request reused <paramref name="reused"/> of its <paramref name="positions"/> prompt positions
    /// from a parked prefix: the router scales the prompts not admitted yet by the recent fraction not reused, since
    /// only those positions are prefilled (every chat request shares at least the template's system prompt).</summary>
    public void RecordAdmission(int reused, int positions)
    {
        if (positions <= 0) return;
        double fraction = Math.Clamp((double)reused / positions, 0, 1);
        lock (_lock)
        {
            _reuseFraction = _admitted ? _reuseFraction + EwmaWeight * (fraction - _reuseFraction) : fraction;
            _admitted = true;
        }
    }

    /// <summary>One forward pass of <paramref name="rows"/> decode rows and <paramref name="prefillTokens"/> prompt
    /// positions, for the pass cost (<see cref="StepCostFit"/>).</summary>
    public void RecordPass(double seconds, int rows, int prefillTokens)
    {
        lock (_lock)
        {
            _passes.Record(seconds, rows, prefillTokens);
            _passesTotal++;
            _passSecondsTotal += seconds;
            _passRowsTotal += rows;
            _passPrefillTotal += prefillTokens;
        }
    }

    /// <summary>A step whose passes ran while a light tenant was protected, the heavy ones held to
    /// <paramref name="rowLimit"/> rows (<see cref="Scheduler.ProtectingLight"/>).</summary>
    public void RecordProtectedStep(int rowLimit)
    {
        lock (_lock)
        {
            _protectedSteps++;
            _protectedRowLimit += rowLimit;
        }
    }

    /// <summary>Seconds of one prefill chunk of <paramref name="tokens"/> positions, averaged per position.</summary>
    public void RecordPrefill(double seconds, int tokens)
    {
        if (tokens <= 0) return;
        lock (_lock) _prefillSecondsPerToken = ++_prefillSamples <= 2 ? seconds / tokens : Ewma(_prefillSecondsPerToken, seconds / tokens);
    }

    /// <summary>The first sample stands alone: averaging it with the initial 0 would report half the real cost. The
    /// recorders above also let the second sample replace the first, which pays the engine's one-time start-up work
    /// (the first prefill after a start measured several times the steady cost and stayed in the average for many
    /// steps).</summary>
    internal static double Ewma(double average, double sample) => average == 0 ? sample : average + EwmaWeight * (sample - average);

    public void RecordTtft(double seconds)
    {
        lock (_lock) _ttft[_ttftCount++ % LatencySamples] = seconds;
    }

    public void RecordItl(double seconds)
    {
        lock (_lock) _itl[_itlCount++ % LatencySamples] = seconds;
    }

    public void CountToken(long timestamp)
    {
        lock (_lock)
        {
            _generatedTotal++;
            _recentTokens.Enqueue(timestamp);
        }
    }

    /// <summary>Tokens per second over the last 5 s and the token total.</summary>
    public (double TokensPerSecond, long Generated) Read()
    {
        lock (_lock)
        {
            long now = Stopwatch.GetTimestamp();
            while (_recentTokens.Count > 0 && Stopwatch.GetElapsedTime(_recentTokens.Peek(), now) > TimeSpan.FromSeconds(5)) _recentTokens.Dequeue();
            double window = _recentTokens.Count == 0 ? 1 : Math.Max(1, Stopwatch.GetElapsedTime(_recentTokens.Peek(), now).TotalSeconds);
            return (_recentTokens.Count / window, _generatedTotal);
        }
    }

    /// <summary>TTFT and inter-token percentiles of the recent samples, sorted at most every <see cref="LatencyRefresh"/>.
    /// Read by callers of <see cref="DecodeEngine.GetLoad"/>, not in the step's snapshot, which sorted copies of both
    /// rings (4096 samples, two 16 KiB arrays) on the engine thread after every step, for figures no step uses.</summary>
    public (double TtftP50, double TtftP99, double ItlP50, double ItlP99) Latencies()
    {
        lock (_lock)
        {
            long now = Stopwatch.GetTimestamp();
            if (_latenciesAt == 0 || Stopwatch.GetElapsedTime(_latenciesAt, now) >= LatencyRefresh)
            {
                var (ttft50, ttft99) = Percentiles(_ttft, _ttftCount);
                var (itl50, itl99) = Percentiles(_itl, _itlCount);
                _latencies = (ttft50, ttft99, itl50, itl99);
                _latenciesAt = now;
            }
            return _latencies;
        }
    }

    /// <summary>The engine's load: slot use from the scheduler, rates and latencies from the samples.</summary>
    public DecodeLoad Snapshot(string name, Scheduler scheduler, int contextLength, int prefillChunkTokens)
    {
        int running = 0;
        long kvTokens = 0, prefilling = 0;
        var remaining = new List<int>();
        foreach (var s in scheduler.BySlot)
        {
            if (s is null) continue;
            running++;
            kvTokens += s.Length;
            if (s.State == Sequence.Phase.Prefilling) prefilling += s.PromptPositions - s.Length;
            remaining.Add(Math.Max(0, s.Request.MaxNewTokens - s.Completion.Count));
        }
        remaining.Sort();
        double stepSeconds, prefillPerToken, passFixed, passPerRow, passPerPrefill, reuse, passSecondsTotal;
        long passes, passRows, passPrefill, protectedSteps, protectedRowLimit;
        lock (_lock)
        {
            (stepSeconds, prefillPerToken, reuse) = (_decodeStepSeconds, _prefillSecondsPerToken, _reuseFraction);
            (passFixed, passPerRow, passPerPrefill) = _passes.Fitted ? (_passes.FixedSeconds, _passes.SecondsPerRow, _passes.SecondsPerPrefillToken) : (0, 0, 0);
            (passes, passSecondsTotal, passRows, passPrefill) = (_passesTotal, _passSecondsTotal, _passRowsTotal, _passPrefillTotal);
            (protectedSteps, protectedRowLimit) = (_protectedSteps, _protectedRowLimit);
        }
        var (tps, generated) = Read();
        var (waiting, waitingTokens) = scheduler.WaitingCounters;
        return new DecodeLoad
        {
            Name = name,
            Waiting = waiting,
            Running = running,
            WaitingTokens = waitingTokens,
            KvUsage = scheduler.Slots == 0 ? 0 : (double)running / scheduler.Slots,
            KvTokens = kvTokens,
            TotalSlots = scheduler.Slots,
            ParkedSlots = scheduler.ParkedSlots,
            DecodeRows = scheduler.LastDecodeWidth,
            ContextLength = contextLength,
            TokensPerSecond = tps,
            GeneratedTokensTotal = generated,
            PassesTotal = passes,
            PassSecondsTotal = passSecondsTotal,
            PassRowsTotal = passRows,
            PassPrefillTokensTotal = passPrefill,
            ProtectedStepsTotal = protectedSteps,
            ProtectedRowLimitTotal = protectedRowLimit,
            HeldRowsTotal = scheduler.HeldRowsTotal,
            PrefixReusedTokensTotal = scheduler.ReusedTokensTotal,
            PreemptionsTotal = Scheduler.PreemptionsTotal,
            Draining = scheduler.Draining,
            DecodeStepSeconds = stepSeconds,
            PrefillSecondsPerToken = prefillPerToken,
            StepFixedSeconds = passFixed,
            StepSecondsPerRow = passPerRow,
            StepSecondsPerPrefillToken = passPerPrefill,
            PrefixReuseFraction = reuse,
            RowLimit = Math.Min(scheduler.Slots, scheduler.RowLimitNow),
            PrefillChunkTokens = prefillChunkTokens,
            PrefillingTokens = prefilling,
            RemainingTokens = [.. remaining],
            Tenants = scheduler.TenantLoads(),
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
}
