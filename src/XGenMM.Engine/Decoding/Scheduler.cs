using System.Collections.Concurrent;
using System.Diagnostics;

namespace XGenMM.Engine.Decoding;

/// <summary>
/// Decides what each engine step does (the scheduler of vLLM v1's scheduler -> model runner -> output processor
/// split): owns the waiting queue (weighted-fair across tenants, each held to its weighted share of the slots under
/// contention), the KV slots and which sequence holds each, the parked prefixes kept for reuse, and the per-step
/// prefill budget. Works on token counts and ids only, so it is tested without a model; the plan it returns is
/// carried out by <see cref="ModelRunner"/> and <see cref="OutputProcessor"/>.
/// <see cref="Reserve"/>, <see cref="Enqueue"/>, <see cref="BeginDrain"/> and the counters are safe from any
/// thread; everything else runs on the engine thread.
/// </summary>
internal sealed class Scheduler
{
    private readonly DecodeEngineOptions _options;
    private readonly ConcurrentQueue<Sequence> _incoming = new();
    private readonly FairQueue<Sequence> _waiting;
    private readonly PrefixIndex _parked = new();
    private readonly SortedSet<int> _freeSlots = [];
    private readonly Sequence?[] _bySlot;
    private readonly Dictionary<string, int> _runningByTenant = new(StringComparer.Ordinal);
    private readonly object _admissionLock = new();
    private int _waitingCount;
    private long _waitingTokens;
    private volatile bool _draining;
    private volatile bool _stopped;
    private long _admissions;
    private long _reusedTotal;

    private readonly Func<int, int, double>? _passSeconds, _passLine;
    /// <summary>This step's bound on the pass time and the light tenants it protects (0 and empty while no row limit
    /// applies): the heavy tenants' prompt positions are held to what the bound leaves.</summary>
    private double _stepBound;
    private HashSet<string> _light = [];
    /// <summary>The heavy tenants' time credit in seconds (see <see cref="ChargeHeavy"/>) and whether this step holds
    /// their rows and prompts.</summary>
    private double _heavyCredit;
    private bool _holdHeavy;
    /// <summary>Tenants seen with work lately: when each last had any and how many rows it wanted then (see
    /// <see cref="RowLimit"/>).</summary>
    private readonly Dictionary<string, (long At, int Demand, long PeakAt)> _recent = new(StringComparer.Ordinal);
    /// <summary>When each tenant last sent a request that the router marked as pressing (refused for its share lately,
    /// <see cref="DecodeRequest.TenantPressing"/>): such a tenant is not light for the linger time after.</summary>
    private readonly Dictionary<string, long> _pressingAt = new(StringComparer.Ordinal);

    /// <param name="passSeconds">Predicted seconds of a forward pass of that many decode rows and prompt positions (the
    /// engine's fitted costs), or null (or 0) when not known: the shared row limit needs it.</param>
    /// <param name="passLine">The same from the fitted line (fixed + per row + per position), or null: the heavy
    /// tenants' time credit is charged by it (<see cref="ChargeHeavy"/>); <paramref name="passSeconds"/> when not
    /// given.</param>
    public Scheduler(int slots, DecodeEngineOptions options, Func<int, int, double>? passSeconds = null, Func<int, int, double>? passLine = null)
    {
        _options = options;
        _passSeconds = passSeconds;
        _passLine = passLine ?? passSeconds;
        _bySlot = new Sequence?[slots];
        for (int i = 0; i < slots; i++) _freeSlots.Add(i);
        _waiting = new FairQueue<Sequence>(s => s.Cost, s => s.Request.Priority,
            t => options.TenantWeights.TryGetValue(t, out var w) ? w : 1.0);
    }

    public int Slots => _bySlot.Length;
    public bool Draining => _draining;
    public int ParkedSlots => _parked.Count;
    public long ReusedTokensTotal => Interlocked.Read(ref _reusedTotal);
    /// <summary>Sequences whose slot was taken back before they ended: always 0, this scheduler never preempts (a
    /// sequence keeps its slot to the end; admission waits instead).</summary>
    public static long PreemptionsTotal => 0;
    /// <summary>Decode rows of heavy tenants held back a step by the time credit (see <see cref="ChargeHeavy"/>).</summary>
    public long HeldRowsTotal { get; private set; }
    /// <summary>Width of the latest decode step (see <see cref="DecodeLoad.DecodeRows"/>).</summary>
    public int LastDecodeWidth { get; private set; }
    /// <summary>Slot holders in slot order (null = free or parked).</summary>
    public IReadOnlyList<Sequence?> BySlot => _bySlot;
    /// <summary>Submitted requests not yet taken off the incoming queue.</summary>
    public bool HasIncoming => !_incoming.IsEmpty;

