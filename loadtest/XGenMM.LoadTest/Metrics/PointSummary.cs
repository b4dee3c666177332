using XGenMM.LoadTest.Cli;
using XGenMM.LoadTest.Clients;

namespace XGenMM.LoadTest.Metrics;

/// <summary>Client-side figures of one tenant within a point.</summary>
public sealed record TenantSummary
{
    public string Tenant { get; init; } = "";
    /// <summary>The server's id of this tenant (null when its key was refused).</summary>
    public string? ServerId { get; init; }
    public int Requests { get; init; }
    public int Succeeded { get; init; }
    public int Failed { get; init; }
    public long OutputTokens { get; init; }
    public long PromptTokens { get; init; }
    public long ImageTokens { get; init; }
    public double OutputTokensPerSecond { get; init; }
    public double Goodput { get; init; }
    public Distribution Ttft { get; init; } = Distribution.Empty;
    public Distribution Tpot { get; init; } = Distribution.Empty;
    public Dictionary<string, int> Errors { get; init; } = [];
}

/// <summary>Requests of one turn number within a point.</summary>
public sealed record TurnSummary
{
    public int Turn { get; init; }
    public int Requests { get; init; }
    public double MeanPromptTokens { get; init; }
    public double MeanCachedTokens { get; init; }
    public Distribution Ttft { get; init; } = Distribution.Empty;
}

/// <summary>Everything measured at one load point (one concurrency or one rate).</summary>
public sealed record PointSummary
{
    public string Label { get; init; } = "";
    public string Mode { get; init; } = "";
    /// <summary>The load axis: concurrency (closed) or offered requests/s (open).</summary>
    public double X { get; init; }
    public int? Concurrency { get; init; }
    public double? OfferedRate { get; init; }
    public double? Burstiness { get; init; }

    public int Requests { get; init; }
    public int Succeeded { get; init; }
    public int Failed { get; init; }
    /// <summary>Seconds from the first request's start to the last one's end (vLLM's benchmark duration).</summary>
    public double DurationSeconds { get; init; }
    public double RequestsPerSecond { get; init; }
    public double OutputTokensPerSecond { get; init; }
    public double TotalTokensPerSecond { get; init; }
    public long PromptTokens { get; init; }
    public long ImageTokens { get; init; }
    public long CachedTokens { get; init; }
    public long OutputTokens { get; init; }
    public double MeanInputWords { get; init; }
    public double MeanPromptTokens { get; init; }
    public double MeanOutputTokens { get; init; }

    public Distribution Ttft { get; init; } = Distribution.Empty;
    public Distribution Tpot { get; init; } = Distribution.Empty;
    public Distribution Itl { get; init; } = Distribution.Empty;
    public Distribution E2e { get; init; } = Distribution.Empty;

    /// <summary>Requests/s that met every SLO (vLLM's request goodput); null without SLOs.</summary>
    public double? Goodput { get; init; }
    /// <summary>Fraction of the requests that met every SLO; null without SLOs.</summary>
    public double? SloAttainment { get; init; }

    /// <summary>Time-weighted mean of requests in flight between the first and the last start.</summary>
    public double MeanConcurrency { get; init; }
    public int PeakConcurrency { get; init; }
    /// <summary>Requests started per second between the first and the last start.</summary>
    public double AchievedArrivalRate { get; init; }
    /// <summary>Open loop: requests per second the drawn schedule asked for (the offered rate as sampled).</summary>
    public double ScheduledArrivalRate { get; init; }
    /// <summary>
    /// Open loop: successful requests per second, over the duration less the shortest E2E (the tail a finite run adds
    /// even when nothing queues): close to <see cref="ScheduledArrivalRate"/> until the server saturates.
    /// </summary>
    public double? ServedRate { get; init; }
    /// <summary>Open loop: <see cref="ServedRate"/> / <see cref="ScheduledArrivalRate"/>.</summary>
    public double? ServedFraction { get; init; }
    /// <summary>Open loop: the latest a request started after its scheduled time, in milliseconds.</summary>
    public double MaxScheduleLagMs { get; init; }

