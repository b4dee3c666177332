using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using XGenMM.LoadTest.Metrics;

namespace XGenMM.LoadTest.Reporting;

/// <summary>Writes a run as results.json (machines), report.md (people) and SVG charts, and prints console tables.</summary>
public static class ReportWriter
{
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DictionaryKeyPolicy = null,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter() },
    };

    public static RunReport Read(string path) =>
        JsonSerializer.Deserialize<RunReport>(File.ReadAllText(path), Json) ?? throw new InvalidDataException($"{path} holds no run report.");

    /// <summary>Writes results.json, report.md and the charts into <paramref name="directory"/>; returns the files written.</summary>
    public static IReadOnlyList<string> Write(RunReport report, string directory)
    {
        Directory.CreateDirectory(directory);
        var files = new List<string>();
        string json = Path.Combine(directory, "results.json");
        File.WriteAllText(json, JsonSerializer.Serialize(report, Json));
        files.Add(json);
        var charts = Charts(report);
        foreach (var (name, svg, _) in charts)
        {
            string path = Path.Combine(directory, name);
            File.WriteAllText(path, svg);
            files.Add(path);
        }
        string md = Path.Combine(directory, "report.md");
        File.WriteAllText(md, Markdown(report, charts.Select(c => (c.File, c.Caption)).ToList()));
        files.Add(md);
        if (report.Experiments.Any(e => e.Requests.Count > 0))
        {
            string csv = Path.Combine(directory, "requests.csv");
            File.WriteAllLines(csv, RequestRows(report));
            files.Add(csv);
        }
        return files;
    }

    /// <summary>
    /// One row per measured request: where in its point it started (seconds after the point's first request) and how
    /// it went, so that a point can be cut in time (the onset of a load step against the rest) or per tenant.
    /// </summary>
    public static IEnumerable<string> RequestRows(RunReport report)
    {
        yield return "experiment,point,start_s,tenant,status,error,ttft_ms,e2e_ms,output_tokens";
        foreach (var e in report.Experiments)
            foreach (var point in e.Requests)
            {
                double first = point.Records.Count == 0 ? 0 : point.Records.Min(r => r.Start);
                foreach (var r in point.Records)
                {
                    string status = r.Success ? "200" : r.Status?.ToString(CultureInfo.InvariantCulture) ?? "";
                    string ttft = r.Ttft is double t ? Fmt.Inv($"{t * 1000:F2}") : "";
                    yield return string.Join(',', Csv(e.Name), Csv(point.Point), Fmt.Inv($"{r.Start - first:F4}"), Csv(r.Tenant), status,
                        Csv(r.Success ? "" : r.Error ?? ""), ttft, Fmt.Inv($"{(r.End - r.Start) * 1000:F2}"), r.OutputTokens.ToString(CultureInfo.InvariantCulture));
                }
            }
    }

    private static string Csv(string value) =>
        value.AsSpan().IndexOfAny(",\"\n\r") < 0 ? value : "\"" + value.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";

    /// <summary>The main figures of an experiment, one row per load point.</summary>
    public static Table MainTable(ExperimentResult e, bool wide)
    {
        var headers = wide
            ? new[] { "load", "ok", "err", "req/s", "out tok/s", "TTFT p50", "TTFT p90", "TTFT p99", "TPOT p50", "TPOT p90", "TPOT p99", "ITL p50", "ITL p99", "E2E p50", "E2E p99", "goodput req/s", "SLO met", "conc mean/peak" }
            : ["load", "ok/err", "req/s", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "ITL p99", "E2E p50", "E2E p99", "goodput", "conc"];
        var t = new Table(headers);
        foreach (var p in e.Points)
        {
            string conc = Fmt.Inv($"{Fmt.N(p.MeanConcurrency, "0.0")}/{p.PeakConcurrency}");
            if (wide)
                t.Add(p.Label, Fmt.Inv($"{p.Succeeded}"), Fmt.Inv($"{p.Failed}"), Fmt.N(p.RequestsPerSecond, "0.00"), Fmt.N(p.OutputTokensPerSecond, "0.0"),
                    Fmt.Ms(p.Ttft.P50), Fmt.Ms(p.Ttft.P90), Fmt.Ms(p.Ttft.P99), Fmt.Ms(p.Tpot.P50), Fmt.Ms(p.Tpot.P90), Fmt.Ms(p.Tpot.P99),
                    Fmt.Ms(p.Itl.P50), Fmt.Ms(p.Itl.P99), Fmt.Ms(p.E2e.P50), Fmt.Ms(p.E2e.P99), Fmt.N(p.Goodput, "0.00"), Fmt.Pct(p.SloAttainment), conc);
            else
                t.Add(p.Label, Fmt.Inv($"{p.Succeeded}/{p.Failed}"), Fmt.N(p.RequestsPerSecond, "0.00"), Fmt.N(p.OutputTokensPerSecond, "0.0"),
                    Fmt.Ms(p.Ttft.P50), Fmt.Ms(p.Ttft.P99), Fmt.Ms(p.Tpot.P50), Fmt.Ms(p.Tpot.P99), Fmt.Ms(p.Itl.P99), Fmt.Ms(p.E2e.P50), Fmt.Ms(p.E2e.P99),
                    Fmt.N(p.Goodput, "0.00"), conc);
        }
        return t;
    }

    /// <summary>Client counts beside the gateway's /metrics deltas, and the server's own latency histograms.</summary>
    public static Table ServerTable(ExperimentResult e)
    {
        var t = new Table("load", "ok (client)", "ok (server)", "out tokens (client)", "out tokens (server)", "finish reasons", "TTFT p50/p99 (server)",
            "ITL p50/p99 (server)", "E2E p50/p99 (server)", "queue p50 (server)", "vision encodes (engine cache hits)", "rejected (server)");
        foreach (var p in e.Points)
        {
            var s = p.Server;
            if (s is null) { t.Add(p.Label, Fmt.Inv($"{p.Succeeded}"), "–", Fmt.Inv($"{p.OutputTokens}"), "–", "–", "–", "–", "–", "–", "–", "–"); continue; }
            string H(ServerHistogram? h) => h is null ? "–" : Fmt.Inv($"{Fmt.Ms(h.P50Ms)}/{Fmt.Ms(h.P99Ms)}");
            t.Add(p.Label, Fmt.Inv($"{p.Succeeded}"), Fmt.N(s.RequestsSucceeded, "0"), Fmt.Inv($"{p.OutputTokens}"), Fmt.N(s.GenerationTokens, "0"),
                Pairs(s.RequestsByFinishReason), H(s.Ttft), H(s.Itl), H(s.E2e), s.QueueTime is null ? "–" : Fmt.Ms(s.QueueTime.P50Ms),
                s.ImageTokensByTenant.Count > 0 || s.MmCacheQueries > 0 ? Fmt.Inv($"{Fmt.N(s.VisionEncodes, "0")} ({Fmt.N(s.MmCacheHits, "0")})") : "–",
                Pairs(s.RejectedByReason));
        }
        return t;
    }

    public static Table TenantTable(ExperimentResult e)
    {
        var t = new Table("load", "tenant", "server id", "ok/err", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "ok (server)", "out tokens (client)", "out tokens (server)", "errors");
        foreach (var p in e.Points)
            foreach (var x in p.Tenants)
            {
                string id = x.ServerId ?? "";
                string Server(Dictionary<string, double>? d) => d is null || x.ServerId is null ? "–" : Fmt.N(d.GetValueOrDefault(id), "0");
                t.Add(p.Label, x.Tenant, x.ServerId ?? "(refused)", Fmt.Inv($"{x.Succeeded}/{x.Failed}"), Fmt.N(x.OutputTokensPerSecond, "0.0"),
                    Fmt.Ms(x.Ttft.P50), Fmt.Ms(x.Ttft.P99), Fmt.Ms(x.Tpot.P50), Server(p.Server?.RequestsByTenant), Fmt.Inv($"{x.OutputTokens}"),
                    Server(p.Server?.GenerationTokensByTenant), Pairs(x.Errors.ToDictionary(kv => kv.Key, kv => (double)kv.Value)));
            }
        return t;
    }

    private static string Pairs(Dictionary<string, double> d) =>
        d.Count == 0 ? "–" : string.Join(", ", d.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => Fmt.Inv($"{kv.Key}: {Fmt.N(kv.Value, "0")}")));

    public static string Console(ExperimentResult e)
    {
        var sb = new StringBuilder();
        sb.AppendLine(Fmt.Inv($"== {e.Name}: {e.Mode} loop over {e.Protocol}, model {e.Model} (times in ms) =="));
        sb.Append(MainTable(e, wide: false).ToText());
        if (e.Knee is { } k) sb.AppendLine(Fmt.Inv($"knee: {k.Label ?? "none"} — {k.Reason}"));
        if (e.Points.Any(p => p.Server is not null))
        {
            sb.AppendLine("server /metrics deltas:");
            sb.Append(ServerTable(e).ToText());
        }
        if (e.Points.Any(p => p.Tenants.Count > 1))
        {
            sb.AppendLine("per tenant:");
            sb.Append(TenantTable(e).ToText());
        }
        foreach (var p in e.Points.Where(p => p.Errors.Count > 0))
            sb.AppendLine(Fmt.Inv($"errors at {p.Label}: {string.Join(", ", p.Errors.Select(kv => Fmt.Inv($"{kv.Key} ×{kv.Value} ({p.ErrorSamples.GetValueOrDefault(kv.Key)})")))}"));
        return sb.ToString();
    }

    internal static List<(string File, string Svg, string Caption)> Charts(RunReport report)
    {
        var charts = new List<(string, string, string)>();
        foreach (var e in report.Experiments.Where(e => e.Points.Count > 1))
        {
            string x = XLabel(e.Mode);
            string slug = Slug(e.Name);
            charts.Add(($"{slug}-latency.svg", SvgChart.Line($"{e.Name}: latency percentiles vs load", x, "milliseconds",
            [
                Series("TTFT p50", e, p => p.Ttft.P50), Series("TTFT p90", e, p => p.Ttft.P90), Series("TTFT p99", e, p => p.Ttft.P99),
                Series("TPOT p50", e, p => p.Tpot.P50), Series("TPOT p99", e, p => p.Tpot.P99), Series("E2E p50", e, p => p.E2e.P50),
            ]), $"{e.Name}: latency percentiles vs load"));
            charts.Add(($"{slug}-throughput.svg", SvgChart.Line($"{e.Name}: output throughput vs load", x, "output tokens/s",
                [Series("output tok/s", e, p => p.OutputTokensPerSecond), .. e.Points.Any(p => p.Goodput is not null)
                    ? new[] { Series("good tok/s (SLO met)", e, p => p.OutputTokensPerSecond * (p.SloAttainment ?? 1)) } : []], logY: false,
                    marker: e.Knee is { X: double knee } ? (knee, "knee") : null),
                $"{e.Name}: output throughput vs load"));
        }
        // Experiments over the same kind of load side by side (e.g. text vs repeated vs unique images).
        foreach (var group in report.Experiments.Where(e => e.Points.Count > 1).GroupBy(e => e.Mode == "sweep" ? "open" : e.Mode).Where(g => g.Count() > 1))
        {
            string x = XLabel(group.Key);
            charts.Add(($"compare-{group.Key}-ttft.svg", SvgChart.Line($"TTFT p50 by experiment ({group.Key} loop)", x, "milliseconds",
                [.. group.Select(e => Series(e.Name, e, p => p.Ttft.P50))]), $"TTFT p50 of every {group.Key}-loop experiment"));
            charts.Add(($"compare-{group.Key}-throughput.svg", SvgChart.Line($"Output tok/s by experiment ({group.Key} loop)", x, "output tokens/s",
                [.. group.Select(e => Series(e.Name, e, p => p.OutputTokensPerSecond))], logY: false), $"output tok/s of every {group.Key}-loop experiment"));
        }
        return charts;
    }

    private static string XLabel(string mode) => mode == "closed" ? "concurrency (users)" : "offered load (requests/s)";

    private static ChartSeries Series(string name, ExperimentResult e, Func<PointSummary, double> y) =>
        new(name, [.. e.Points.Where(p => p.Succeeded > 0).Select(p => (p.X, y(p)))]);

    internal static string Slug(string name)
    {
        var sb = new StringBuilder();
        foreach (char c in name.ToLowerInvariant()) sb.Append(char.IsAsciiLetterOrDigit(c) ? c : '-');
        return sb.ToString().Trim('-');
    }

    public static string Markdown(RunReport r, IReadOnlyList<(string File, string Caption)> charts)
    {
        var md = new StringBuilder();
        md.AppendLine(Fmt.Inv($"# XGenMM.Cluster load test, {r.Started:yyyy-MM-dd HH:mm} UTC"));
        md.AppendLine();
        md.AppendLine(Fmt.Inv($"Target `{r.Target}`; {r.Experiments.Count} experiment(s), {r.Experiments.Sum(e => e.Points.Count)} load points, ") +
            Fmt.Inv($"{Fmt.N((r.Finished - r.Started).TotalMinutes, "0.0")} minutes. Generated by `xgenmm-loadtest` (loadtest/README.md explains every figure)."));
        md.AppendLine();
        md.AppendLine("## Machine");
        md.AppendLine();
        md.AppendLine(Fmt.Inv($"- CPU: {r.Machine.CpuModel}, {r.Machine.LogicalCores} logical cores; memory {Fmt.N(r.Machine.MemoryGiB, "0.0")} GiB"));
        md.AppendLine(Fmt.Inv($"- {r.Machine.Os}, {r.Machine.Runtime}; load average (1, 5, 15 min) at the start {r.Machine.LoadAverageAtStart}, at the end {r.Machine.LoadAverage}"));
        foreach (var note in r.Notes) md.AppendLine("- " + note);
        if (r.CommandLine.Length > 0)
        {
            md.AppendLine();
            md.AppendLine("```");
            md.AppendLine(r.CommandLine);
            md.AppendLine("```");
        }
        md.AppendLine();
        md.AppendLine("Times are milliseconds. TTFT: request start to the first non-empty streamed chunk. TPOT: (E2E − TTFT) / (output tokens − 1) per request. " +
            "ITL: gaps between streamed chunks, all requests pooled. Percentiles interpolate linearly (numpy). Server figures are deltas of the gateway's `/metrics` " +
            "between a scrape before the point (after the warm-up) and one after it; server percentiles are estimated from histogram buckets.");
        foreach (var e in r.Experiments)
        {
            md.AppendLine();
            md.AppendLine(Fmt.Inv($"## {e.Name}"));
            md.AppendLine();
            if (e.Note is not null) { md.AppendLine(e.Note); md.AppendLine(); }
            md.AppendLine(Fmt.Inv($"{e.Mode} loop over {e.Protocol}, model `{e.Model}`."));
            md.AppendLine();
            var settings = new Table("setting", "value");
            foreach (var (key, value) in e.Settings) settings.Add(key, value);
            md.Append(settings.ToMarkdown());
            md.AppendLine();
            md.AppendLine("### Client side");
            md.AppendLine();
            md.Append(MainTable(e, wide: true).ToMarkdown());
            md.AppendLine();
            var extra = new Table("load", "duration s", "prompt tok/req", "of which image", "of which cached", "out tok/req", "total tok/s", "arrivals/s", "scheduled/s", "served/s", "max lag ms");
            foreach (var p in e.Points)
            {
                double per(long total) => p.Succeeded > 0 ? (double)total / p.Succeeded : double.NaN;
                extra.Add(p.Label, Fmt.N(p.DurationSeconds, "0.00"), Fmt.N(p.MeanPromptTokens, "0.0"), Fmt.N(per(p.ImageTokens), "0.0"), Fmt.N(per(p.CachedTokens), "0.0"),
                    Fmt.N(p.MeanOutputTokens, "0.0"), Fmt.N(p.TotalTokensPerSecond, "0.0"), Fmt.N(p.AchievedArrivalRate, "0.00"),
                    p.Mode == "closed" ? "–" : Fmt.N(p.ScheduledArrivalRate, "0.00"), Fmt.N(p.ServedRate, "0.00"), Fmt.N(p.MaxScheduleLagMs, "0.0"));
            }
            md.Append(extra.ToMarkdown());
            if (e.Points.Any(p => p.Turns.Count > 1))
            {
                md.AppendLine();
                md.AppendLine("By turn of the conversations (later turns resend the history):");
                md.AppendLine();
                var turns = new Table("load", "turn", "requests", "prompt tok/req", "cached tok/req", "TTFT p50", "TTFT p99");
                foreach (var p in e.Points)
                    foreach (var t in p.Turns)
                        turns.Add(p.Label, Fmt.Inv($"{t.Turn + 1}"), Fmt.Inv($"{t.Requests}"), Fmt.N(t.MeanPromptTokens, "0.0"), Fmt.N(t.MeanCachedTokens, "0.0"), Fmt.Ms(t.Ttft.P50), Fmt.Ms(t.Ttft.P99));
                md.Append(turns.ToMarkdown());
            }
            if (e.Knee is { } k)
            {
                md.AppendLine();
                md.AppendLine(k.Label is null
                    ? Fmt.Inv($"**Knee:** none within the points run ({k.Reason}).")
                    : Fmt.Inv($"**Knee:** {k.Label} ({Fmt.N(k.OutputTokensPerSecond, "0.0")} output tok/s, {Fmt.N(k.RequestsPerSecond, "0.00")} req/s); next: {k.Reason}."));
            }
            if (e.Points.Any(p => p.Server is not null))
            {
                md.AppendLine();
                md.AppendLine("### Server side (`/metrics` deltas)");
                md.AppendLine();
                md.Append(ServerTable(e).ToMarkdown());
            }
            if (e.Points.Any(p => p.Tenants.Count > 1 || p.Tenants.Any(t => t.ServerId is null)))
            {
                md.AppendLine();
                md.AppendLine("### Per tenant");
                md.AppendLine();
                md.Append(TenantTable(e).ToMarkdown());
            }
            if (e.Points.Any(p => p.Errors.Count > 0))
            {
                md.AppendLine();
                md.AppendLine("### Errors by type");
                md.AppendLine();
                var errors = new Table("load", "error", "count", "first message");
                foreach (var p in e.Points)
                    foreach (var (type, n) in p.Errors)
                        errors.Add(p.Label, type, Fmt.Inv($"{n}"), p.ErrorSamples.GetValueOrDefault(type, "").ReplaceLineEndings(" "));
                md.Append(errors.ToMarkdown());
            }
            string slug = Slug(e.Name);
            var mine = charts.Where(c => c.File.StartsWith(slug + "-", StringComparison.Ordinal)).ToList();
            if (mine.Count > 0)
            {
                md.AppendLine();
                foreach (var (file, caption) in mine) md.AppendLine(Fmt.Inv($"![{caption}]({file})"));
            }
        }
        var compare = charts.Where(c => c.File.StartsWith("compare-", StringComparison.Ordinal)).ToList();
        if (compare.Count > 0)
        {
            md.AppendLine();
            md.AppendLine("## Experiments compared");
            md.AppendLine();
            foreach (var (file, caption) in compare) md.AppendLine(Fmt.Inv($"![{caption}]({file})"));
        }
        return md.ToString();
    }
}
