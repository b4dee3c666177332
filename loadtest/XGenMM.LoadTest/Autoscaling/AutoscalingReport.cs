using System.Globalization;
using System.Text;
using System.Text.Json;
using XGenMM.LoadTest.Metrics;
using XGenMM.LoadTest.Reporting;

namespace XGenMM.LoadTest.Autoscaling;

/// <summary>One sync period of the autoscaling run.</summary>
public sealed record AutoscalingSample
{
    /// <summary>Seconds since the run began.</summary>
    public double Seconds { get; init; }
    /// <summary>Requests in the scaled decoders, running or waiting (their xgenmm_num_requests_running plus the
    /// trigger's metric, through Prometheus): the offered load as the cluster sees it.</summary>
    public double Load { get; init; }
    /// <summary>Generations streaming tokens at the gateway (xgenmm_gateway_active_streams: admitted, past the queue).</summary>
    public double Streaming { get; init; }
    /// <summary>The trigger query's value (a total over the scaled pods).</summary>
    public double? Metric { get; init; }
    /// <summary>The metric per live replica, comparable to the trigger's threshold.</summary>
    public double? MetricPerReplica { get; init; }
    /// <summary>What the metric alone proposes (before stabilization and policies).</summary>
    public int? Proposed { get; init; }
    /// <summary>The replica count the HPA sets.</summary>
    public int Desired { get; init; }
    /// <summary>Silo processes of the scaled group that run and are not draining.</summary>
    public int LiveSilos { get; init; }
    /// <summary>Silo processes draining after SIGTERM.</summary>
    public int DrainingSilos { get; init; }
    public string Reason { get; init; } = "";
}

/// <summary>A silo process started because the HPA asked for more replicas.</summary>
public sealed record ScaleUpRecord
{
    public string Silo { get; init; } = "";
    /// <summary>When the HPA decided (seconds since the run began).</summary>
    public double DecidedAt { get; init; }
    /// <summary>When its /readyz first answered 200 (model loaded, joined the cluster).</summary>
    public double? ReadyAt { get; init; }
    /// <summary>When it first reported a generated token on its /metrics (it served a request).</summary>
    public double? FirstServedAt { get; init; }
    /// <summary>Decision to first served token, seconds.</summary>
    public double? TimeToTakeLoadSeconds => FirstServedAt - DecidedAt;
}

/// <summary>A silo process drained (SIGTERM) because the HPA asked for fewer replicas.</summary>
public sealed record DrainRecord
{
    public string Silo { get; init; } = "";
    public double DecidedAt { get; init; }
    /// <summary>Requests it was generating when SIGTERM came (its xgenmm_num_requests_running).</summary>
    public double RunningAtSigterm { get; init; }
    /// <summary>Seconds from SIGTERM to the process's exit.</summary>
    public double? ExitedAfterSeconds { get; init; }
    public int? ExitCode { get; init; }
    /// <summary>The silo's own word on its drain ("Drain finished (all work completed: True)").</summary>
    public bool? DrainCompleted { get; init; }
    /// <summary>Streams the gateway had to move off this silo's decoder after it had streamed tokens from it (lost, then
    /// resumed elsewhere): 0 for a clean drain.</summary>
    public int StreamsMovedOff { get; init; }
    /// <summary>Requests sent to this silo's decoder that it never started (the gateway's view still had it as the silo
    /// left): sent on to another decoder before their first token, nothing lost.</summary>
    public int RequestsReroutedOff { get; init; }
}

