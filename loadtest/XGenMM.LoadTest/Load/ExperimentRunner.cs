using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using XGenMM.LoadTest.Cli;
using XGenMM.LoadTest.Clients;
using XGenMM.LoadTest.Metrics;
using XGenMM.LoadTest.Reporting;
using XGenMM.LoadTest.Workload;

namespace XGenMM.LoadTest.Load;

/// <summary>
/// Runs one experiment end to end: learns the model id and each key's tenant from the gateway, warms up (not
/// measured), then for each load point scrapes <c>/metrics</c>, drives the load, scrapes again and summarises the
/// client's records beside the server's deltas. A sweep adds rates until the knee is passed.
/// </summary>
public sealed class ExperimentRunner(IProgressSink? progress = null, TextWriter? log = null)
{
    public async Task<ExperimentResult> RunAsync(ExperimentSettings s, CancellationToken cancellationToken)
    {
        s.Validate();
        using var http = new HttpClient { BaseAddress = s.Url, Timeout = TimeSpan.FromSeconds(30) };
        await ResolveTenantsAsync(http, s.Tenants, cancellationToken).ConfigureAwait(false);
        string model = s.Model ?? await FirstModelAsync(http, s.Tenants, cancellationToken).ConfigureAwait(false);
        await using ITurnClient client = s.Protocol == "signalr" ? new HubStreamClient(s.Url, s.MessagePack) : new OpenAiStreamClient(s.Url, model);
        var source = new ConversationSource(s);
        var clock = new RunClock();
        var driver = new PointDriver(client, source, clock, TimeSpan.FromSeconds(s.RequestTimeoutSeconds), TimeSpan.FromSeconds(s.DrainTimeoutSeconds), progress)
        {
            RefusalPause = TimeSpan.FromSeconds(s.RefusalPauseSeconds),
            HonorRetryAfter = s.HonorRetryAfter,
        };

        if (s.Warmup > 0)
        {
            // With repeated images the warm-up sends every image of the pool once, so measured requests find them cached.
            int count = WarmupCount(s, source.PoolSize);
            int c = Math.Min(count, 4);
            await client.PrepareAsync(s.Tenants, c, cancellationToken).ConfigureAwait(false);
            var warm = await driver.RunAsync(new PointPlan("warm-up", LoadMode.Closed, count, s.DurationSeconds) { Concurrency = c }, cancellationToken).ConfigureAwait(false);
            log?.WriteLine($"warm-up: {warm.Count(r => r.Success)}/{warm.Count} succeeded (not measured)");
        }

        var points = new List<PointSummary>();
        var requests = new List<PointRequests>();
        int index = 0;
        foreach (var plan in Plans(s))
        {
            if (s.Mode == LoadMode.Sweep && points.Count > 0 && Knee.PastKnee(points, s) is not null) break;
            source.EndPoint();
            source.Prepare(plan.Mode == LoadMode.Closed ? Math.Min(plan.Requests, plan.Concurrency) : plan.Requests);
            await client.PrepareAsync(s.Tenants, plan.Mode == LoadMode.Closed ? plan.Concurrency : Math.Min(plan.Requests, plan.MaxConcurrency ?? 4), cancellationToken).ConfigureAwait(false);
            var before = s.ScrapeServer ? await ScrapeAsync(http, cancellationToken).ConfigureAwait(false) : null;
            var records = await driver.RunAsync(plan with { Seed = s.Seed * 1000 + index++ }, cancellationToken).ConfigureAwait(false);
            requests.Add(new PointRequests(plan.Label, records));
            var after = before is null ? null : await ScrapeAsync(http, cancellationToken).ConfigureAwait(false);
            var server = before is not null && after is not null ? ServerDelta.Between(before, after) : null;
            bool closed = plan.Mode == LoadMode.Closed;
            points.Add(PointSummary.From(plan.Label, s.Mode, closed ? plan.Concurrency : plan.Rate, closed ? plan.Concurrency : plan.MaxConcurrency,
                closed ? null : plan.Rate, closed ? null : plan.Burstiness, records, s.Tenants, s.Slo, server));
        }
        return new ExperimentResult
        {
            Name = s.Name,
            Mode = s.Mode.ToString().ToLowerInvariant(),
            Protocol = client.Protocol,
            Model = model,
            Settings = Describe(s),
            Points = points,
            Requests = requests,
            Knee = points.Count > 1 || s.Mode == LoadMode.Sweep ? Knee.Find(points, s) : null,
            Note = s.Note,
        };
    }

