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
        lock (_lock) _passes.Record(seconds, rows, prefillTokens);
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

    /// <summary>Tokens per second over the last 5 s, latency percentiles and the token total.</summary>
    public (double TokensPerSecond, double TtftP50, double TtftP99, double ItlP50, double ItlP99, long Generated) Read()
    {
        lock (_lock)
        {
            long now = Stopwatch.GetTimestamp();
            while (_recentTokens.Count > 0 && Stopwatch.GetElapsedTime(_recentTokens.Peek(), now) > TimeSpan.FromSeconds(5)) _recentTokens.Dequeue();
            double window = _recentTokens.Count == 0 ? 1 : Math.Max(1, Stopwatch.GetElapsedTime(_recentTokens.Peek(), now).TotalSeconds);
            var (ttft50, ttft99) = Percentiles(_ttft, _ttftCount);
            var (itl50, itl99) = Percentiles(_itl, _itlCount);
            return (_recentTokens.Count / window, ttft50, ttft99, itl50, itl99, _generatedTotal);
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
        double stepSeconds, prefillPerToken, passFixed, passPerRow, passPerPrefill, reuse;
        lock (_lock)
        {
            (stepSeconds, prefillPerToken, reuse) = (_decodeStepSeconds, _prefillSecondsPerToken, _reuseFraction);
            (passFixed, passPerRow, passPerPrefill) = _passes.Fitted ? (_passes.FixedSeconds, _passes.SecondsPerRow, _passes.SecondsPerPrefillToken) : (0, 0, 0);
        }
        var (tps, ttft50, ttft99, itl50, itl99, generated) = Read();
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
            TtftP50Seconds = ttft50,
            TtftP99Seconds = ttft99,
            ItlP50Seconds = itl50,
            ItlP99Seconds = itl99,
            GeneratedTokensTotal = generated,
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
