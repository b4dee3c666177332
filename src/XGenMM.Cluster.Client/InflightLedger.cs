using XGenMM.Cluster.Abstractions;

namespace XGenMM.Cluster.Client;

/// <summary>
/// What this router's own requests did on each decoder since that decoder's last load report. Decoders report about
/// once a second and the router reads the registry every <see cref="ClusterChatOptions.RegistryRefresh"/>, so under a
/// burst the reports lag what the router itself just did: a closed loop of short answers sends dozens of requests per
/// second, all of which a stale report would admit as if the decoder were still idle. <see cref="Adjust"/> moves each
/// of this router's requests from where the report saw it to where it is now: one started after the report is added
/// as waiting prompt work until its first token arrives and as a running row after that; one the report saw before
/// its first token (waiting or prefilling) is taken off the prompt work once its first token arrived; one that ended
/// since the report gives up its row. Counting every request started since the report as waiting until it ended (as
/// this ledger did first) made a decoder look a second of arrivals behind: under a closed loop at 8 users the capacity
/// model predicted 0.5 s for first tokens that came in 30 ms. Other gateways' requests since the report are not seen
/// (their own ledgers count them). Thread-safe.
/// </summary>
internal sealed class InflightLedger(TimeProvider time)
{
    /// <summary>An ended request is kept this long, so that a report taken before its end is still corrected.</summary>
    private static readonly TimeSpan KeepEnded = TimeSpan.FromSeconds(10);

    internal sealed class Entry(string decoder, string tenant, long tokens, int maxNewTokens, DateTimeOffset started)
    {
        private int _produced;

        public string Decoder { get; } = decoder;
        public string Tenant { get; } = tenant;
        public long Tokens { get; } = tokens;
        public int MaxNewTokens { get; } = maxNewTokens;
        public DateTimeOffset Started { get; } = started;
        public DateTimeOffset? FirstToken { get; set; }
        public DateTimeOffset? Ended { get; set; }
        public int Produced => Volatile.Read(ref _produced);
        public void Add() => Interlocked.Increment(ref _produced);
    }

    private readonly object _lock = new();
    private readonly List<Entry> _entries = [];

    public Entry Start(string decoder, string tenant, long tokens, int maxNewTokens = 0)
    {
        var entry = new Entry(decoder, tenant, Math.Max(0, tokens), Math.Max(0, maxNewTokens), time.GetUtcNow());
        lock (_lock) _entries.Add(entry);
        return entry;
    }

    /// <summary>A token of the request arrived (the first one moves it from prompt work to a running row).</summary>
    public void Token(Entry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        if (entry.FirstToken is null)
        {
            var now = time.GetUtcNow();
            lock (_lock) entry.FirstToken ??= now;
        }
        entry.Add();
    }

    public void End(Entry entry)
    {
        var now = time.GetUtcNow();
        lock (_lock)
        {
            entry.Ended ??= now;
            _entries.RemoveAll(e => e.Ended is { } ended && now - ended > KeepEnded);
        }
    }

    /// <summary>The report as this router's requests changed it since <see cref="DecoderLoadReport.At"/>.</summary>
    public DecoderLoadReport Adjust(DecoderLoadReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var at = report.At;
        int running = report.Running, waiting = report.Waiting;
        long waitingTokens = report.WaitingTokens, prefilling = report.PrefillingTokens;
        int endedRows = 0;
        bool changed = false;
        var added = new List<int>();
        var tenants = report.Tenants.ToDictionary(t => t.Tenant, t => t, StringComparer.Ordinal);
        lock (_lock)
        {
            foreach (var e in _entries)
            {
                if (!string.Equals(e.Decoder, report.DecoderKey, StringComparison.Ordinal)) continue;
                if (e.Ended is { } ended && ended <= at) continue;
                var t = tenants.GetValueOrDefault(e.Tenant) ?? new TenantRowsReport(e.Tenant, 0, 0, 1);
                bool ahead = e.FirstToken is null && e.Ended is null;
                bool runs = e.FirstToken is not null && e.Ended is null;
                if (e.Started > at)
                {
                    if (e.Ended is not null) continue;
                    changed = true;
                    if (ahead)
                    {
                        waiting++;
                        waitingTokens += e.Tokens;
                        tenants[e.Tenant] = t with { Waiting = t.Waiting + 1 };
                    }
                    else
                    {
                        running++;
                        added.Add(Math.Max(0, e.MaxNewTokens - e.Produced));
                        tenants[e.Tenant] = t with { Running = t.Running + 1 };
                    }
                    continue;
                }
                bool wasAhead = e.FirstToken is not { } first || first > at;
                if (wasAhead && !ahead)
                {
                    // It was prompt work in the report and is no longer. Prefilling rows are older than waiting ones,
                    // so they reach their first token first: its positions come off the prefilling ones while any are
                    // left (it held a slot already), else off the waiting ones (it took a slot since).
                    changed = true;
                    bool heldSlot = prefilling >= e.Tokens || waiting == 0;
                    if (heldSlot) prefilling = Math.Max(0, prefilling - e.Tokens);
                    else
                    {
                        waitingTokens = Math.Max(0, waitingTokens - e.Tokens);
                        waiting--;
                        t = t.Waiting > 0 ? t with { Waiting = t.Waiting - 1 } : t;
                        if (runs)
                        {
                            running++;
                            added.Add(Math.Max(0, e.MaxNewTokens - e.Produced));
                            t = t with { Running = t.Running + 1 };
                        }
                    }
                    if (heldSlot && !runs)
                    {
                        endedRows++;
                        t = t.Running > 0 ? t with { Running = t.Running - 1 } : t;
                    }
                    tenants[e.Tenant] = t;
                }
                else if (!wasAhead && !runs)
                {
                    // A row that ran at the report's time and ended since.
                    changed = true;
                    endedRows++;
                    tenants[e.Tenant] = t.Running > 0 ? t with { Running = t.Running - 1 } : t with { Waiting = Math.Max(0, t.Waiting - 1) };
                }
            }
        }
        // Steps since the report ran at the rows it saw and those started since (at the fitted pass, not only the
        // report's own step: that one was measured at the rows of its time).
        int made = report.DecodeStepSeconds > 0 && report.RemainingTokens.Length > 0
            ? (int)Math.Clamp((time.GetUtcNow() - at).TotalSeconds / CapacityModel.StepSeconds(report, Math.Max(report.Running, running)), 0, int.MaxValue)
            : 0;
        if (!changed && made == 0) return report;
        // An ended row frees its slot: the rows with the fewest tokens left are the likeliest to have ended.
        int gone = Math.Min(endedRows, report.RemainingTokens.Length);
        // The rows the report saw running have made a token a step since: a report a second old overstated how long
        // a full decoder's next slot takes by a second's worth of steps (32-token answers: most of each row).
        var remaining = report.RemainingTokens[gone..].Select(r => Math.Max(1, r - made)).Concat(added).Order().ToArray();
        return report with
        {
            Running = Math.Max(0, running - endedRows),
            Waiting = Math.Max(0, waiting),
            WaitingTokens = waitingTokens,
            PrefillingTokens = prefilling,
            RemainingTokens = remaining,
            Tenants = [.. tenants.Values],
        };
    }
}