/// <summary>The whole autoscaling run: what was scaled on what, every sync period, the scale events and the load's outcome.</summary>
public sealed record AutoscalingReport
{
    public DateTimeOffset Started { get; init; }
    public MachineInfo Machine { get; init; } = new();
    public string ScaledObject { get; init; } = "";
    public string Deployment { get; init; } = "";
    public string Query { get; init; } = "";
    public double Threshold { get; init; }
    public int MinReplicas { get; init; }
    public int MaxReplicas { get; init; }
    public double Tolerance { get; init; }
    public double SyncPeriodSeconds { get; init; }
    public double ScrapeIntervalSeconds { get; init; }
    public ScalingRules ScaleUp { get; init; } = ScalingRules.DefaultScaleUp;
    public ScalingRules ScaleDown { get; init; } = ScalingRules.DefaultScaleDown;
    /// <summary>The load ramp (the load tool's command line).</summary>
    public string Load { get; init; } = "";
    public IReadOnlyList<AutoscalingSample> Samples { get; init; } = [];
    public IReadOnlyList<ScaleUpRecord> ScaleUps { get; init; } = [];
    public IReadOnlyList<DrainRecord> Drains { get; init; } = [];
    public int RequestsSucceeded { get; init; }
    public int RequestsFailed { get; init; }
    /// <summary>Every stream the gateway had to move (its "moving the generation" warnings), whichever decoder lost it.</summary>
    public int StreamsMoved { get; init; }
    public IReadOnlyList<string> Notes { get; init; } = [];
}

/// <summary>Writes an <see cref="AutoscalingReport"/> as autoscaling.json, autoscaling.csv, two SVG charts and autoscaling.md.</summary>
public static class AutoscalingReportWriter
{
    public static IReadOnlyList<string> Write(AutoscalingReport report, string directory)
    {
        ArgumentNullException.ThrowIfNull(report);
        Directory.CreateDirectory(directory);
        var files = new List<string>();
        void Save(string name, string text)
        {
            string path = Path.Combine(directory, name);
            File.WriteAllText(path, text);
            files.Add(path);
        }
        Save("autoscaling.json", JsonSerializer.Serialize(report, ReportWriter.Json));
        Save("autoscaling.csv", Csv(report));
        Save("autoscaling-load.svg", LoadChart(report));
        Save("autoscaling-replicas.svg", ReplicaChart(report));
        Save("autoscaling.md", Markdown(report));
        return files;
    }

    public static AutoscalingReport Read(string path) =>
        JsonSerializer.Deserialize<AutoscalingReport>(File.ReadAllText(path), ReportWriter.Json) ?? throw new InvalidDataException($"{path} holds no autoscaling report.");

    public static string Csv(AutoscalingReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var csv = new StringBuilder("seconds,load,streaming,metric,metric_per_replica,threshold,proposed,desired,live_silos,draining_silos,reason\n");
        foreach (var s in report.Samples)
            csv.Append(Inv($"{s.Seconds:0.0},{s.Load:0.##},{s.Streaming:0.##},{Num(s.Metric)},{Num(s.MetricPerReplica)},{report.Threshold:0.##},{s.Proposed?.ToString(CultureInfo.InvariantCulture) ?? ""},{s.Desired},{s.LiveSilos},{s.DrainingSilos},{s.Reason}\n"));
        return csv.ToString();
    }

    public static string LoadChart(AutoscalingReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var s = report.Samples;
        return SvgChart.Line("Load and the scaling metric over time", "seconds", "requests",
        [
            new ChartSeries("load (in decoders)", [.. s.Select(x => (x.Seconds, x.Load))]),
            new ChartSeries("streaming (gateway)", [.. s.Select(x => (x.Seconds, x.Streaming))]),
            new ChartSeries("metric (total)", [.. s.Where(x => x.Metric is not null).Select(x => (x.Seconds, x.Metric!.Value))]),
            new ChartSeries("metric / replica", [.. s.Where(x => x.MetricPerReplica is not null).Select(x => (x.Seconds, x.MetricPerReplica!.Value))]),
            new ChartSeries("target / replica", [.. s.Select(x => (x.Seconds, report.Threshold))]),
        ], logX: false, logY: false);
    }

    public static string ReplicaChart(AutoscalingReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var s = report.Samples;
        return SvgChart.Line("Replicas over time", "seconds", "replicas",
        [
            new ChartSeries("proposed (metric)", [.. s.Where(x => x.Proposed is not null).Select(x => (x.Seconds, (double)x.Proposed!.Value))]),
            new ChartSeries("desired (HPA)", [.. s.Select(x => (x.Seconds, (double)x.Desired))]),
            new ChartSeries("live silos", [.. s.Select(x => (x.Seconds, (double)x.LiveSilos))]),
            new ChartSeries("draining silos", [.. s.Select(x => (x.Seconds, (double)x.DrainingSilos))]),
        ], logX: false, logY: false);
    }