    /// <summary>Multi-turn: prompt sizes and TTFT by turn (later turns carry the history).</summary>
    public List<TurnSummary> Turns { get; init; } = [];

    public Dictionary<string, int> Errors { get; init; } = [];
    /// <summary>The message of the first error of each type.</summary>
    public Dictionary<string, string> ErrorSamples { get; init; } = [];
    public Dictionary<int, int> ErrorsByStatus { get; init; } = [];
    public List<TenantSummary> Tenants { get; init; } = [];
    public ServerDelta? Server { get; init; }

    public static PointSummary From(string label, LoadMode mode, double x, int? concurrency, double? rate, double? burstiness,
        IReadOnlyList<RequestRecord> records, IReadOnlyList<TenantSpec> tenants, Slo slo, ServerDelta? server)
    {
        var ok = records.Where(r => r.Success).ToList();
        double first = records.Count > 0 ? records.Min(r => r.Start) : 0;
        double last = records.Count > 0 ? records.Max(r => r.End) : 0;
        double duration = Math.Max(last - first, 1e-9);
        long output = ok.Sum(r => (long)r.OutputTokens), prompt = ok.Sum(r => (long)r.PromptTokens);
        var starts = records.Select(r => r.Start).Order().ToArray();
        var scheduled = records.Select(r => r.Scheduled).Order().ToArray();
        var (meanConc, peak) = InFlight(records);
        double scheduledRate = Rate(scheduled);
        double? served = null;
        if (mode != LoadMode.Closed && ok.Count > 1 && scheduledRate > 0)
        {
            double window = Math.Max(duration - ok.Min(r => r.E2e), scheduled[^1] - scheduled[0]);
            served = window > 0 ? ok.Count / window : null;
        }
        return new PointSummary
        {
            Label = label,
            Mode = mode.ToString().ToLowerInvariant(),
            X = x,
            Concurrency = concurrency,
            OfferedRate = rate,
            Burstiness = burstiness,
            Requests = records.Count,
            Succeeded = ok.Count,
            Failed = records.Count - ok.Count,
            DurationSeconds = records.Count > 0 ? duration : 0,
            RequestsPerSecond = ok.Count / duration,
            OutputTokensPerSecond = output / duration,
            TotalTokensPerSecond = (output + prompt) / duration,
            PromptTokens = prompt,
            ImageTokens = ok.Sum(r => (long)r.ImageTokens),
            CachedTokens = ok.Sum(r => (long)r.CachedTokens),
            OutputTokens = output,
            MeanInputWords = records.Count > 0 ? records.Average(r => r.InputWords) : 0,
            MeanPromptTokens = ok.Count > 0 ? ok.Average(r => r.PromptTokens) : 0,
            MeanOutputTokens = ok.Count > 0 ? ok.Average(r => r.OutputTokens) : 0,
            Ttft = Distribution.OfSeconds(ok.Where(r => r.Ttft is not null).Select(r => r.Ttft!.Value)),
            Tpot = Distribution.OfSeconds(ok.Where(r => r.Tpot is not null).Select(r => r.Tpot!.Value)),
            Itl = Distribution.OfSeconds(ok.SelectMany(r => r.Itl)),
            E2e = Distribution.OfSeconds(ok.Select(r => r.E2e)),
            Goodput = slo.Any ? records.Count(slo.Met) / duration : null,
            SloAttainment = slo.Any && records.Count > 0 ? (double)records.Count(slo.Met) / records.Count : null,
            MeanConcurrency = meanConc,
            PeakConcurrency = peak,
            AchievedArrivalRate = Rate(starts),
            ScheduledArrivalRate = scheduledRate,
            ServedRate = served,
            ServedFraction = served / scheduledRate,
            MaxScheduleLagMs = records.Count > 0 ? records.Max(r => r.Start - r.Scheduled) * 1000 : 0,
            Errors = Count(records.Where(r => !r.Success).Select(r => r.Error ?? "unknown")),
            ErrorSamples = records.Where(r => !r.Success).GroupBy(r => r.Error ?? "unknown", StringComparer.Ordinal)
                .ToDictionary(g => g.Key, g => g.First().ErrorMessage ?? "", StringComparer.Ordinal),
            ErrorsByStatus = records.Where(r => !r.Success && r.Status is not null).GroupBy(r => r.Status!.Value).ToDictionary(g => g.Key, g => g.Count()),
            Turns = [.. records.GroupBy(r => r.Turn).OrderBy(g => g.Key).Select(g => new TurnSummary
            {
                Turn = g.Key,
                Requests = g.Count(),
                MeanPromptTokens = g.Where(r => r.Success).Select(r => (double)r.PromptTokens).DefaultIfEmpty(double.NaN).Average(),
                MeanCachedTokens = g.Where(r => r.Success).Select(r => (double)r.CachedTokens).DefaultIfEmpty(double.NaN).Average(),
                Ttft = Distribution.OfSeconds(g.Where(r => r.Success && r.Ttft is not null).Select(r => r.Ttft!.Value)),
            })],
            Tenants = [.. tenants.Where(t => t.Share > 0).Select(t => Tenant(t, records.Where(r => r.Tenant == t.Label).ToList(), duration, slo))],
            Server = server,
        };
    }