    /// <summary>The points of the experiment; a sweep's rates go on until <see cref="RunAsync"/> sees the knee passed.</summary>
    private static IEnumerable<PointPlan> Plans(ExperimentSettings s)
    {
        switch (s.Mode)
        {
            case LoadMode.Closed:
                foreach (int c in s.Concurrency.Count > 0 ? s.Concurrency : [1])
                    yield return new PointPlan($"c={c}", LoadMode.Closed, s.Requests, s.DurationSeconds) { Concurrency = c };
                break;
            case LoadMode.Open:
                foreach (double r in s.Rates.Count > 0 ? s.Rates : [1.0])
                    yield return Open(s, r);
                break;
            default:
                double rate = s.SweepStart;
                for (int i = 0; i < s.SweepSteps; i++, rate *= s.SweepFactor) yield return Open(s, rate);
                break;
        }
    }

    private static PointPlan Open(ExperimentSettings s, double rate) =>
        new(string.Create(CultureInfo.InvariantCulture, $"{rate:0.###} req/s"), LoadMode.Open, s.Requests, s.DurationSeconds)
        {
            Rate = rate,
            Burstiness = s.Burstiness,
            MaxConcurrency = s.MaxConcurrency,
        };

    /// <summary>Asks <c>/v1/usage</c> which tenant each key belongs to; a refused key keeps a null id (its requests will fail, as intended).</summary>
    internal static async Task ResolveTenantsAsync(HttpClient http, IReadOnlyList<TenantSpec> tenants, CancellationToken cancellationToken)
    {
        foreach (var t in tenants)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "v1/usage?days=1");
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", t.ApiKey);
            using var response = await http.SendAsync(request, cancellationToken).ConfigureAwait(false);
            if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden) { t.ServerId = null; continue; }
            response.EnsureSuccessStatusCode();
            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false));
            t.ServerId = json.RootElement.TryGetProperty("tenant", out var id) ? id.GetString() : null;
        }
    }

    private static async Task<string> FirstModelAsync(HttpClient http, IReadOnlyList<TenantSpec> tenants, CancellationToken cancellationToken)
    {
        var key = tenants.FirstOrDefault(t => t.ServerId is not null)?.ApiKey
            ?? throw new InvalidOperationException("None of the API keys is accepted by the gateway (/v1/usage answered 401 for each).");
        using var request = new HttpRequestMessage(HttpMethod.Get, "v1/models");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var response = await http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        response.EnsureSuccessStatusCode();
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false));
        return json.RootElement.GetProperty("data")[0].GetProperty("id").GetString() ?? throw new InvalidOperationException("/v1/models lists a model without an id.");
    }

    private async Task<MetricsSnapshot?> ScrapeAsync(HttpClient http, CancellationToken cancellationToken)
    {
        try
        {
            return MetricsSnapshot.Parse(await http.GetStringAsync(new Uri("metrics", UriKind.Relative), cancellationToken).ConfigureAwait(false));
        }
        catch (Exception e) when (e is HttpRequestException or FormatException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            log?.WriteLine($"could not read /metrics ({e.Message}); server-side figures left out for this point");
            return null;
        }
    }

    private static string Pct(double fraction) => Fmt.Pct(fraction);

    /// <summary>The warm-up's size: as asked, and at least one request per pooled image when images repeat.</summary>
    private static int WarmupCount(ExperimentSettings s, int poolSize) =>
        s.Warmup <= 0 ? 0 : Math.Max(s.Warmup, poolSize == 0 ? 0 : (poolSize + s.ImagesPerRequest - 1) / s.ImagesPerRequest);

    internal static Dictionary<string, string> Describe(ExperimentSettings s)
    {
        var inv = CultureInfo.InvariantCulture;
        var d = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["url"] = s.Url.ToString(),
            ["protocol"] = s.Protocol + (s.Protocol == "signalr" ? (s.MessagePack ? " (messagepack)" : " (json)") : " (OpenAI SSE)"),
            ["mode"] = s.Mode.ToString().ToLowerInvariant(),
            ["requests per point"] = s.Requests.ToString(inv),
            ["duration limit per point (s)"] = s.DurationSeconds.ToString(inv),
            ["warm-up requests"] = WarmupCount(s, s.ImageReuse == ImageReuse.Repeated && s.ImagesPerRequest > 0
                ? (s.ImagePool > 0 ? s.ImagePool : s.EffectiveImageSizes.Count) : 0).ToString(inv),
            ["input words"] = s.InputRange > 0 ? string.Create(inv, $"{s.InputWords} ± {Pct(s.InputRange)}") : s.InputWords.ToString(inv),
            ["output tokens"] = s.OutputTokens.ToString(inv) + (s.IgnoreEos ? " (ignore_eos)" : " (at most)"),
            ["turns per conversation"] = s.Turns.ToString(inv),
            ["images per request"] = s.ImagesPerRequest.ToString(inv),
            ["tenants"] = string.Join(", ", s.Tenants.Select(t => string.Create(inv, $"{t.Label} {t.Share:0.##} → {t.ServerId ?? "refused"}"))),
            ["seed"] = s.Seed.ToString(inv),
        };
        if (s.ImagesPerRequest > 0)
        {
            d["image reuse"] = s.ImageReuse == ImageReuse.Repeated
                ? string.Create(inv, $"repeated (pool of {(s.ImagePool > 0 ? s.ImagePool : s.EffectiveImageSizes.Count)})") : "unique";
            d["image sizes"] = string.Join(", ", s.EffectiveImageSizes.Select(z => string.Create(inv, $"{z.Width}x{z.Height}")));
        }
        switch (s.Mode)
        {
            case LoadMode.Closed:
                d["concurrency"] = string.Join(",", s.Concurrency.Count > 0 ? s.Concurrency : [1]);
                d["after a 429/503"] = s.HonorRetryAfter
                    ? string.Create(inv, $"waits its Retry-After ({s.RefusalPauseSeconds} s without one)")
                    : string.Create(inv, $"waits {s.RefusalPauseSeconds} s");
                break;
            case LoadMode.Open: d["rates (req/s)"] = string.Join(",", (s.Rates.Count > 0 ? s.Rates : [1.0]).Select(r => r.ToString(inv))); break;
            default:
                d["sweep"] = string.Create(inv, $"from {s.SweepStart} req/s ×{s.SweepFactor}, at most {s.SweepSteps} steps, stop below {Pct(s.SweepMinGain)} gain or {Pct(s.SweepMinServed)} served");
                break;
        }
        if (s.Mode != LoadMode.Closed)
        {
            d["burstiness"] = s.Burstiness.ToString(inv);
            if (s.MaxConcurrency is int m) d["max concurrency"] = m.ToString(inv);
        }
        if (s.Slo.Any) d["SLO"] = string.Create(inv, $"{s.Slo} for {Pct(s.SloTarget)} of requests");
        return d;
    }
}