    /// <summary>Requests and prompt positions waiting for a slot, read live.</summary>
    public (int Requests, long Tokens) WaitingCounters
    {
        get { lock (_admissionLock) return (_waitingCount, _waitingTokens); }
    }

    /// <summary>Counts a new request against the queue limits, or refuses it (caller's thread).</summary>
    public void Reserve(Sequence s)
    {
        lock (_admissionLock)
        {
            string name = _options.Name;
            if (_draining || _stopped) throw new EngineRejectedException(RejectionReason.ShuttingDown, $"Decoder '{name}' is shutting down.");
            if (_waitingCount >= _options.MaxWaitingRequests)
                throw new EngineRejectedException(RejectionReason.Overloaded, $"Decoder '{name}' has {_waitingCount} requests waiting (limit {_options.MaxWaitingRequests}).");
            if (_waitingTokens + s.PromptPositions > _options.MaxWaitingTokens)
                throw new EngineRejectedException(RejectionReason.Overloaded, $"Decoder '{name}' has {_waitingTokens} prompt tokens waiting (limit {_options.MaxWaitingTokens}).");
            _waitingCount++;
            _waitingTokens += s.PromptPositions;
        }
    }

    /// <summary>Hands a reserved request to the engine thread (any thread).</summary>
    public void Enqueue(Sequence s) => _incoming.Enqueue(s);

    public void BeginDrain()
    {
        lock (_admissionLock) _draining = true;
    }

    public void Stop()
    {
        lock (_admissionLock) { _draining = true; _stopped = true; }
    }

    /// <summary>
    /// Plans one step at <paramref name="now"/> (a <see cref="Stopwatch"/> timestamp): drops cancelled and expired
    /// waiting requests (all of them when <paramref name="cancelAll"/>), stops cancelled slot holders, decodes one
    /// token for every running sequence, admits waiting requests while slots are free or parked, and gives the
    /// step's prefill budget (<see cref="PrefillBudget"/>) to the earliest admitted prefills.
    /// </summary>
    public StepPlan Schedule(long now, bool cancelAll)
    {
        while (_incoming.TryDequeue(out var incoming))
        {
            _waiting.Enqueue(incoming, incoming.Request.Tenant);
            if (incoming.Request.TenantPressing) _pressingAt[incoming.Request.Tenant] = now;
        }
        var dropped = DropWaiting(now, cancelAll);
        var stopped = new List<StoppedSequence>();
        foreach (var s in _bySlot)
        {
            if (s is null) continue;
            if (s.Cancelled) stopped.Add(new StoppedSequence(s, false));
            // Cut by the engine, not by its caller: the engine says so, so that a cluster moves the generation.
            else if (cancelAll) stopped.Add(new StoppedSequence(s, true));
        }
        foreach (var s in stopped) Release(s.Sequence, DecodeFinishReason.Cancelled);

        var copies = new List<SlotCopy>();
        var (limit, light) = RowLimit(now);
        if (!ProtectingLight) _heavyCredit = 0;
        // A light tenant with work in this step (a slot, or a request that it is admitted to now): only then do the
        // heavy tenants' rows cost it anything. While their credit is spent they are not admitted either: an
        // admission's prefix copy and prompt embedding run on the engine thread too.
        bool lightWorks = ProtectingLight && (_bySlot.Any(s => s is not null && light.Contains(s.Request.Tenant))
            || _waiting.WaitingTenants.Any(light.Contains));
        _holdHeavy = lightWorks && _heavyCredit < 0;
        RowLimitNow = limit;
        var admitted = Admit(now, _holdHeavy ? 0 : limit, light, copies);
        // A light request still waiting found no slot: every one is taken, by heavy tenants among others, and only
        // their ending frees one. Held, they would wait for the light tenant and it for them (on 8 slots filled by a
        // burst of long answers, the light tenant's requests waited 60 s, until the burst's were cut off), so they run.
        if (_holdHeavy && _waiting.WaitingTenants.Any(light.Contains)) _holdHeavy = false;
        // Every running sequence decodes (admission only moves parked prefixes and adds prefilling sequences, so these
        // are the ones running before it): what runs now is never held back by new prompts, only by the credit.
        var decodes = new List<DecodeRow>();
        int width = 0, heldRows = 0;
        foreach (var s in _bySlot)
        {
            if (s is not { State: Sequence.Phase.Running }) continue;
            if (_holdHeavy && !light.Contains(s.Request.Tenant))
            {
                heldRows++;
                continue;
            }
            decodes.Add(new DecodeRow(s, s.Slot, s.Length));
            s.Length++;
            width = s.Slot + 1;
        }
        if (width > 0) LastDecodeWidth = width;
        HeldRowsTotal += heldRows;
        var prefills = PlanPrefills(now, PrefillBudget(decodes.Count), decodes.Count > 0 ? width : 0);
        if (lightWorks) ChargeHeavy(decodes, prefills, light);
        return new StepPlan(dropped, stopped, copies, admitted, prefills, decodes, width);
    }