    private static TenantSummary Tenant(TenantSpec t, List<RequestRecord> records, double duration, Slo slo)
    {
        var ok = records.Where(r => r.Success).ToList();
        return new TenantSummary
        {
            Tenant = t.Label,
            ServerId = t.ServerId,
            Requests = records.Count,
            Succeeded = ok.Count,
            Failed = records.Count - ok.Count,
            OutputTokens = ok.Sum(r => (long)r.OutputTokens),
            PromptTokens = ok.Sum(r => (long)(r.PromptTokens - r.ImageTokens)),
            ImageTokens = ok.Sum(r => (long)r.ImageTokens),
            OutputTokensPerSecond = ok.Sum(r => (double)r.OutputTokens) / duration,
            Goodput = (slo.Any ? records.Count(slo.Met) : ok.Count) / duration,
            Ttft = Distribution.OfSeconds(ok.Where(r => r.Ttft is not null).Select(r => r.Ttft!.Value)),
            Tpot = Distribution.OfSeconds(ok.Where(r => r.Tpot is not null).Select(r => r.Tpot!.Value)),
            Errors = Count(records.Where(r => !r.Success).Select(r => r.Error ?? "unknown")),
        };
    }

    private static double Rate(double[] sortedTimes) =>
        sortedTimes.Length > 1 && sortedTimes[^1] > sortedTimes[0] ? (sortedTimes.Length - 1) / (sortedTimes[^1] - sortedTimes[0]) : 0;

    private static Dictionary<string, int> Count(IEnumerable<string> keys) =>
        keys.GroupBy(k => k, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);

    /// <summary>
    /// Requests in flight over time from the records' start and end times: the time-weighted mean between the first and
    /// the last start (the ramp-down after the last start is left out), and the peak.
    /// </summary>
    internal static (double Mean, int Peak) InFlight(IReadOnlyList<RequestRecord> records)
    {
        if (records.Count == 0) return (0, 0);
        // At equal times ends come first: a closed-loop user ends one request and then starts the next.
        var events = records.SelectMany(r => new[] { (T: r.Start, D: +1), (T: Math.Max(r.End, r.Start), D: -1) })
            .OrderBy(e => e.T).ThenBy(e => e.D).ToArray();
        double from = records.Min(r => r.Start), to = records.Max(r => r.Start);
        int level = 0, peak = 0;
        double area = 0, prev = events[0].T;
        foreach (var (t, d) in events)
        {
            double a = Math.Max(prev, from), b = Math.Min(t, to);
            if (b > a) area += level * (b - a);
            prev = t;
            level += d;
            peak = Math.Max(peak, level);
        }
        return (to > from ? area / (to - from) : peak, peak);
    }
}