/// <summary>The knee of a series of points: throughput stops rising by the minimum gain, or the SLOs stop being met.</summary>
public static class Knee
{
    private static string Pct(double fraction) => Fmt.Pct(fraction);

    /// <summary>Why the last point is past the knee, or null while the series is still rising within the SLOs.</summary>
    public static string? PastKnee(IReadOnlyList<PointSummary> points, ExperimentSettings s)
    {
        var p = points[^1];
        if (s.Slo.Any && p.SloAttainment is double a && a < s.SloTarget)
            return string.Create(CultureInfo.InvariantCulture, $"SLO attainment {Pct(a)} < {Pct(s.SloTarget)} at {p.Label}");
        if (p.ServedFraction is double served && served < s.SweepMinServed)
            return string.Create(CultureInfo.InvariantCulture, $"served {Fmt.N(p.ServedRate, "0.0")} of {Fmt.N(p.ScheduledArrivalRate, "0.0")} req/s offered ({Pct(served)} < {Pct(s.SweepMinServed)}) at {p.Label}");
        if (points.Count > 1)
        {
            var q = points[^2];
            double gain = q.OutputTokensPerSecond > 0 ? p.OutputTokensPerSecond / q.OutputTokensPerSecond - 1 : double.PositiveInfinity;
            if (gain < s.SweepMinGain)
                return string.Create(CultureInfo.InvariantCulture, $"output tok/s rose {Pct(gain)} (< {Pct(s.SweepMinGain)}) from {q.Label} to {p.Label}");
        }
        return null;
    }

    public static KneeResult Find(IReadOnlyList<PointSummary> points, ExperimentSettings s)
    {
        PointSummary? knee = null;
        for (int i = 0; i < points.Count; i++)
        {
            if (PastKnee([.. points.Take(i + 1)], s) is { } why)
                return Result(knee, why);
            knee = points[i];
        }
        return Result(null, $"still rising at the last point ({knee?.Label}): the knee lies beyond it");
    }

    private static KneeResult Result(PointSummary? p, string reason) => new()
    {
        Label = p?.Label,
        X = p?.X,
        OutputTokensPerSecond = p?.OutputTokensPerSecond,
        RequestsPerSecond = p?.RequestsPerSecond,
        Reason = reason,
    };
}
