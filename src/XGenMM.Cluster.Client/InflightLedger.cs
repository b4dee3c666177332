using XGenMM.Cluster.Abstractions;

namespace XGenMM.Cluster.Client;

/// <summary>
/// What this router started and ended on each decoder since that decoder's last load report. Decoders report about
/// once a second and the router reads the registry every <see cref="ClusterChatOptions.RegistryRefresh"/>, so under a
/// burst the reports lag what the router itself just did: a closed loop of short answers sends dozens of requests per
/// second, all of which a stale report would admit as if the decoder were still idle. <see cref="Adjust"/> adds the
/// requests started after the report's time as waiting rows and takes off the rows that ended after it, so that the
/// capacity model and the tenant shares see the decoder as this router left it. Other gateways' requests since the
/// report are not seen (their own ledgers count them). Thread-safe.
/// </summary>
internal sealed class InflightLedger(TimeProvider time)
{
    /// <summary>An ended request is kept this long, so that a report taken before its end is still corrected.</summary>
    private static readonly TimeSpan KeepEnded = TimeSpan.FromSeconds(10);

    internal sealed class Entry(string decoder, string tenant, long tokens, DateTimeOffset started)
    {
        public string Decoder { get; } = decoder;
        public string Tenant { get; } = tenant;
        public long Tokens { get; } = tokens;
        public DateTimeOffset Started { get; } = started;
        public DateTimeOffset? Ended { get; set; }
    }

    private readonly object _lock = new();
    private readonly List<Entry> _entries = [];

    public Entry Start(string decoder, string tenant, long tokens)
    {
        var entry = new Entry(decoder, tenant, Math.Max(0, tokens), time.GetUtcNow());
        lock (_lock) _entries.Add(entry);
        return entry;
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

    /// <summary>The report as this router's own starts and ends since <see cref="DecoderLoadReport.At"/> changed it.</summary>
    public DecoderLoadReport Adjust(DecoderLoadReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        int started = 0, ended = 0;
        long tokens = 0;
        var tenants = report.Tenants.ToDictionary(t => t.Tenant, t => t, StringComparer.Ordinal);
        lock (_lock)
        {
            foreach (var e in _entries)
            {
                if (!string.Equals(e.Decoder, report.DecoderKey, StringComparison.Ordinal)) continue;
                var t = tenants.GetValueOrDefault(e.Tenant) ?? new TenantRowsReport(e.Tenant, 0, 0, 1);
                if (e.Started > report.At && e.Ended is null)
                {
                    started++;
                    tokens += e.Tokens;
                    tenants[e.Tenant] = t with { Waiting = t.Waiting + 1 };
                }
                else if (e.Started <= report.At && e.Ended > report.At)
                {
                    ended++;
                    tenants[e.Tenant] = t.Running > 0 ? t with { Running = t.Running - 1 } : t with { Waiting = Math.Max(0, t.Waiting - 1) };
                }
            }
        }
        if (started == 0 && ended == 0) return report;
        // An ended row frees its slot: the rows with the fewest tokens left are the likeliest to have ended.
        int gone = Math.Min(ended, report.Running);
        return report with
        {
            Running = report.Running - gone,
            Waiting = Math.Max(0, report.Waiting + started - (ended - gone)),
            WaitingTokens = report.WaitingTokens + tokens,
            RemainingTokens = report.RemainingTokens[Math.Min(gone, report.RemainingTokens.Length)..],
            Tenants = [.. tenants.Values],
        };
    }
}