    /// <summary>
    /// The time-credit half of the isolation (<see cref="DecodeEngineOptions.SharedStepSlowdown"/>), for a step in
    /// which a light tenant has work. A light tenant that keeps the engine busy alone (2 closed-loop streams did,
    /// 91-97% of the time on the 2-core CPU) loses throughput as its passes grow longer than its own would be, so the
    /// heavy tenants may lengthen its passes, on average, by the slowdown: each step earns them the slowdown times the
    /// light tenants' part of the pass and costs them what their rows and prompt positions add to it, by the fitted
    /// pass line. While the credit is negative their running rows are held for the step (they keep their slots and KV)
    /// and their prompts wait. A row limit alone held the heavy tenant to whole rows in every pass, at least as many
    /// as the light tenant's: on this CPU each row lengthened the pass by a quarter and the light tenant lost 26-64%
    /// of its throughput; the credit lets the heavy tenant in every few passes instead. It is charged by the fitted
    /// costs, not by measured pass times: beside a burst the machine's other work made a light tenant's own passes
    /// vary from 1 to 4 ms, and a credit from measured times let the burst in whenever a slow stretch had passed
    /// (loadtest/results/2026-12-06-isolation).
    /// </summary>
    private void ChargeHeavy(List<DecodeRow> decodes, List<PrefillChunk> prefills, HashSet<string> light)
    {
        int lightRows = 0, lightPositions = 0, heavyRows = 0, heavyPositions = 0;
        foreach (var row in decodes)
            if (light.Contains(row.Sequence.Request.Tenant)) lightRows++;
            else heavyRows++;
        foreach (var chunk in prefills)
            if (light.Contains(chunk.Sequence.Request.Tenant)) lightPositions += chunk.Count;
            else heavyPositions += chunk.Count;
        double alone = _passLine?.Invoke(lightRows, lightPositions) ?? 0;
        if (!(alone > 0)) return;
        double added = _passLine!(lightRows + heavyRows, lightPositions + heavyPositions) - alone;
        double cap = CreditPasses * alone;
        _heavyCredit = Math.Clamp(_heavyCredit + _options.SharedStepSlowdown * alone - added, -cap, cap);
    }

    /// <summary>How far the heavy tenants' credit may run ahead or behind, in light passes: ahead, how much they may
    /// add at once after a stretch of light-only passes (a burst's worth of prompt in one pass would lengthen it for
    /// the light tenant's next token); behind, how long one pass of theirs may hold them.</summary>
    internal const double CreditPasses = 2;

    private List<DroppedRequest> DropWaiting(long now, bool cancelAll)
    {
        var dropped = new List<DroppedRequest>();
        foreach (var s in _waiting.Items)
        {
            if (s.Cancelled) dropped.Add(new DroppedRequest(s, null));
            else if (cancelAll) dropped.Add(new DroppedRequest(s, RejectionReason.ShuttingDown));
            else if (Stopwatch.GetElapsedTime(s.ArrivalTimestamp, now) > _options.QueueTimeToLive) dropped.Add(new DroppedRequest(s, RejectionReason.Expired));
        }
        foreach (var d in dropped)
        {
            _waiting.Remove(d.Sequence);
            LeaveWaiting(d.Sequence);
        }
        return dropped;
    }