    public static string Markdown(AutoscalingReport r)
    {
        ArgumentNullException.ThrowIfNull(r);
        var md = new StringBuilder();
        md.Append("# Autoscaling run\n\n");
        md.Append(Inv($"Started {r.Started:yyyy-MM-dd HH:mm:ss} UTC on {r.Machine.CpuModel} ({r.Machine.LogicalCores} logical cores, {r.Machine.MemoryGiB:0.#} GiB), {r.Machine.Os}; load average {r.Machine.LoadAverageAtStart} at the start, {r.Machine.LoadAverage} at the end.\n\n"));
        md.Append("## What was scaled, on what\n\n");
        md.Append(Inv($"- ScaledObject `{r.ScaledObject}` (rendered from helm/xgenmm) scales Deployment `{r.Deployment}` between {r.MinReplicas} and {r.MaxReplicas} replicas.\n"));
        md.Append(Inv($"- Trigger query, evaluated by a real Prometheus every {r.SyncPeriodSeconds:0.#} s (scrape interval {r.ScrapeIntervalSeconds:0.#} s): `{r.Query}`, threshold {r.Threshold:0.##} per replica (AverageValue).\n"));
        md.Append(Inv($"- HPA arithmetic: tolerance {r.Tolerance:0.##}; scale up: window {r.ScaleUp.StabilizationWindowSeconds} s, {Policies(r.ScaleUp)}; scale down: window {r.ScaleDown.StabilizationWindowSeconds} s, {Policies(r.ScaleDown)}.\n"));
        md.Append(Inv($"- Load: `{r.Load}`.\n\n"));
        md.Append("## Outcome\n\n");
        md.Append(Inv($"- Requests: {r.RequestsSucceeded} succeeded, {r.RequestsFailed} failed; streams moved to another decoder: {r.StreamsMoved}.\n"));
        foreach (var up in r.ScaleUps)
            md.Append(Inv($"- Scale up: `{up.Silo}` decided at {up.DecidedAt:0.0} s, ready after {Num(up.ReadyAt - up.DecidedAt)} s, first token served after {Num(up.TimeToTakeLoadSeconds)} s.\n"));
        foreach (var d in r.Drains)
            md.Append(Inv($"- Scale down: `{d.Silo}` got SIGTERM at {d.DecidedAt:0.0} s with {d.RunningAtSigterm:0} request(s) running; exited after {Num(d.ExitedAfterSeconds)} s with code {d.ExitCode?.ToString(CultureInfo.InvariantCulture) ?? "?"}; drain complete: {d.DrainCompleted?.ToString() ?? "?"}; streams moved off it: {d.StreamsMovedOff}; requests sent on before their first token: {d.RequestsReroutedOff}.\n"));
        foreach (var note in r.Notes) md.Append("- ").Append(note).Append('\n');
        md.Append("\n![load and metric](autoscaling-load.svg)\n\n![replicas](autoscaling-replicas.svg)\n\n");
        md.Append("## Every sync period\n\nload: requests running or waiting in the decoders; streaming: generations past the queue at the gateway.\n\n| s | load | streaming | metric | per replica | proposed | desired | live | draining | reason |\n|---|---|---|---|---|---|---|---|---|---|\n");
        foreach (var s in r.Samples)
            md.Append(Inv($"| {s.Seconds:0.0} | {s.Load:0} | {s.Streaming:0} | {Num(s.Metric)} | {Num(s.MetricPerReplica)} | {s.Proposed?.ToString(CultureInfo.InvariantCulture) ?? "-"} | {s.Desired} | {s.LiveSilos} | {s.DrainingSilos} | {s.Reason} |\n"));
        return md.ToString();
    }

    private static string Policies(ScalingRules rules) =>
        string.Join(" or ", rules.Policies.Select(p => Inv($"{p.Value}{(p.Type == ScalingPolicyType.Percent ? "%" : " pod(s)")} per {p.PeriodSeconds} s"))) + Inv($" ({rules.Select})");

    private static string Num(double? value) => value is { } v ? v.ToString("0.##", CultureInfo.InvariantCulture) : "";

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
