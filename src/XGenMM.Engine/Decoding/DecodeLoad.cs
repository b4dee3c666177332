namespace XGenMM.Engine.Decoding;

/// <summary>A snapshot of a decode engine's load, for routing, autoscaling and metrics.</summary>
public sealed record DecodeLoad
{
    public required string Name { get; init; }
    /// <summary>Requests queued for admission.</summary>
    public int Waiting { get; init; }
    /// <summary>Requests holding a slot (prefilling or decoding).</summary>
    public int Running { get; init; }
    /// <summary>Prompt positions of the waiting requests.</summary>
    public long WaitingTokens { get; init; }
    /// <summary>Fraction of KV slots held by running requests (0..1).</summary>
    public double KvUsage { get; init; }
    /// <summary>Positions currently cached by running requests.</summary>
    public long KvTokens { get; init; }
    public int TotalSlots { get; init; }
    /// <summary>Slots kept for prefix reuse (free to evict).</summary>
    public int ParkedSlots { get; init; }
    /// <summary>Batch rows of the latest decode step: the running sequences plus padding rows for idle slots below
    /// the highest running one.</summary>
    public int DecodeRows { get; init; }
    /// <summary>Longest prompt + max new tokens the engine accepts.</summary>
    public int ContextLength { get; init; }
    /// <summary>Output tokens per second over the last few seconds.</summary>
    public double TokensPerSecond { get; init; }
    public double TtftP50Seconds { get; init; }
    public double TtftP99Seconds { get; init; }
    public double ItlP50Seconds { get; init; }
    public double ItlP99Seconds { get; init; }
    public long GeneratedTokensTotal { get; init; }
    /// <summary>Forward passes run since the start (decode steps, mixed steps and separate prefill chunks).</summary>
    public long PassesTotal { get; init; }
    /// <summary>Seconds spent in those passes (model work and sampling): over a window, with <see cref="PassesTotal"/>,
    /// the mean pass time; against the window's length, how busy the engine thread was with the model.</summary>
    public double PassSecondsTotal { get; init; }
    /// <summary>Decode rows computed by those passes (mean batch width = rows / passes): the running rows in the CPU
    /// step, every row up to the highest running slot (padding included) in libtorch passes.</summary>
    public long PassRowsTotal { get; init; }
    /// <summary>Prompt positions prefilled by those passes.</summary>
    public long PassPrefillTokensTotal { get; init; }
    /// <summary>Steps with model work run while a light tenant was protected from a heavy one
    /// (<see cref="DecodeEngineOptions.SharedStepSlowdown"/>): against all steps, how often the protection was on.</summary>
    public long ProtectedStepsTotal { get; init; }
    /// <summary>The row limit summed over those steps: divided by them, the mean limit the heavy tenants were held to.</summary>
    public long ProtectedRowLimitTotal { get; init; }
    /// <summary>Decode rows of heavy tenants held back a step while their time credit beside a light tenant was spent
    /// (<see cref="DecodeEngineOptions.SharedStepSlowdown"/>): what the protection cost them, in tokens delayed a step.</summary>
    public long HeldRowsTotal { get; init; }
    public long PrefixReusedTokensTotal { get; init; }
    /// <summary>Running sequences preempted (their slot taken back before they ended); 0 while the engine never
    /// preempts, as now.</summary>
    public long PreemptionsTotal { get; init; }
    public bool Draining { get; init; }
    /// <summary>Seconds of one decode step at the recent batch sizes (moving average; 0 until the first step), the
    /// pace at which running rows produce tokens and free their slots.</summary>
    public double DecodeStepSeconds { get; init; }
    /// <summary>Seconds of prefill per prompt position (moving average over prefill chunks; 0 until the first one).</summary>
    public double PrefillSecondsPerToken { get; init; }
    /// <summary>Fixed seconds of one forward pass, whatever it carries (<see cref="StepCostFit"/>; 0 until fitted): a
    /// pass takes this + rows x <see cref="StepSecondsPerRow"/> + prompt positions x <see cref="StepSecondsPerPrefillToken"/>.</summary>
    public double StepFixedSeconds { get; init; }
    /// <summary>Seconds per decode row the pass computes (padding rows too in libtorch passes) of one forward pass (0 until fitted).</summary>
    public double StepSecondsPerRow { get; init; }
    /// <summary>Seconds per prompt position of one forward pass, beyond its decode rows (0 until fitted).</summary>
    public double StepSecondsPerPrefillToken { get; init; }
    /// <summary>Fraction of the prompt positions of recent admissions taken from a parked prefix rather than
    /// prefilled (moving average; 0 until the first admission).</summary>
    public double PrefixReuseFraction { get; init; }
    /// <summary>Rows the tenants over their share may run now (<see cref="DecodeEngineOptions.SharedStepSlowdown"/>;
    /// <see cref="TotalSlots"/> while no light tenant is active beside a heavy one).</summary>
    public int RowLimit { get; init; }
    /// <summary>Prompt positions prefilled per step at most (the scheduler's prefill budget at the latest decode
    /// width: <see cref="DecodeEngineOptions.PrefillChunkTokens"/>, or with mixed steps what the decode rows leave of
    /// <see cref="DecodeEngineOptions.MaxTokensPerStep"/>): a prompt of n positions waits for n / this many steps,
    /// each with a decode pass of the running rows.</summary>
    public int PrefillChunkTokens { get; init; }
    /// <summary>Prompt positions of admitted requests not prefilled yet (queued prefill work besides
    /// <see cref="WaitingTokens"/>).</summary>
    public long PrefillingTokens { get; init; }
    /// <summary>Tokens each running request may still generate (max new tokens less what it produced), ascending:
    /// an upper bound on when each slot frees.</summary>
    public IReadOnlyList<int> RemainingTokens { get; init; } = [];
    /// <summary>Every tenant with a request here: its slot holders, its waiting requests and its weight
    /// (<see cref="DecodeEngineOptions.TenantWeights"/>), from which the router computes each tenant's share.</summary>
    public IReadOnlyList<TenantLoad> Tenants { get; init; } = [];
}

/// <summary>One tenant's requests on a decode engine: <paramref name="Running"/> hold a slot, <paramref name="Waiting"/>
/// wait for one; <paramref name="Weight"/> is its weight in the engine's fair shares; <paramref name="Held"/>: it is
/// held to the row limit that protects a lighter tenant (<see cref="DecodeEngineOptions.SharedStepSlowdown"/>).</summary>
public sealed record TenantLoad(string Tenant, int Running, int Waiting, double Weight, bool Held = false);

/// <summary>What the engine reports when a request ends (metrics, ledgers).</summary>
public sealed record DecodeCompletion(string RequestId, string Tenant, DecodeFinishReason Reason, DecodeUsage Usage, DecodeTimings Timings,
    IReadOnlyList<double> InterTokenSeconds)
{
    /// <summary>Positions of the prompt: text tokens, vision tokens and resumed tokens (what prefill covered, reused
    /// prefix included).</summary>
    public int PromptTokens { get; init; }
    /// <summary>Tokens sampled by this attempt (resumed tokens not counted).</summary>
    public int GeneratedTokens { get; init; }
    /// <summary>From arrival to admission.</summary>
    public double QueueSeconds { get; init; }
    /// <summary>From the first prefill chunk to the first token.</summary>
    public double PrefillSeconds { get; init; }
    /// <summary>From the first token to the end.</summary>
    public double DecodeSeconds { get; init; }
}