    private List<Sequence> Admit(long now, int limit, HashSet<string> light, List<SlotCopy> copies)
    {
        var admitted = new List<Sequence>();
        int running = RunningRows();
        while (_waiting.Count > 0 && (_freeSlots.Count > 0 || _parked.Count > 0))
        {
            double activeWeight = ActiveWeight();
            bool Below(string t) => RunningOf(t) < _bySlot.Length * WeightOf(t) / activeWeight;
            // At the shared row limit only the light tenants start rows; the others wait. The rows a light tenant
            // wanted lately are kept for it: its next request then finds one at once.
            int reserved = 0;
            foreach (var t in light) reserved += Math.Max(0, _recent[t].Demand - RunningOf(t));
            bool capped = running + reserved >= limit;
            var s = capped ? _waiting.Dequeue(light.Contains, fallback: false) : _waiting.Dequeue(Below);
            if (s is null) break;
            running++;
            LeaveWaiting(s);
            int slot;
            int reuse = 0;
            var match = _options.PrefixReuse ? _parked.TakeBestMatch(s.ContentIds, _options.MinPrefixReuseTokens) : null;
            if (match is { } m)
            {
                reuse = Math.Min(m.Common, s.PromptPositions - 1); // at least one position is prefilled for the logits
                slot = PackLowReused(m.Slot, reuse, copies);
            }
            else
            {
                if (_freeSlots.Count > 0)
                {
                    slot = _freeSlots.Min;
                    _freeSlots.Remove(slot);
                }
                else slot = _parked.Evict()!.Value;
                slot = PackLow(slot, copies);
            }
            s.Slot = slot;
            _bySlot[slot] = s;
            _runningByTenant[s.Request.Tenant] = RunningOf(s.Request.Tenant) + 1;
            s.Length = reuse;
            s.ReusedTokens = reuse;
            s.State = Sequence.Phase.Prefilling;
            s.AdmittedTimestamp = now;
            s.AdmissionOrder = _admissions++;
            if (reuse > 0) Interlocked.Add(ref _reusedTotal, reuse);
            admitted.Add(s);
        }
        return admitted;
    }

    private int RunningOf(string tenant) => _runningByTenant.GetValueOrDefault(tenant);

    private int RunningRows()
    {
        int rows = 0;
        foreach (var n in _runningByTenant.Values) rows += n;
        return rows;
    }

    /// <summary>The row limit of the latest step (<see cref="RowLimit"/>; the slot count while none applies).</summary>
    public int RowLimitNow { get; private set; } = int.MaxValue;

    /// <summary>Whether the latest step protected a light tenant from a heavy one (both active, the pass costs known):
    /// the heavy tenants were held to <see cref="RowLimitNow"/> (at most the slot count, which it may be where rows are
    /// cheap).</summary>
    public bool ProtectingLight { get; private set; }

    /// <summary>
    /// Engine-level isolation of a light tenant from a heavy one (<see cref="DecodeEngineOptions.SharedStepSlowdown"/>).
    /// Every running row makes each decode step longer, for every tenant: on the 2-core CPU a tenant with 2 streams
    /// lost 40% of its throughput to another's burst although it was admitted first. So while a tenant that wants less
    /// than its weighted share of the slots (light) is active beside one that wants more (heavy), heavy tenants start
    /// rows only while the rows running stay under the count at which a pass would take (1 + slowdown) times the pass
    /// of the light tenants' rows alone; light tenants are never held back by it. A tenant counts as active for
    /// <see cref="DecodeEngineOptions.ShareLinger"/> after its last row, with the most rows it wanted then: a closed
    /// loop's next request comes a moment after the last one ended, and the heavy tenant must not fill the slots in
    /// that gap (those rows are kept free for it within the limit). A tenant is light only while it also wants at most
    /// <see cref="LightRatio"/> of the heaviest tenant's rows (by weight): two tenants near their shares (a 1:1 sweep)
    /// swapped light and heavy from one request to the next, and the one found heavy was held to a few rows while its
    /// admitted requests queued for seconds. Nor is a tenant light while the router marks its requests as pressing
    /// (<see cref="DecodeRequest.TenantPressing"/>, within the linger time): a tenant refused at the door wants more
    /// than the few rows that got through. In a 1:1 flood at 10x the first wave of a point let 15 of one tenant's
    /// requests through and 4 of the other's, which then looked light, and the first tenant's were held for up to
    /// 0.7 s. Returns the limit (the slot count when none applies) and the light tenants.
    /// </summary>
    internal const double LightRatio = 0.25;

    internal (int Limit, HashSet<string> Light) RowLimit(long now)
    {
        var light = new HashSet<string>(StringComparer.Ordinal);
        int slots = _bySlot.Length;
        var demand = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (tenant, running) in _runningByTenant) demand[tenant] = running;
        foreach (var s in _waiting.Items) demand[s.Request.Tenant] = demand.GetValueOrDefault(s.Request.Tenant) + 1;
        long linger = (long)(_options.ShareLinger.TotalSeconds * Stopwatch.Frequency);
        foreach (var (tenant, rows) in demand)
            // The most rows it wanted within the linger time, not since it became active: a tenant that wanted 32 rows
            // in one phase and 8 in the next was still taken as heavy four times over, and held back, in the next.
            if (!_recent.TryGetValue(tenant, out var seen) || rows >= seen.Demand || now - seen.PeakAt > linger) _recent[tenant] = (now, rows, now);
            else _recent[tenant] = (now, seen.Demand, seen.PeakAt);
        foreach (var tenant in _recent.Where(r => now - r.Value.At > linger).Select(r => r.Key).ToList()) _recent.Remove(tenant);
        foreach (var tenant in _pressingAt.Where(p => now - p.Value > linger).Select(p => p.Key).ToList()) _pressingAt.Remove(tenant);
        _stepBound = 0;
        _light = light;
        ProtectingLight = false;
        if (_options.SharedStepSlowdown <= 0 || _passSeconds is null || _recent.Count < 2) return (slots, light);
        double weights = _recent.Keys.Sum(WeightOf);
        double heaviest = _recent.Max(r => r.Value.Demand / WeightOf(r.Key));
        int lightRows = 0;
        double lightest = 0;
        var heavy = new List<string>();
        foreach (var (tenant, seen) in _recent)
        {
            double perWeight = seen.Demand / WeightOf(tenant);
            if (seen.Demand < slots * WeightOf(tenant) / weights && perWeight <= LightRatio * heaviest && !_pressingAt.ContainsKey(tenant))
            {
                light.Add(tenant);
                lightRows += seen.Demand;
                lightest = Math.Max(lightest, perWeight);
            }
            else heavy.Add(tenant);
        }
        if (light.Count == 0 || heavy.Count == 0) return (slots, light);
        ProtectingLight = true;
        // Each heavy tenant keeps, by weight, as many rows as the largest light tenant wants (at least one): the limit
        // bounds what a burst adds to a light tenant's steps, never below a fair share of the rows both use.
        int floor = lightRows + heavy.Sum(t => Math.Max(1, (int)Math.Ceiling(lightest * WeightOf(t))));
        double bound = (1 + _options.SharedStepSlowdown) * _passSeconds(Math.Max(1, lightRows), 0);
        if (!(bound > 0)) return (Math.Min(slots, floor), light);
        _stepBound = bound;
        int limit = Math.Max(1, lightRows);
        while (limit < slots && _passSeconds(limit + 1, 0) <= bound) limit++;
        return (Math.Clamp(limit, Math.Min(slots, floor), slots), light);
    }

    private double WeightOf(string tenant) => _options.TenantWeights.TryGetValue(tenant, out var w) ? w : 1.0;

    /// <summary>
    /// Sum of the weights of the tenants that run or wait: a tenant's share of the slots is its weight over this.
    /// Fair queueing alone orders admissions by cost, so a tenant with cheap requests could still hold nearly every
    /// slot while another's expensive request waits for many of them to end. Admission therefore passes over a tenant
    /// at or above its share while one below it waits; when none is below, fair order decides alone, so no slot
    /// stays idle.
    /// </summary>
    private double ActiveWeight()
    {
        double total = 0;
        foreach (var name in _runningByTenant.Keys) total += WeightOf(name);
        foreach (var name in _waiting.WaitingTenants)
            if (RunningOf(name) == 0) total += WeightOf(name);
        return total;
    }

    private void LeaveSlot(Sequence s)
    {
        _bySlot[s.Slot] = null;
        int left = RunningOf(s.Request.Tenant) - 1;
        if (left > 0) _runningByTenant[s.Request.Tenant] = left;
        else _runningByTenant.Remove(s.Request.Tenant);
    }

    /// <summary>
    /// Keeps running sequences in the lowest slots. A decode step computes rows 0..(highest running slot), so a sequence
    /// admitted behind parked slots makes every step pay for padding rows: with one user and prefix reuse on, each
    /// finished turn parked its slot and the next request took the next one, until every step ran all slots wide.
    /// Given a slot whose KV may be overwritten, moves the lowest parked prefix below it up into it (one copy of that
    /// prefix) and returns the freed lower slot instead.
    /// </summary>
    private int PackLow(int disposable, List<SlotCopy> copies)
    {
        if (_parked.LowestSlot is not int low || low > disposable) return disposable;
        copies.Add(new SlotCopy(low, disposable, _parked.Move(low, disposable)));
        return low;
    }

    /// <summary>
    /// The same for a slot taken over for its prefix: brings its <paramref name="reuse"/> positions down to the lowest
    /// free slot, or, when a parked prefix sits lower, moves that one up to a free slot and takes its place. With no
    /// slot free (every slot running or parked, as after a burst) the least recently parked prefix is evicted to make
    /// one, but only when a parked prefix sits below the match: otherwise the match is as low as it can be. Without
    /// this a 2-stream tenant after another's burst ran in slots near 28, so every one of its decode passes
    /// computed 28 rows for its 2 (loadtest/results/2026-12-06-isolation).
    /// </summary>
    private int PackLowReused(int matched, int reuse, List<SlotCopy> copies)
    {
        if (_freeSlots.Count == 0)
        {
            if (_parked.LowestSlot is not int low || low > matched) return matched;
            _freeSlots.Add(_parked.Evict()!.Value);
        }
        int free = _freeSlots.Min;
        int? parked = _parked.LowestSlot;
        if (parked is int p && p < matched && p < free)
        {
            _freeSlots.Remove(free);
            copies.Add(new SlotCopy(p, free, _parked.Move(p, free)));
            copies.Add(new SlotCopy(matched, p, reuse));
            _freeSlots.Add(matched);
            return p;
        }
        if (free > matched) return matched;
        _freeSlots.Remove(free);
        copies.Add(new SlotCopy(matched, free, reuse));
        _freeSlots.Add(matched);
        return free;
    }

    /// <summary>
    /// Prompt positions this step may prefill. Separate passes: <see cref="DecodeEngineOptions.PrefillChunkTokens"/>.
    /// Mixed steps: what the <paramref name="decodeRows"/> leave of <see cref="DecodeEngineOptions.MaxTokensPerStep"/>,
    /// no more than the fitted pass costs let in within <see cref="DecodeEngineOptions.MixedStepSlowdown"/> of the
    /// decode-only pass at these rows, but at least a quarter of MaxTokensPerStep (so that many running streams cannot
    /// starve admission) and at most PrefillChunkTokens. A step without decode rows keeps no stream waiting: it
    /// prefills up to PrefillChunkTokens, so a prompt that arrives at an idle decoder is not cut into small steps.
    /// </summary>
    internal int PrefillBudget(int decodeRows)
    {
        if (_options.StepPolicy == StepPolicy.Separate || decodeRows == 0) return _options.PrefillChunkTokens;
        int perStep = _options.MaxTokensPerStep;
        int floor = Math.Min(_options.PrefillChunkTokens, perStep / 4);
        int budget = Math.Min(_options.PrefillChunkTokens, Math.Max(perStep - decodeRows, floor));
        return Math.Max(floor, Math.Min(budget, TimedPrefillPositions(decodeRows)));
    }

    /// <summary>Prompt positions that keep a pass with <paramref name="decodeRows"/> decode rows within
    /// <see cref="DecodeEngineOptions.MixedStepSlowdown"/> of the same pass without them, from the fitted costs (no
    /// bound while they are not fitted). A token budget alone cannot do it: on the 2-core CPU a prompt position
    /// costs about as much as 1/40 of a 16-row decode pass, and a step of 16 running rows and 48 positions took
    /// 2.3x the decode-only pass (streams arriving 15 ms apart: ITL p99/p50 2.25-3.8).</summary>
    private int TimedPrefillPositions(int decodeRows)
    {
        if (_options.MixedStepSlowdown <= 0 || _passSeconds is null) return int.MaxValue;
        double decode = _passSeconds(decodeRows, 0);
        return decode > 0 ? PositionsWithin(_options.MixedStepSlowdown * decode) : int.MaxValue;
    }

    /// <summary>Prompt positions that add at most <paramref name="seconds"/> to a pass, by the fitted cost of one
    /// (int.MaxValue while it is not fitted; 0 for no time).</summary>
    private int PositionsWithin(double seconds)
    {
        if (_passSeconds is null) return int.MaxValue;
        double perPosition = _passSeconds(0, 1) - _passSeconds(0, 0);
        return perPosition > 0 ? (int)Math.Clamp(seconds / perPosition + 1e-6, 0, int.MaxValue) : int.MaxValue;
    }

    /// <summary>Prompt chunks for the sequences still prefilling, within <paramref name="budget"/> positions (see
    /// <see cref="PrefillAllotments"/> for how tenants split it). A chunk that ends a prompt makes its sequence a
    /// decode row from the next step on.</summary>
    private List<PrefillChunk> PlanPrefills(long now, int budget, int decodeRows)
    {
        var chunks = new List<PrefillChunk>();
        var allotments = PrefillAllotments(budget);
        // Under a shared row limit the heavy tenants' prompt positions fill only what the pass-time bound leaves
        // (at least one a step while their time credit lasts, so that they are slowed, never stopped): a burst's
        // prefills lengthened the light tenant's steps as much as its rows did. None while the credit is spent.
        int heavyLeft = int.MaxValue;
        bool bounded = _holdHeavy || (_stepBound > 0 && _passSeconds is not null);
        if (bounded)
        {
            heavyLeft = _holdHeavy ? 0 : Math.Max(1, PositionsWithin(_stepBound - _passSeconds!(decodeRows, 0)));
            foreach (var tenant in allotments.Keys.ToList())
                if (!_light.Contains(tenant)) allotments[tenant] = Math.Min(allotments[tenant], heavyLeft);
        }
        // First each tenant within its allotment, then (work-conserving) whatever budget is left in admission order.
        foreach (bool withinAllotment in (bool[])[true, false])
            while (budget > 0)
            {
                var s = EarliestPrefilling(withinAllotment ? allotments : null, heavyLeft > 0);
                if (s is null) break;
                if (s.PrefillStartTimestamp == 0) s.PrefillStartTimestamp = now;
                int start = s.Length;
                int count = Math.Min(budget, s.PromptPositions - start);
                if (withinAllotment) count = Math.Min(count, allotments[s.Request.Tenant]);
                bool heavy = bounded && !_light.Contains(s.Request.Tenant);
                if (heavy)
                {
                    count = Math.Min(count, heavyLeft);
                    heavyLeft -= count;
                }
                budget -= count;
                if (withinAllotment) allotments[s.Request.Tenant] -= count;
                // A sequence served in both passes gets one chunk: its two parts are contiguous.
                int same = chunks.FindIndex(c => ReferenceEquals(c.Sequence, s));
                if (same >= 0) chunks[same] = chunks[same] with { Count = chunks[same].Count + count };
                else chunks.Add(new PrefillChunk(s, s.Slot, start, count));
                s.Length = start + count;
                if (s.Length == s.PromptPositions) s.State = Sequence.Phase.Running;
            }
        return chunks;
    }

    /// <summary>
    /// Tenant-share policy for the prefill budget: each tenant with a prompt prefilling gets at least its weighted
    /// share of the step's <paramref name="budget"/> (at least one position). Without it one tenant's long prompts,
    /// admitted first, would take every step's budget until they were done, and another tenant's short prompt would
    /// wait that long for its first token although it holds a slot.
    /// </summary>
    private Dictionary<string, int> PrefillAllotments(int budget)
    {
        var allotments = new Dictionary<string, int>(StringComparer.Ordinal);
        double total = 0;
        foreach (var s in _bySlot)
            if (s is { State: Sequence.Phase.Prefilling } && allotments.TryAdd(s.Request.Tenant, 0))
                total += WeightOf(s.Request.Tenant);
        foreach (var tenant in allotments.Keys.ToList())
            allotments[tenant] = Math.Max(1, (int)(budget * WeightOf(tenant) / total));
        return allotments;
    }

    /// <summary>The earliest admitted sequence still prefilling, among tenants with allotment left when
    /// <paramref name="allotments"/> is given.</summary>
    private Sequence? EarliestPrefilling(Dictionary<string, int>? allotments, bool heavyRoom)
    {
        Sequence? s = null;
        foreach (var candidate in _bySlot)
            if (candidate is { State: Sequence.Phase.Prefilling } && (allotments is null || allotments[candidate.Request.Tenant] > 0)
                && (heavyRoom || _light.Contains(candidate.Request.Tenant))
                && (s is null || candidate.AdmissionOrder < s.AdmissionOrder))
                s = candidate;
        return s;
    }

    /// <summary>Rows (slot holders and waiting requests) and weight of every tenant present, for the router's
    /// tenant-share admission (engine thread; requests submitted since the last step are not counted yet).</summary>
    public List<TenantLoad> TenantLoads()
    {
        var waiting = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var s in _waiting.Items) waiting[s.Request.Tenant] = waiting.GetValueOrDefault(s.Request.Tenant) + 1;
        var loads = new List<TenantLoad>();
        bool limited = RowLimitNow < Slots && _light.Count > 0;
        foreach (var (tenant, running) in _runningByTenant)
            loads.Add(new TenantLoad(tenant, running, waiting.GetValueOrDefault(tenant), WeightOf(tenant), limited && !_light.Contains(tenant)));
        foreach (var (tenant, count) in waiting)
            if (!_runningByTenant.ContainsKey(tenant)) loads.Add(new TenantLoad(tenant, 0, count, WeightOf(tenant), limited && !_light.Contains(tenant)));
        return loads;
    }

    /// <summary>
    /// Gives up a sequence's slot when it ends. Its KV (the prompt and every generated token that was fed back, i.e.
    /// all but the last sampled one) stays parked for a follow-up turn unless it was cancelled or is too short.
    /// </summary>
    public void Release(Sequence s, DecodeFinishReason reason)
    {
        int slot = s.Slot;
        if (slot >= 0 && ReferenceEquals(_bySlot[slot], s))
        {
            LeaveSlot(s);
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
        s.State = Sequence.Phase.Done;
    }

    /// <summary>Takes every slot holder off its slot (after a failed step, whose KV cannot be trusted).</summary>
    public List<Sequence> ReleaseAll()
    {
        var all = new List<Sequence>();
        for (int slot = 0; slot < _bySlot.Length; slot++)
        {
            if (_bySlot[slot] is not { } s) continue;
            LeaveSlot(s);
            _freeSlots.Add(slot);
            s.State = Sequence.Phase.Done;
            all.Add(s);
        }
        return all;
    }

    /// <summary>Everything not yet ended (for shutdown, after the loop stopped): requests not admitted yet, and slot
    /// holders.</summary>
    public (List<Sequence> NotAdmitted, List<Sequence> Admitted) TakeAll()
    {
        var waiting = new List<Sequence>();
        while (_incoming.TryDequeue(out var s)) waiting.Add(s);
        foreach (var s in _waiting.Items.ToList())
        {
            _waiting.Remove(s);
            waiting.Add(s);
        }
        return (waiting, ReleaseAll());
    }

    /// <summary>How long the loop may sleep when idle: until the next waiting request expires, at most 250 ms.</summary>
    public TimeSpan NextWakeDelay(long now)
    {
        if (_waiting.Count == 0) return TimeSpan.FromMilliseconds(250);
        var soonest = _waiting.Items.Min(s => _options.QueueTimeToLive - Stopwatch.GetElapsedTime(s.ArrivalTimestamp, now));
        return soonest < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : soonest > TimeSpan.FromMilliseconds(250) ? TimeSpan.FromMilliseconds(250) : soonest;
    }

    private void LeaveWaiting(Sequence s)
    {
        lock (_admissionLock)
        {
            _waitingCount--;
            _waitingTokens -= s.PromptPositions;
        }
    }
}
